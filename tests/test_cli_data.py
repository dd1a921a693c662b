"""`clue data prepare` (offline canonical layout) and `clue data stats`, through `clue`."""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clue_fw.data import download
from clue_fw.data.download import DATASETS, download_dataset, prepare_dataset
from clue_fw.data.readers import RawSequences
from clue_fw.data.stats import sequence_stats_of
from clue_fw.errors import DownloadError

Spawn = Callable[..., subprocess.Popen[str]]

U_DATA = b"2\t20\t3\t200\n1\t10\t4\t300\n1\t11\t5\t100\n2\t21\t1\t100\n"
ML100K = {"u.data": U_DATA, "u.item": b"10|A\n", "u.user": b"1|24|M\n"}


def ml100k_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in ML100K.items():
            zf.writestr(f"ml-100k/{name}", data)
    return buf.getvalue()


@pytest.fixture
def pinned_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ml-100k.zip whose sha256 is made the pinned one."""
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(ml100k_zip())
    source = DATASETS["ml-100k"]
    fake = type(source)(**{**source.__dict__, "sha256": download._sha256_of(archive)})
    monkeypatch.setitem(DATASETS, "ml-100k", fake)
    return archive


def test_prepare_from_a_zip_writes_what_download_writes(pinned_zip: Path, tmp_path: Path) -> None:
    folder = prepare_dataset("ml-100k", pinned_zip, tmp_path / "root")
    assert folder == tmp_path / "root" / "ml-100k"
    assert (folder / "ml-100k_sequences.txt").read_text() == "1 11 10\n2 21 20\n"
    for name, data in ML100K.items():
        assert (folder / name).read_bytes() == data
    assert not list(folder.glob(".*"))  # no temp files left


@pytest.mark.parametrize("nested", [True, False])
def test_prepare_from_an_unpacked_folder(tmp_path: Path, nested: bool) -> None:
    unpacked = tmp_path / "download"
    files = unpacked / "ml-100k" if nested else unpacked
    files.mkdir(parents=True)
    for name, data in ML100K.items():
        (files / name).write_bytes(data)
    folder = prepare_dataset("ml-100k", unpacked, tmp_path / "root")
    assert (folder / "ml-100k_sequences.txt").read_text() == "1 11 10\n2 21 20\n"


def test_prepare_in_place_where_the_old_advice_put_the_files(tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for name, data in ML100K.items():
        (folder / name).write_bytes(data)
    assert prepare_dataset("ml-100k", folder, tmp_path) == folder
    assert (folder / "ml-100k_sequences.txt").read_text() == "1 11 10\n2 21 20\n"
    assert (folder / "u.data").read_bytes() == U_DATA


def test_prepare_refuses_an_archive_with_another_hash(tmp_path: Path) -> None:
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(ml100k_zip())
    with pytest.raises(DownloadError, match="sha256") as info:
        prepare_dataset("ml-100k", archive, tmp_path / "root")
    assert DATASETS["ml-100k"].sha256 in str(info.value)
    assert not (tmp_path / "root" / "ml-100k").exists()


def test_prepare_names_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_bytes(U_DATA)
    with pytest.raises(DownloadError, match="holds no u.item"):
        prepare_dataset("ml-100k", tmp_path, tmp_path / "root")


def test_offline_download_advises_clue_data_prepare(tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as info:
        download_dataset("ml-100k", tmp_path, url="http://127.0.0.1:9/ml-100k.zip")
    assert "clue data prepare ml-100k --from PATH" in str(info.value)


def test_stats_counts_lengths_and_repeats() -> None:
    raw = RawSequences([1, 2, 3], [[5, 6, 5, 5], [7, 8], [9, 9, 10]])
    stats = sequence_stats_of(raw)
    assert (stats.users, stats.items, stats.interactions) == (3, 6, 9)
    assert stats.lengths["min"] == 2 and stats.lengths["max"] == 4
    assert stats.lengths["p50"] == 3
    assert stats.repeats == 3  # 5 twice again for user 1, 9 again for user 3
    assert stats.repeat_rate == pytest.approx(3 / 9)


def test_stats_repeats_match_a_plain_count() -> None:
    rng = np.random.default_rng(0)
    sequences = [list(rng.integers(0, 30, size=int(n))) for n in rng.integers(1, 40, size=200)]
    expected = sum(len(s) - len(set(s)) for s in sequences)
    stats = sequence_stats_of(RawSequences(list(range(200)), sequences))
    assert stats.repeats == expected


# --------------------------------------------------------------------------- through `clue`


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, clue_spawn: Spawn, clue_finish: Callable[..., Any]
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cli_data")
    unpacked = root / "unpacked"
    unpacked.mkdir()
    for name, data in ML100K.items():
        (unpacked / name).write_bytes(data)
    sequences = root / "seq.txt"
    sequences.write_text("1 5 6 5 5\n2 7 8\n3 9 9 10\n")
    data_root = root / "data"
    started = {
        "prepare": clue_spawn(
            "data", "prepare", "ml-100k", "--from", unpacked, "--root", data_root
        ),
        "stats": clue_spawn("data", "stats", sequences),
        "stats_missing": clue_spawn("data", "stats", root / "absent.txt"),
        "prepare_missing": clue_spawn(
            "data", "prepare", "ml-100k", "--from", root / "nowhere", "--root", data_root
        ),
    }
    return {"root": root, **{name: clue_finish(p) for name, p in started.items()}}


def test_clue_data_prepare(runs: dict[str, Any]) -> None:
    result = runs["prepare"]
    assert result.returncode == 0, result
    folder = runs["root"] / "data" / "ml-100k"
    assert result.stdout.strip() == str(folder)
    assert (folder / "ml-100k_sequences.txt").read_text() == "1 11 10\n2 21 20\n"


def test_clue_data_stats(runs: dict[str, Any]) -> None:
    result = runs["stats"]
    assert result.returncode == 0, result
    assert result.stdout.splitlines() == [
        "users: 3",
        "items: 6",
        "interactions: 9",
        "length: min 2, p50 3, p90 3.8, p99 4.0, max 4",
        "repeat rate: 0.3333 (3 interactions repeat an item the user had before)",
    ]


@pytest.mark.parametrize(
    ("case", "fragment"),
    [("stats_missing", "absent.txt"), ("prepare_missing", "no such file or folder")],
)
def test_clue_data_errors(runs: dict[str, Any], case: str, fragment: str) -> None:
    result = runs[case]
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert fragment in " ".join(result.stderr.split())


def test_stats_finds_a_file_under_the_data_root_as_recipes_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_main import main_exit

    root = tmp_path / "root"
    (root / "mine").mkdir(parents=True)
    (root / "mine" / "seq.txt").write_text("1 5 6 5 5\n2 7 8\n3 9 9 10\n")
    monkeypatch.setenv("CLUE_DATA_DIR", str(root))
    monkeypatch.chdir(tmp_path)  # mine/seq.txt is not here: the data root has it
    code, stdout, stderr = main_exit(["data", "stats", "mine/seq.txt"], capsys)
    assert code == 0, stderr
    assert stdout.splitlines()[0] == "users: 3"
    code, _, stderr = main_exit(["data", "stats", "mine/absent.txt"], capsys)
    message = " ".join(stderr.split())
    assert code == 2 and "Data file not found" in message and str(root) in message
