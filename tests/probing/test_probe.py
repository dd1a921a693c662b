"""``clue probe`` end to end on tiny synthetic runs.

Two runs are made once: a ``profile`` run (labels from a CSV under the data root) and a
``next_item`` run (tied weights, ``exclude_seen: history``). The checks that tie the probe
to the rest of the project: its split is the profile head's (same majority accuracy as
the run's metrics.json), its "encoder, dot" ranking of a tied next_item run is the run's
own evaluation, and its popularity row is ``clue baseline``'s.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_main import main_exit
from rich.console import Console

from clue_fw import run
from clue_fw.baselines.popularity import evaluate_popularity
from clue_fw.errors import ClueError, DataError, RunDirectoryError
from clue_fw.heads.next_item import NextItemSpec
from clue_fw.inference import load_run
from clue_fw.probing import probe_run, user_split

FAST = {"l2_grid": (1e-2, 1.0), "k_grid": (1, 5)}
FAST_FLAGS = ["--l2-grid", "1e-2,1", "--k-grid", "1,5"]


def label_of(user: int) -> str:
    return "ab"[user % 2]


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, make_tiny_recipe: Callable[[], dict[str, Any]]
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("probe")
    data_root = root / "data"
    data_root.mkdir()
    labels = data_root / "labels.csv"
    labels.write_text(
        "user,label\n" + "".join(f"{u},{label_of(u)}\n" for u in range(0, 1000)), encoding="utf-8"
    )
    profile = make_tiny_recipe()
    profile["finetune"]["head"] = {"kind": "profile", "labels": {"path": "labels.csv"}}
    profile["finetune"]["train"]["epochs"] = 1
    next_item = make_tiny_recipe()
    next_item["finetune"]["train"]["epochs"] = 1
    console = Console(file=io.StringIO())
    return {
        "root": root,
        "data_root": data_root,
        "labels": labels,
        "profile": run(profile, out=root / "profile", console=console, data_root=data_root).run_dir,
        "next_item": run(next_item, out=root / "next", console=console).run_dir,
    }


@pytest.fixture(scope="module")
def profile_report(runs: dict[str, Path]) -> Any:
    return probe_run(runs["profile"], runs["labels"], data_root=runs["data_root"], seed=3, **FAST)


def test_every_feature_set_and_classifier_is_there(profile_report: Any) -> None:
    rows = {(row.features, row.classifier) for row in profile_report.rows}
    features = {"encoder (finetune)", "random encoder", "bag of items, tf-idf"}
    features.add("bag of items, SVD-16")  # the encoder's width
    assert rows == {("majority class", "majority")} | {
        (name, classifier)
        for name in features
        for classifier in ("logistic (L-BFGS)", "kNN (cosine)")
    }
    for row in profile_report.rows:
        assert set(row.test) == {"acc", "macro_f1", "balanced_acc", "roc_auc"}
        if row.classifier.startswith("logistic"):
            assert row.details["converged"] and row.details["grad_norm"] <= 1e-6
            assert row.details["l2"] in FAST["l2_grid"]


def test_the_split_is_the_profile_heads(runs: dict[str, Path], profile_report: Any) -> None:
    metrics = json.loads((runs["profile"] / "metrics.json").read_text(encoding="utf-8"))
    majority = next(r for r in profile_report.rows if r.classifier == "majority")
    assert majority.test["acc"] == pytest.approx(metrics["test"]["majority_acc"])
    users = profile_report.info["users"]
    assert (users["train"], users["valid"], users["test"]) == (160, 10, 30)


def test_no_probe_finds_labels_that_no_feature_holds(profile_report: Any) -> None:
    """The synthetic labels are user id parity, which no feature can know: every probe
    stays near chance, and none is a perfect predictor (a leak would be)."""
    for row in profile_report.rows:
        assert row.test["acc"] < 0.9, row


def test_tied_next_item_ranking_is_the_runs_own_evaluation(runs: dict[str, Path]) -> None:
    report = probe_run(runs["next_item"], runs["labels"], missing="skip", baselines=False, **FAST)
    metrics = json.loads((runs["next_item"] / "metrics.json").read_text(encoding="utf-8"))
    dot = next(r for r in report.rankers if r.ranker == "encoder, dot")
    for split in ("valid", "test"):
        for key in ("ndcg@10", "recall@10", "mrr@10"):
            assert dot.__getattribute__(split)[key] == pytest.approx(
                metrics[split][key], abs=1e-6
            ), (split, key)
    loaded = load_run(runs["next_item"], device="cpu")
    popularity = evaluate_popularity(loaded.task_data(), NextItemSpec(kind="next_item"))
    row = next(r for r in report.rankers if r.ranker == "popularity")
    assert row.test["ndcg@10"] == pytest.approx(popularity["test"]["ndcg@10"])
    assert row.valid["recall@10"] == pytest.approx(popularity["valid"]["recall@10"])
    assert not any(r.ranker.startswith("random") for r in report.rankers)  # no baselines


def test_the_random_encoder_is_seeded(runs: dict[str, Path]) -> None:
    loaded = load_run(runs["profile"], device="cpu", data_root=runs["data_root"])
    _, histories = loaded.run_user_histories()
    first = loaded.untrained(3).embed_histories(histories)
    assert torch.equal(first, loaded.untrained(3).embed_histories(histories))
    assert not torch.equal(first, loaded.untrained(4).embed_histories(histories))
    assert not torch.equal(first, loaded.embed_histories(histories))


def test_cli_writes_json_and_markdown(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, markdown = tmp_path / "probe.json", tmp_path / "probe.md"
    argv = ["probe", runs["profile"], "--labels", runs["labels"], "--stage", "pretrain"]
    argv += ["--data-root", runs["data_root"], "--out", out, "--markdown", markdown]
    code, stdout, stderr = main_exit([*argv, *FAST_FLAGS], capsys)
    assert code == 0, stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["stage"] == "pretrain" and report["labels"]["column"] == "gender"
    assert {row["features"] for row in report["probes"]} >= {"encoder (pretrain)"}
    assert [row["ranker"] for row in report["next_item"]["rankers"]][-1] == "popularity"
    assert "| encoder (pretrain) | logistic (L-BFGS) |" in markdown.read_text(encoding="utf-8")
    assert "encoder (pretrain)" in stdout and "next item from frozen vectors" in stdout


def test_output_may_not_replace_the_runs_files(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = runs["profile"] / "metrics.json"
    before = metrics.read_bytes()
    argv = ["probe", runs["profile"], "--labels", runs["labels"], "--out", metrics]
    code, _, stderr = main_exit(argv, capsys)
    assert code == 2 and "is the run's own metrics.json" in " ".join(stderr.split())
    assert metrics.read_bytes() == before


def test_users_without_labels(runs: dict[str, Path], tmp_path: Path) -> None:
    some = tmp_path / "some.csv"
    some.write_text("user,label\n" + "".join(f"{u},{label_of(u)}\n" for u in range(0, 100)))
    with pytest.raises(DataError, match="pass --missing skip"):
        probe_run(runs["profile"], some, data_root=runs["data_root"], **FAST)
    loaded = load_run(runs["profile"], device="cpu", data_root=runs["data_root"])
    users, _ = loaded.run_user_histories()
    split = user_split(users, {u: label_of(u) for u in range(100)}, 0, missing="skip")
    labelled = int((split.labels >= 0).sum())
    assert 0 < labelled < len(users)
    assert split.train.numel() + split.valid.numel() + split.test.numel() == labelled


def test_library_refusals(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ClueError, match="Unknown label column 'zip'"):
        probe_run(runs["profile"], runs["labels"], "zip")
    with pytest.raises(ClueError, match="k_grid takes whole numbers"):
        probe_run(runs["profile"], runs["labels"], k_grid=[2.5])
    with pytest.raises(RunDirectoryError, match="holds no recipe.yaml"):
        probe_run(tmp_path, runs["labels"])


def test_a_bag_too_large_is_left_out_and_said(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import clue_fw.probing.probe as probe_module

    monkeypatch.setattr(probe_module, "BAG_ENTRIES", 100)
    report = probe_run(
        runs["profile"], runs["labels"], data_root=runs["data_root"], next_item=False, **FAST
    )
    assert {row.features for row in report.rows} == {
        "majority class",
        "encoder (finetune)",
        "random encoder",
    }
    assert report.info["left_out"] and "dense entries" in report.info["left_out"][0]
    assert "next_item" not in report.to_json()
