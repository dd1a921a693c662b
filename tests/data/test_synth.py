"""Tests for clue_fw.data.synth and `clue data synth`: realistic synthetic sequence files."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_main import main_exit
from conftest import with_default_interrupt

from clue_fw.data import synth
from clue_fw.data.dataset import build_sequence_data, leave_one_out
from clue_fw.data.readers import RawSequences, read_sequence_file
from clue_fw.data.synth import write_synthetic_sequences
from clue_fw.errors import DataError

USERS, ITEMS = 2000, 1000


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RawSequences]:
    path = tmp_path_factory.mktemp("synth") / "synth.txt"
    write_synthetic_sequences(path, USERS, ITEMS, seed=7)
    return path, read_sequence_file(path)


def repeat_share(raw: RawSequences) -> float:
    """The share of interactions whose item the user had before."""
    rows = np.repeat(np.arange(raw.num_users), np.diff(raw.offsets))
    distinct = np.unique(rows * (int(raw.items.max()) + 1) + raw.items).size
    return 1 - distinct / raw.num_interactions


def test_file_is_a_readable_sequence_file(made: tuple[Path, RawSequences]) -> None:
    path, raw = made
    assert raw.users == list(range(1, USERS + 1))
    lengths = np.diff(raw.offsets)
    assert lengths.min() >= 3
    assert 1 <= raw.items.min() and raw.items.max() <= ITEMS
    data = build_sequence_data(raw, source=str(path))
    assert data.num_users == USERS  # nobody is filtered out: leave-one-out works for all
    split = leave_one_out(data)
    assert split.test_target.numel() == USERS
    text = path.read_text()
    assert text.endswith("\n") and "  " not in text and "\r" not in text


def test_lengths_are_heavy_tailed_around_the_mean(made: tuple[Path, RawSequences]) -> None:
    lengths = np.diff(made[1].offsets)
    # 1,000 items in 32 clusters cap some long users: the mean lands a little below 50
    assert 35 < lengths.mean() < 55
    assert np.median(lengths) < lengths.mean()  # skewed to the right, like real logs
    assert lengths.max() > 3 * lengths.mean()


def test_same_seed_same_file_other_seed_other_file(tmp_path: Path) -> None:
    a, b, c = (tmp_path / name for name in ("a.txt", "b.txt", "c.txt"))
    write_synthetic_sequences(a, 300, 200, seed=3, repeat_rate=0.2)
    write_synthetic_sequences(b, 300, 200, seed=3, repeat_rate=0.2)
    write_synthetic_sequences(c, 300, 200, seed=4, repeat_rate=0.2)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_chunks_stream_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small chunks (as for a million users) give a valid file of the same shape."""
    monkeypatch.setattr(synth, "CHUNK_USERS", 37)
    stats = write_synthetic_sequences(tmp_path / "s.txt", 500, 400, seed=1)
    raw = read_sequence_file(tmp_path / "s.txt")
    assert raw.users == list(range(1, 501))
    assert stats.interactions == raw.num_interactions
    assert np.diff(raw.offsets).min() >= 3
    assert repeat_share(raw) == 0


def test_popularity_is_skewed(made: tuple[Path, RawSequences]) -> None:
    counts = np.sort(np.bincount(made[1].items, minlength=ITEMS + 1)[1:])[::-1]
    top_tenth = counts[: ITEMS // 10].sum() / counts.sum()
    # uniform popularity would give 0.1; a million items give 0.43 (MovieLens-1M: 0.44)
    assert top_tenth > 0.2
    assert counts[0] > 5 * np.median(counts)


def test_next_item_is_learnable_far_above_popularity(made: tuple[Path, RawSequences]) -> None:
    """The most frequent successor of the previous item beats the most popular item."""
    raw = made[1]
    inside = np.ones(raw.num_interactions - 1, dtype=bool)
    inside[raw.offsets[1:-1] - 1] = False  # pairs that cross two users
    previous, following = raw.items[:-1][inside], raw.items[1:][inside]
    pairs, counts = np.unique(previous * (ITEMS + 1) + following, return_counts=True)
    best = np.zeros(ITEMS + 1, dtype=np.int64)
    np.maximum.at(best, pairs // (ITEMS + 1), counts)
    transition_accuracy = best.sum() / previous.size
    popularity_accuracy = np.bincount(following).max() / previous.size
    assert transition_accuracy > 0.4
    assert transition_accuracy > 20 * popularity_accuracy


def test_no_repeats_by_default_and_repeat_rate_sets_their_share(
    made: tuple[Path, RawSequences], tmp_path: Path
) -> None:
    assert repeat_share(made[1]) == 0  # like MovieLens: a user's items are distinct
    path = tmp_path / "repeats.txt"
    stats = write_synthetic_sequences(path, USERS, ITEMS, seed=7, repeat_rate=0.3)
    raw = read_sequence_file(path)
    share = repeat_share(raw)
    assert stats.repeats / stats.interactions == pytest.approx(share)
    # every item but a user's first repeats with probability 0.3
    expected = 0.3 * (raw.num_interactions - raw.num_users) / raw.num_interactions
    assert share == pytest.approx(expected, abs=0.01)


def test_a_tiny_catalogue_still_gives_three_distinct_items(tmp_path: Path) -> None:
    write_synthetic_sequences(tmp_path / "t.txt", 40, 3, seed=0, mean_length=10)
    raw = read_sequence_file(tmp_path / "t.txt")
    assert [sorted(s) for s in raw.sequences] == [[1, 2, 3]] * 40


def test_existing_file_needs_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("precious\n")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        write_synthetic_sequences(path, 10, 10)
    assert path.read_text() == "precious\n"
    write_synthetic_sequences(path, 10, 10, overwrite=True)
    assert len(path.read_text().splitlines()) == 10
    assert not (tmp_path / "s.txt.tmp").exists()


def test_cli_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "synth.txt"
    argv = ["data", "synth", "--users", "50", "--items", "80", "--out", str(out)]
    code, stdout, stderr = main_exit([*argv, "--seed", "2", "--repeat-rate", "0.1"], capsys)
    assert code == 0, stderr
    assert stdout.strip() == str(out)
    assert "50 users" in stderr
    assert len(read_sequence_file(out).users) == 50
    code, _, stderr = main_exit(argv, capsys)  # the file exists now
    assert code == 2 and "--overwrite" in stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--users", "0"], "num_users (--users) must be at least 1, got 0"),
        (["--items", "2"], "num_items (--items) must be between 3"),
        (["--mean-length", "2"], "mean_length (--mean-length) must be between 3"),
        (["--mean-length", "nan"], "mean_length (--mean-length) must be between 3"),
        (["--repeat-rate", "1"], "repeat_rate (--repeat-rate) is the share"),
        (["--repeat-rate", "-0.1"], "must be in [0, 1), got -0.1"),
        (["--seed", "-1"], "seed (--seed) must be a non-negative integer"),
        (["--users", "many"], "--users"),  # click's own usage error, also exit code 2
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    out = tmp_path / "s.txt"
    argv = ["data", "synth", "--users", "10", "--items", "10", "--out", str(out)]
    code, _, stderr = main_exit([*argv, *flags], capsys)
    assert code == 2
    assert message in " ".join(stderr.split())
    assert not out.exists()


def test_unwritable_output_is_a_data_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="Cannot write"):
        write_synthetic_sequences(blocker / "s.txt", 10, 10)


def test_cli_writes_the_planted_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth.txt"
    argv = ["data", "synth", "--users", "60", "--items", "90", "--out", str(out)]
    code, stdout, stderr = main_exit(
        [*argv, "--attributes", "--cold-start", "--target-items", "40", "--latent"], capsys
    )
    assert code == 0, stderr
    names = ["synth.txt", "synth_easy.csv", "synth_hard.csv", "synth_taste.csv"]
    names += ["synth_target.txt", "synth_latent.safetensors"]
    assert stdout.split() == [str(tmp_path / name) for name in names]
    assert "target-domain interactions" in stderr
    target = np.loadtxt(tmp_path / "synth_target.txt", dtype=np.int64)
    assert target[:, 1].max() <= 40


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--target-items", "5"], "sizes the cold-start target domain; add --cold-start"),
        (["--cold-start", "--target-items", "2"], "target_items (--target-items) must be"),
    ],
)
def test_bad_planted_flags_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    argv = ["data", "synth", "--users", "10", "--items", "40", "--out", str(tmp_path / "s.txt")]
    code, _, stderr = main_exit([*argv, *flags], capsys)
    assert code == 2 and message in " ".join(stderr.split())
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- output size


def test_size_estimate_is_close_to_what_is_written(tmp_path: Path) -> None:
    options = {"attributes": True, "cold_start": True, "latent": True}
    stats = write_synthetic_sequences(tmp_path / "s.txt", 20_000, 5_000, seed=1, **options)  # type: ignore[arg-type]
    genres = round(5_000**0.5)
    estimate = synth.estimated_sizes(stats.outputs, 20_000, 5_000, 50.0, 0.0, 500, 3, genres)
    for role, path in stats.outputs.items():
        written = path.stat().st_size
        if role in ("sequences", "target"):  # random lengths: estimated at the mean, which
            assert written <= estimate[role] < 1.25 * written  # small catalogues cut short
        else:
            assert estimate[role] == written, role


def test_output_larger_than_the_free_space_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "s.txt"
    argv = ["data", "synth", "--users", "1000000000000", "--items", "100", "--out", str(out)]
    code, _, stderr = main_exit(argv, capsys)
    message = " ".join(stderr.split())
    assert code == 2 and "Refusing to write synthetic data" in message
    assert "free. Lower --users or --mean-length" in message and "--force-size" in message
    assert not (tmp_path / "new").exists()  # nothing written, not even the folder

    usage = synth.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(synth.shutil, "disk_usage", lambda _: usage._replace(free=1000))
    small = ["data", "synth", "--users", "300", "--items", "50", "--out", str(out)]
    code, _, stderr = main_exit(small, capsys)
    assert code == 2 and "has 1,000 bytes free" in " ".join(stderr.split())
    code, _, stderr = main_exit([*small, "--force-size"], capsys)
    assert code == 0, stderr
    assert len(read_sequence_file(out).users) == 300


def test_a_full_disk_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> np.ndarray:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(synth, "_format_lines", full)
    with pytest.raises(DataError, match="No space left on device"):
        write_synthetic_sequences(tmp_path / "s.txt", 50, 50, attributes=True, cold_start=True)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- interrupts


@pytest.mark.parametrize(
    ("signal_number", "name", "status"), [(15, "SIGTERM", 143), (2, "SIGINT", 130)]
)
def test_an_interrupt_removes_the_temporary_files(
    tmp_path: Path, signal_number: int, name: str, status: int
) -> None:
    """Stopped while writing (a scheduler's SIGTERM, Ctrl-C): the temporary files are
    removed, an existing output is left as it was, and one line says so."""
    out = tmp_path / "s.txt"
    out.write_text("precious\n")
    command = [sys.executable, "-m", "clue_fw", "data", "synth", "--users", "5000000"]
    command += ["--items", "100000", "--out", str(out), "--overwrite", "--attributes"]
    command += ["--cold-start", "--latent"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=with_default_interrupt,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "s.txt.tmp").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no temporary file within 60 s"
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.txt"]
    assert out.read_text() == "precious\n"
    line = " ".join(stderr.split())
    assert f"interrupted ({name}): clue data synth stopped before its files were complete" in line
    assert "Traceback" not in stderr
