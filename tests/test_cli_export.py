"""Tests of ``clue embed`` and ``clue recommend`` (:mod:`clue_fw.cli_export`).

One tiny run is made per module; the commands run in-process through
:func:`clue_fw.cli.main`, and their files are checked against the library API.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_main import main_exit
from rich.console import Console
from safetensors import safe_open

from clue_fw import load_run, run
from clue_fw.data.readers import read_sequence_file
from clue_fw.inference import UnknownItemsWarning


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, make_tiny_recipe: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("export")
    recipe = make_tiny_recipe()
    recipe["finetune"]["train"]["epochs"] = 1
    run_dir = run(recipe, out=root / "run", console=Console(file=io.StringIO())).run_dir
    loaded = load_run(run_dir, device="cpu")
    known = loaded.catalogue.raw_ids.tolist()
    data = root / "new_users.txt"
    lines = [
        f"501 {known[0]} {known[1]} {known[2]}",
        f"502 {known[3]} 99999 {known[4]}",  # one unknown item
        "503 99999 88888",  # no known item: left out
        "504 " + " ".join(map(str, known[:30])),  # longer than max_len
    ]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    unknown_only = root / "unknown.txt"
    unknown_only.write_text("1 99999\n2 88888\n", encoding="utf-8")
    return {"root": root, "run": run_dir, "loaded": loaded, "data": data, "unknown": unknown_only}


def test_embed_writes_the_runs_users_as_a_structured_npy(
    exported: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "users.npy"
    code, stdout, stderr = main_exit(["embed", str(exported["run"]), "--out", str(out)], capsys)
    assert code == 0, stderr
    assert stdout.strip() == str(out) and "wrote 200 user vectors (dim 16)" in stderr
    table = np.load(out)  # no allow_pickle needed
    expected = exported["loaded"].embed_run_users()
    assert table["user"].tolist() == expected.users
    assert np.array_equal(table["vector"], expected.vectors.numpy())


def test_embed_data_reports_unknown_items_and_writes_safetensors(
    exported: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "users.safetensors"
    argv = ["embed", str(exported["run"]), "--data", str(exported["data"]), "--out", str(out)]
    code, _, stderr = main_exit(argv, capsys)
    assert code == 0, stderr
    flat = " ".join(stderr.split())
    assert "skipped 3 item id(s) (2 distinct: 99999, 88888)" in flat
    assert "left out 1 user(s)" in flat and "(user 503)" in flat
    with safe_open(str(out), framework="pt") as handle:
        metadata = handle.metadata()
        user_ids, vectors = handle.get_tensor("user_ids"), handle.get_tensor("vectors")
    assert user_ids.tolist() == [501, 502, 504]
    with pytest.warns(UnknownItemsWarning):
        expected = exported["loaded"].embed_users(read_sequence_file(exported["data"]))
    assert torch.equal(vectors, expected.vectors)
    assert metadata["stage"] == "finetune" and metadata["ids"] == "user"
    assert metadata["run_id"] == exported["loaded"].identity.run_id


def test_embed_items_as_parquet(
    exported: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parquet = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "items.parquet"
    argv = ["embed", str(exported["run"]), "--items", "--stage", "pretrain", "--out", str(out)]
    code, _, stderr = main_exit(argv, capsys)
    assert code == 0, stderr
    table = parquet.read_table(out)
    pretrained = load_run(exported["run"], "pretrain", device="cpu").item_vectors()
    assert table.column("item").to_pylist() == pretrained.item_ids.tolist()
    vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
    assert np.array_equal(vectors, pretrained.vectors.numpy())
    assert table.schema.metadata[b"clue_fw.stage"] == b"pretrain"


def test_parquet_without_pyarrow_names_the_extra(
    exported: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow fails
    argv = ["embed", str(exported["run"]), "--out", str(tmp_path / "users.parquet")]
    code, _, stderr = main_exit(argv, capsys)
    assert code == 2 and "pip install 'clue_fw[parquet]'" in " ".join(stderr.split())
    assert not (tmp_path / "users.parquet").exists()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("exclude", [None, "none"])
def test_recommend_writes_top_k_per_user(
    exported: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    exclude: str | None,
) -> None:
    out = tmp_path / "recs.csv"
    argv = ["recommend", str(exported["run"]), "--data", str(exported["data"]), "-k", "3"]
    argv += ["--out", str(out)] + (["--exclude-seen", exclude] if exclude else [])
    code, stdout, stderr = main_exit(argv, capsys)
    assert code == 0, stderr
    assert stdout.strip() == str(out)
    rows = read_csv(out)
    assert list(rows[0]) == ["user", "rank", "item", "score"]
    assert [(r["user"], r["rank"]) for r in rows] == [
        (u, str(rank)) for u in ("501", "502", "504") for rank in (1, 2, 3)
    ]
    raw = read_sequence_file(exported["data"])
    with pytest.warns(UnknownItemsWarning):
        expected = exported["loaded"].recommend(raw, k=3, exclude_seen=exclude)
    assert [int(r["item"]) for r in rows] == expected.items.reshape(-1).tolist()
    scores = torch.tensor([float(r["score"]) for r in rows])
    assert torch.equal(scores, expected.scores.reshape(-1))
    if exclude is None:  # the run's own protocol: history
        assert "exclude_seen: history" in " ".join(stderr.split())
        seen = dict(zip(raw.users, raw.sequences, strict=True))
        assert all(int(r["item"]) not in seen[int(r["user"])] for r in rows)


def test_recommend_item_block_writes_what_recommend_in_blocks_gives(
    exported: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "blocks.csv"
    argv = ["recommend", str(exported["run"]), "-k", "3", "--item-block", "16", "--out", str(out)]
    code, _, stderr = main_exit(argv, capsys)
    assert code == 0, stderr
    expected = exported["loaded"].recommend_run_users(3, item_block=16)
    rows = read_csv(out)
    assert [int(r["item"]) for r in rows] == expected.items.reshape(-1).tolist()
    code, _, stderr = main_exit([*argv[:-4], "--item-block", "0", "--out", str(out)], capsys)
    assert code == 2 and "--item-block" in stderr


def test_recommend_without_data_serves_the_runs_own_users(
    exported: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "own.csv"
    argv = ["recommend", str(exported["run"]), "-k", "3", "--out", str(out)]
    code, stdout, stderr = main_exit(argv, capsys)
    assert code == 0, stderr
    assert "wrote 600 recommendations for 200 users" in " ".join(stderr.split())
    rows = read_csv(out)
    loaded = exported["loaded"]
    data = loaded.task_data().sequences
    # the same as recommending from each user's whole sequence, given as raw ids
    whole = {
        int(user): loaded.catalogue.to_raw(np.asarray(data.sequences.row(i))).tolist()
        for i, user in enumerate(data.user_ids)
    }
    expected = loaded.recommend(whole, k=3)
    assert [int(r["user"]) for r in rows[::3]] == expected.users
    assert [int(r["item"]) for r in rows] == expected.items.reshape(-1).tolist()
    assert all(int(r["item"]) not in whole[int(r["user"])] for r in rows)  # history excluded


def test_recommend_candidates_restrict_the_ranking_and_unknown_ids_are_reported(
    exported: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loaded = exported["loaded"]
    known = loaded.catalogue.raw_ids.tolist()
    allowed = known[::7]
    listed = tmp_path / "candidates.txt"
    listed.write_text(
        " ".join(map(str, allowed[:4])) + "\n" + "\n".join(map(str, [*allowed[4:], 99999])) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "recs.csv"
    argv = ["recommend", str(exported["run"]), "-k", "5", "--candidates", str(listed)]
    code, _, stderr = main_exit(argv + ["--out", str(out)], capsys)
    assert code == 0, stderr
    flat = " ".join(stderr.split())
    assert "skipped 1 item id(s) the run does not know (99999)" in flat
    assert f"among {len(allowed):,} candidates" in flat
    rows = read_csv(out)
    assert {int(r["item"]) for r in rows} <= set(allowed)
    expected = loaded.recommend_run_users(5, candidates=[*allowed, 99999])
    assert [int(r["item"]) for r in rows] == [
        item for item in expected.items.reshape(-1).tolist() if item != -1
    ]
    assert expected.candidates == len(allowed) and expected.candidates_unknown == [99999]
    # unrestricted, the same users get items outside the set
    free = loaded.recommend_run_users(5)
    assert not set(free.items.reshape(-1).tolist()) <= set(allowed)


def test_candidates_are_the_unrestricted_ranking_filtered_and_are_checked(
    exported: dict[str, Any],
) -> None:
    from clue_fw.errors import ClueError

    loaded = exported["loaded"]
    known = loaded.catalogue.raw_ids.tolist()
    users = {"a": known[:3], "b": known[10:12]}
    whole = loaded.recommend(users, k=len(known))  # every item, best first
    allowed = [known[1], known[5], known[6], known[20]]
    found = loaded.recommend(users, k=3, candidates=allowed)
    for row in range(len(users)):
        # the candidates in the order of the full ranking, seen ones (known[1] for a) left out
        order = [item for item in whole.items[row].tolist() if item in allowed]
        assert found.items[row].tolist()[: len(order)] == order[:3]
    assert known[1] not in found.items[0].tolist()  # a saw it: history excluded
    few = loaded.recommend(users, k=5, candidates=[known[5]])
    assert few.items[:, 1:].eq(-1).all() and torch.isinf(few.scores[:, 1:]).all()
    with pytest.raises(ClueError, match="None of the 2 candidate item id"):
        loaded.recommend(users, k=3, candidates=[99999, 88888])
    with pytest.raises(ClueError, match="whole numbers; got '7'"):
        loaded.recommend(users, k=3, candidates=[known[0], "7"])
    with pytest.raises(ClueError, match="whole numbers; got True"):
        loaded.recommend(users, k=3, candidates=[True])


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["embed", "{root}/missing", "--out", "{tmp}/u.npy"], "Run directory not found"),
        (["embed", "{root}", "--out", "{tmp}/u.npy"], "holds no recipe.yaml"),
        (["embed", "{run}", "--stage", "best", "--out", "{tmp}/u.npy"], "stage must be"),
        (["embed", "{run}", "--out", "{tmp}/u.txt"], "cannot tell the format from the suffix"),
        (["embed", "{run}", "--out", "{tmp}/nowhere/u.npy"], "does not exist. Create it"),
        (["embed", "{run}", "--data", "{tmp}/no.txt", "--out", "{tmp}/u.npy"], "not found"),
        (["embed", "{run}", "--data", "{tmp}", "--out", "{tmp}/u.npy"], "it is a directory"),
        (["embed", "{run}", "--data", "{bad}", "--out", "{tmp}/u.npy"], "is not an integer id"),
        (["embed", "{run}", "--data", "{unknown}", "--out", "{tmp}/u.npy"], "nothing to write"),
        (["embed", "{run}", "--items", "--data", "{data}", "--out", "{tmp}/u.npy"], "no --data"),
        (["recommend", "{run}", "--data", "{data}", "--out", "{tmp}/r.npy"], "end the file name"),
        (
            [
                "recommend",
                "{run}",
                "--data",
                "{data}",
                "--out",
                "{tmp}/r.csv",
                "--exclude-seen",
                "x",
            ],
            "--exclude-seen must be history",
        ),
        (["recommend", "{root}/missing", "--data", "{data}", "--out", "{tmp}/r.csv"], "not found"),
        (["recommend", "{run}", "--candidates", "{bad}", "--out", "{tmp}/r.csv"], "line 1: 'x3'"),
        (["recommend", "{run}", "--candidates", "{strangers}", "--out", "{tmp}/r.csv"], "None of"),
        (["recommend", "{run}", "--candidates", "{tmp}/no", "--out", "{tmp}/r.csv"], "no such"),
    ],
)
def test_bad_inputs_exit_2_with_one_message(
    exported: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    fragment: str,
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 x3\n", encoding="utf-8")
    strangers = tmp_path / "strangers.txt"
    strangers.write_text("99999\n88888\n", encoding="utf-8")
    names = {
        "strangers": strangers,
        "root": exported["root"],
        "run": exported["run"],
        "data": exported["data"],
        "unknown": exported["unknown"],
        "tmp": tmp_path,
        "bad": bad,
    }
    code, stdout, stderr = main_exit([a.format(**names) for a in argv], capsys)
    assert code == 2, stderr
    assert stderr.startswith("error:") and fragment in " ".join(stderr.split())
    assert "Traceback" not in stderr and stdout == ""
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".npy", ".csv")]


def test_embed_help_needs_no_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = main_exit(["embed", "--help"], capsys)
    assert code == 0 and "--items" in stdout and "--stage" in stdout
    code, stdout, _ = main_exit(["recommend", "--help"], capsys)
    assert code == 0 and "--exclude-seen" in stdout


def test_neighbours_of_a_run_match_the_library_and_a_vector_file_gives_the_same(
    exported: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clue_fw.inference.neighbours import nearest_users

    out = tmp_path / "neighbours.csv"
    code, stdout, stderr = main_exit(
        ["neighbours", str(exported["run"]), "--out", str(out), "-k", "3"], capsys
    )
    assert code == 0, stderr
    assert stdout.strip() == str(out) and "wrote 600 neighbours of 200 users" in stderr
    rows = read_csv(out)
    assert list(rows[0]) == ["user", "rank", "neighbour", "score"]
    embedded = exported["loaded"].embed_run_users()
    expected = nearest_users(embedded.vectors, 3)
    users = embedded.users
    assert [int(r["user"]) for r in rows[:3]] == [users[0]] * 3
    assert [int(r["neighbour"]) for r in rows[:3]] == [users[i] for i in expected.indices[0]]
    assert [float(r["score"]) for r in rows[:3]] == pytest.approx(expected.scores[0].tolist())
    assert all(r["user"] != r["neighbour"] for r in rows)
    # the same from `clue embed`'s file, for two users listed in a file
    vectors = tmp_path / "users.npy"
    assert main_exit(["embed", str(exported["run"]), "--out", str(vectors)], capsys)[0] == 0
    wanted = tmp_path / "wanted.txt"
    wanted.write_text(f"{users[5]}\n{users[0]}\n", encoding="utf-8")
    again = tmp_path / "again.csv"
    argv = ["neighbours", str(vectors), "--users", str(wanted), "--out", str(again), "-k", "3"]
    code, _, stderr = main_exit(argv, capsys)
    assert code == 0, stderr
    from_file = read_csv(again)
    assert [int(r["user"]) for r in from_file] == [users[5]] * 3 + [users[0]] * 3
    assert [r["neighbour"] for r in from_file[3:]] == [r["neighbour"] for r in rows[:3]]
    # float32 sums in another order (2 queries, not 200, per product): equal to ~1e-7
    assert [float(r["score"]) for r in from_file[3:]] == pytest.approx(
        [float(r["score"]) for r in rows[:3]], abs=1e-6
    )


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["neighbours", "{run}", "--out", "{tmp}/n.txt"], "end the file name with .csv"),
        (["neighbours", "{run}", "--users", "{tmp}/none.txt", "--out", "{tmp}/n.csv"], "no such"),
        (["neighbours", "{run}", "--users", "{ids}", "--out", "{tmp}/n.csv"], "not among the 200"),
        (["neighbours", "{run}", "--users", "{words}", "--out", "{tmp}/n.csv"], "line 2: 'x'"),
        (["neighbours", "{vectors}", "--stage", "pretrain", "--out", "{tmp}/n.csv"], "--stage"),
        (["neighbours", "{items}", "--out", "{tmp}/n.csv"], "holds item vectors"),
        (["neighbours", "{damaged}", "--out", "{tmp}/n.csv"], "is not a vector file"),
        (["neighbours", "{tmp}/v.pkl", "--out", "{tmp}/n.csv"], "cannot tell the format"),
    ],
)
def test_neighbours_bad_inputs_exit_2_with_one_message(
    exported: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    fragment: str,
) -> None:
    files = exported["root"]
    vectors, items = files / "n_users.safetensors", files / "n_items.safetensors"
    if not vectors.exists():
        main_exit(["embed", str(exported["run"]), "--out", str(vectors)], capsys)
        main_exit(["embed", str(exported["run"]), "--items", "--out", str(items)], capsys)
    damaged = files / "damaged.npy"
    damaged.write_bytes(b"\x93NUMPY not really")
    ids, words = files / "ids.txt", files / "words.txt"
    ids.write_text("999999 888888\n", encoding="utf-8")
    words.write_text(f"{exported['loaded'].embed_run_users().users[0]}\nx\n", encoding="utf-8")
    names = {"run": exported["run"], "tmp": tmp_path, "vectors": vectors, "items": items}
    names.update(damaged=damaged, ids=ids, words=words)
    code, stdout, stderr = main_exit([a.format(**names) for a in argv], capsys)
    assert code == 2, stderr
    assert stderr.startswith("error:") and fragment in " ".join(stderr.split())
    assert "Traceback" not in stderr and stdout == ""
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".csv"]
