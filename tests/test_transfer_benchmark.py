"""Tests for benchmarks/transfer.py: the plan (one shared pre-training per method and
seed, the bag and infonce methods, priorities, nested fractions down to 0.01%), the
"stops paying off" rule on hand-made numbers, the synthetic data's fingerprint, and the
summary, markdown and plots built from a fake runs directory. Also the methods that
label_efficiency.py gained for its ML-1M study (infonce, bag)."""

from __future__ import annotations

import argparse
import json
import math
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from benchmark_scripts import load_benchmark

from clue_fw.heads.user_level import labelled_count, labelled_train, split_users
from clue_fw.recipe import load_recipe

le = load_benchmark("label_efficiency")
tr = load_benchmark("transfer")

ROOT = Path(__file__).resolve().parent.parent
Point = tr.Point


# --------------------------------------------------------------------------- the plan


def plan(runs: Path, users: int = 20_000, **extra: object) -> tuple[list[Any], list[Any]]:
    study = tr.study(users)
    values: dict[str, object] = {
        "tasks": list(tr.TASKS),
        "methods": list(tr.METHODS),
        "modes": list(le.DEFAULT_MODES),
        "fractions": list(tr.FRACTIONS),
        "seeds": [0, 1, 2],
        "overrides": ["pretrain.train.epochs=1", "finetune.patience=2"],
    }
    values.update(extra)
    jobs = le.plan(
        study.recipes_dir,
        runs,
        values["tasks"],
        values["methods"],
        values["modes"],
        values["fractions"],
        values["seeds"],
        values["overrides"],
        study,
    )
    # (pre-trainings and runs that need none, fine-tunings that wait for a pre-training)
    return [job for job in jobs if not job.after], [job for job in jobs if job.after]


def test_the_four_tasks_share_one_pretraining_per_method_and_seed(tmp_path: Path) -> None:
    first, second = plan(tmp_path)
    pretrainings = [job for job in first if "pretrain" in job.run_dir.parts]
    # the cold-start target is a file of pairs: its source is the whole sequence file,
    # the very data the profile tasks pre-train on, so one pre-training serves all four
    assert len(pretrainings) == 4 * 3  # (clue, clue_paper, masked_item, infonce) x seeds
    assert first[: len(pretrainings)] == pretrainings
    assert {job.recipe.name for job in pretrainings} == {
        "easy_clue.yaml",
        "easy_clue_paper.yaml",
        "easy_masked_item.yaml",
        "easy_infonce.yaml",
    }
    for job in pretrainings:
        assert "data.path=synth/transfer_u20000.txt" in job.overrides
        assert "pretrain.train.epochs=1" in job.overrides
    # zero, item_mean and bag: no encoder to wait for
    assert len(first) - len(pretrainings) == 4 * 5 * 2 * 3 * 3
    assert len(second) == 4 * 5 * 2 * 4 * 3
    cold = next(j for j in second if j.run_dir == tmp_path / "coldstart/infonce_probe/f0.001/seed1")
    assert "finetune.init_from=" + str(tmp_path / "pretrain/profile_infonce/seed1") in (
        cold.overrides
    )
    assert "finetune.head.target.path=synth/transfer_u20000_target.txt" in cold.overrides
    assert not any("labels.path" in o for o in cold.overrides)
    assert "pretrain.train.epochs=1" not in cold.overrides


def test_bag_and_zero_fine_tune_their_own_recipes_without_an_encoder(tmp_path: Path) -> None:
    first, _ = plan(tmp_path)
    bag = [job for job in first if job.run_dir.parts[-3].startswith("bag_")]
    zero = [job for job in first if job.run_dir.parts[-3].startswith("zero_")]
    assert len(bag) == len(zero) == 4 * 5 * 2 * 3
    assert all(job.recipe.name.endswith("_bag.yaml") for job in bag)
    assert all(job.recipe.name.endswith("_zero.yaml") for job in zero)
    for job in bag + zero:
        assert not any(o.startswith("finetune.init_from") for o in job.overrides)


def test_priority_is_tasks_then_fractions_in_the_order_given(tmp_path: Path) -> None:
    _, second = plan(tmp_path, tasks=["taste", "easy"], fractions=[0.01, 0.0001])
    tasks = [job.run_dir.parts[-4] for job in second]
    assert tasks == sorted(tasks, key=["taste", "easy"].index)
    taste = [job.run_dir.parts[-2] for job in second if job.run_dir.parts[-4] == "taste"]
    assert taste[0] == "f0.01" and taste[-1] == "f0.0001"


def test_every_planned_run_is_a_valid_recipe(tmp_path: Path) -> None:
    first, second = plan(tmp_path, fractions=[0.0001], seeds=[0], modes=list(le.MODES))
    lpft = [job for job in second if job.run_dir.parts[-3].endswith("_lpft")]
    assert lpft and all("finetune.probe_epochs=10" in job.overrides for job in lpft)  # of 20
    for job in first + second:
        recipe = load_recipe(job.recipe, list(job.overrides))
        assert recipe.data.path == "synth/transfer_u20000.txt"
        if "pretrain" in job.run_dir.parts:
            assert recipe.pretrain is not None
        else:
            assert recipe.finetune.head.label_fraction == 0.0001
            assert recipe.pretrain is None


@pytest.mark.parametrize(("users", "smallest"), [(20_000, 2), (5_000, 1), (1_000_000, 80)])
def test_fractions_are_nested_and_the_smallest_keeps_a_user(users: int, smallest: int) -> None:
    train = split_users(users, seed=0)[0]
    assert labelled_count(train.numel(), min(tr.FRACTIONS)) == smallest
    previous: set[int] = set()
    for fraction in sorted(tr.FRACTIONS):
        labelled = set(labelled_train(train, fraction).tolist())
        assert len(labelled) == labelled_count(train.numel(), fraction) >= 1
        assert previous <= labelled
        previous = labelled
    assert previous == set(train.tolist())


def test_ml1m_study_runs_infonce_and_bag(tmp_path: Path) -> None:
    """label_efficiency.py's study gets infonce (the paper's CLUE recipe with the InfoNCE
    objective) and bag (the table2 NFM recipes) without recipes of its own."""
    jobs = le.plan(
        le.ML1M.recipes_dir,
        tmp_path,
        ["gender", "coldrec3"],
        ["infonce", "bag", "zero"],
        ["probe"],
        [0.01],
        [0],
        [],
    )
    first, second = [j for j in jobs if not j.after], [j for j in jobs if j.after]
    pretrainings = [job for job in first if "pretrain" in job.run_dir.parts]
    assert [job.run_dir.parent.name for job in pretrainings] == [
        "profile_infonce",
        "cold_start_infonce",
    ]
    for job in pretrainings:
        assert job.recipe.name.endswith("_clue_paper.yaml")
        recipe = load_recipe(job.recipe, list(job.overrides))
        assert recipe.pretrain is not None
        objective = recipe.pretrain.objective
        assert objective.kind == "infonce"
        assert (objective.similarity, objective.temperature) == ("cosine", 0.2)  # type: ignore[union-attr]
    bag = [job for job in first if job.run_dir.parts[-3] == "bag_probe"]
    assert [job.recipe.name for job in bag] == ["gender_nfm.yaml", "coldrec3_nfm.yaml"]
    for job in first + second:
        load_recipe(job.recipe, list(job.overrides))
    assert len(second) == 2  # the infonce fine-tunings of the two tasks


def test_an_unknown_method_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['simclr'\]"):
        le.plan(
            le.ML1M.recipes_dir, Path("runs"), ["gender"], ["simclr"], ["probe"], [1.0], [0], []
        )
    with pytest.raises(ValueError, match="does not pre-train"):
        le.pretrain_groups(le.ML1M.recipes_dir, ["gender"], "bag", [])


# --------------------------------------------------------------------------- the rule


def curve(means: list[float], sem: float = 0.01, n: int = 3) -> list[Point]:
    return [Point(10**k, mean, sem, n) for k, mean in enumerate(means, start=1)]


def test_payoff_stops_where_cluezero_catches_up_for_good() -> None:
    zero = curve([0.50, 0.60, 0.78, 0.80])
    best = curve([0.70, 0.75, 0.79, 0.80])
    assert tr.payoff(zero, best) == ("stops", 1000)
    # a gap of 2 standard errors of the difference is "within"; just above it pays off
    edge = 2 * math.hypot(0.01, 0.01)
    assert tr.payoff(zero, curve([0.70, 0.75, 0.78 + edge * 0.99, 0.80])) == ("stops", 1000)
    assert tr.payoff(zero, curve([0.70, 0.75, 0.78 + edge * 1.01, 0.80])) == ("stops", 10_000)


def test_payoff_stops_only_after_the_last_count_where_it_pays() -> None:
    zero = curve([0.50, 0.70, 0.60, 0.80])
    best = curve([0.70, 0.70, 0.75, 0.80])  # level at 100, ahead again at 1,000
    assert tr.payoff(zero, best) == ("stops", 10_000)


def test_payoff_never_stops_and_never_pays() -> None:
    assert tr.payoff(curve([0.5, 0.6]), curve([0.7, 0.8])) == ("never stops", None)
    assert tr.payoff(curve([0.5, 0.6]), curve([0.5, 0.55])) == ("never pays off", None)
    assert tr.payoff(curve([0.5, 0.6]), curve([0.6, 0.7], sem=0.1)) == ("never pays off", None)
    assert tr.payoff([], curve([0.5])) == ("no data", None)
    # counts are matched, not positions
    assert tr.payoff([Point(10, 0.5, 0.0, 1)], [Point(20, 0.9, 0.0, 1)]) == ("no data", None)


def test_payoff_with_one_seed_compares_means() -> None:
    zero = curve([0.50, 0.80], sem=0.0, n=1)
    assert tr.payoff(zero, curve([0.51, 0.80], sem=0.0, n=1)) == ("stops", 100)


def summary_cell(metric: str, mean: float) -> dict[str, Any]:
    """One cell of a summary's ``cells``: ``metric``'s mean over 3 seeds, std 0.001."""
    return {metric: {"mean": mean, "std": 0.001}, "n": 3}


def test_the_verdict_does_not_credit_an_encoders_untrained_gain_to_pretraining() -> None:
    """clue beats CLUEZero, but the same encoder untrained (item_mean) beats clue: pre-training
    itself never pays off; the verdict names the baseline it was measured against."""
    cell = partial(summary_cell, "acc")

    summary = {
        "metric": {"easy": "acc"},
        "train_users": {"easy": {"0.01": 80, "1": 8000}},
        "cells": {
            "easy": {
                "zero/full": {"0.01": cell(0.60), "1": cell(0.70)},
                "item_mean/full": {"0.01": cell(0.66), "1": cell(0.75)},
                "clue/full": {"0.01": cell(0.63), "1": cell(0.75)},
                "zero/probe": {"0.01": cell(0.50), "1": cell(0.51)},
                "item_mean/probe": {"0.01": cell(0.50), "1": cell(0.52)},
                "clue/probe": {"0.01": cell(0.53), "1": cell(0.55)},
            }
        },
    }
    lines = "\n".join(tr.payoff_lines(summary, "easy"))
    assert "- full: pre-training **never pays off** over 80 to 8,000 labelled users" in lines
    assert "80: clue − item_mean -0.0300*; 8,000: clue − item_mean +0.0000." in lines
    assert "- probe: pre-training **never stops paying off**" in lines


def test_a_verdict_from_one_count_does_not_claim_a_range() -> None:
    """Pre-training measured at one count only (the others cut off): the verdict says it
    pays off there and that where it stops is open, not "over 8,000 to 8,000"."""
    cell = partial(summary_cell, "mrr@10")

    summary = {
        "metric": {"coldstart": "mrr@10"},
        "train_users": {"coldstart": {"0.001": 800, "0.01": 8000}},
        "cells": {
            "coldstart": {
                "zero/full": {"0.001": cell(0.002), "0.01": cell(0.010)},
                "clue/full": {"0.01": cell(0.031)},
                "zero/probe": {"0.001": cell(0.003), "0.01": cell(0.0305)},
                "clue/probe": {"0.01": cell(0.031)},
            }
        },
    }
    lines = "\n".join(tr.payoff_lines(summary, "coldstart"))
    assert "- full: pre-training **pays off at 8,000 labelled users**, the only count" in lines
    assert "where it stops paying off is open" in lines
    assert "8,000 to 8,000" not in lines
    assert (
        "- probe: pre-training **never pays off** over the one count measured on both sides "
        "(8,000 labelled users)" in lines
    )


# --------------------------------------------------------------------------- data


def test_the_data_is_generated_once_and_again_when_it_does_not_match(tmp_path: Path) -> None:
    assert tr.ensure_data(tmp_path, 300, 120, 0) is True
    files = tr.data_files(tmp_path, 300)
    assert all(path.exists() for path in files.values())
    assert tr.ensure_data(tmp_path, 300, 120, 0) is False  # fingerprint matches: reused
    assert tr.ensure_data(tmp_path, 300, 120, 1) is True  # another seed: written again
    files["easy"].write_text("user,easy\n")  # a truncated file does not match
    assert tr.ensure_data(tmp_path, 300, 120, 1) is True
    assert files["easy"].stat().st_size > 20


# --------------------------------------------------------------------------- summarising


USERS = 2000  # 1,600 training users: 0.01% -> 1, 1% -> 16, 100% -> 1,600


def fake_runs(runs: Path) -> None:
    """metrics.json files as clue run writes them: pre-training helps up to 1% of the
    users on ``easy`` (then CLUEZero catches up), and never on ``coldstart``."""
    for task in ("easy", "coldstart"):
        for method in ("zero", "bag", "clue", "infonce"):
            for mode in ("full", "probe"):
                for fraction in (0.0001, 0.01, 1.0):
                    for seed in (0, 1, 2):
                        lead = 0.1 if fraction < 1 and method in ("clue", "infonce") else 0.0
                        if task == "coldstart":
                            lead = 0.0
                        value = 0.6 + 0.1 * fraction + lead + 0.01 * seed
                        test = (
                            {"acc": value, "macro_f1": value / 2, "majority_acc": 0.5}
                            if task == "easy"
                            else {"mrr@10": value / 5, "recall@10": value / 2, "ndcg@10": 0.1}
                        )
                        stats = (
                            {"labelled users": USERS} if task == "easy" else {"target users": USERS}
                        )
                        folder = le.finetune_dir(runs, task, method, mode, fraction, seed)
                        folder.mkdir(parents=True)
                        metrics = {
                            "valid": test,
                            "test": test,
                            "best_epoch": 2,
                            "epochs": 4,
                            "seconds": 3.0,
                            "task": stats,
                        }
                        (folder / "metrics.json").write_text(json.dumps(metrics))


def test_summary_markdown_and_plots_from_a_runs_directory(tmp_path: Path) -> None:
    fake_runs(tmp_path / "runs")
    le.note_sweep(tmp_path / "runs", {"command": "python benchmarks/transfer.py --users 2000"})
    args = argparse.Namespace(
        runs_dir=tmp_path / "runs",
        tasks=list(tr.TASKS),
        methods=list(tr.METHODS),
        modes=list(le.DEFAULT_MODES),
        fractions=list(tr.FRACTIONS),
        seeds=[0, 1, 2],
        overrides=[],
        recipes_dir=tr.study(USERS).recipes_dir,
    )
    data = le.build_data(args, tr.study(USERS))
    data["settings"].update(users=USERS, items=USERS, note="The 1M-user run is pending.")
    assert len(data["runs"]) == 2 * 4 * 2 * 3 * 3
    summary = data["summary"]
    assert summary["train_users"]["easy"] == {"0.0001": 1, "0.01": 16, "1": 1600}
    assert summary["cells"]["easy"]["bag/full"]["1"]["acc"]["mean"] == pytest.approx(0.71)

    text = tr.markdown(data)
    assert text.startswith("# Transfer at scale: label efficiency on 2,000 synthetic users\n")
    assert "**Scale: 2,000 users** (2,000 items), seeds 0, 1, 2" in text
    assert "Command: `python benchmarks/transfer.py --users 2000`" in text
    assert "> The 1M-user run is pending." in text
    assert "| model, mode | 0.01% (1) | 1% (16) | 100% (1,600) |" in text
    assert "| bag of items (NFM), full |" in text and "| InfoNCE, probe |" in text
    assert "| InfoNCE − CLUEZero, full | +0.1000* | +0.1000* | +0.0000 |" in text
    assert "- full: pre-training stops paying off from **1,600 labelled users** on" in text
    assert "- probe: pre-training stops paying off from **1,600 labelled users** on" in text
    assert "pre-training **never pays off** over 1 to 1,600 labelled users" in text  # coldstart
    assert "Hard" not in text  # no runs, no table

    written = le.plot(data, tmp_path, study=tr.study(USERS))
    assert [p.name for p in written] == ["transfer_easy.png", "transfer_coldstart.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the JSON alone redraws everything
    tr.write_outputs(data, tmp_path / "out")
    again = json.loads((tmp_path / "out" / "transfer.json").read_text())
    assert tr.markdown(again) == text
    assert (tmp_path / "out" / "transfer.md").read_text() == text


def test_one_seed_is_said_to_compare_means(tmp_path: Path) -> None:
    fake_runs(tmp_path / "runs")
    args = argparse.Namespace(
        runs_dir=tmp_path / "runs",
        tasks=["easy"],
        methods=["zero", "clue"],
        modes=["full"],
        fractions=list(tr.FRACTIONS),
        seeds=[0],
        overrides=[],
        recipes_dir=tr.study(USERS).recipes_dir,
    )
    data = le.build_data(args, tr.study(USERS))
    data["settings"].update(users=USERS, items=USERS, note="")
    assert "(one seed: no standard error, so the rule compares means)" in tr.markdown(data)


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path: Path) -> None:
    """The script at 300 users: data written, one shared pre-training, fine-tunings from
    it and without, outputs; a second call reuses the data and skips every finished run."""
    import subprocess
    import sys

    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "transfer.py"),
        *("--users", "300", "--items", "120", "--data-root", str(tmp_path / "data")),
        *("--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")),
        *("--tasks", "easy", "coldstart", "--methods", "infonce", "zero", "bag"),
        *("--modes", "probe", "--fractions", "0.01", "--seeds", "0", "--jobs", "2"),
        *("--gpus", "0"),
    ]
    for override in (
        "device=cpu",
        "pretrain.train.epochs=1",
        "pretrain.train.precision=fp32",
        "finetune.train.precision=fp32",
        "finetune.train.epochs=2",
        "backbone.dim=16",
        "data.max_len=10",
    ):
        command += ["--set", override]
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
    result = json.loads((tmp_path / "out" / "transfer.json").read_text())
    assert len(result["runs"]) == 2 * 3  # tasks x methods
    assert {r["train_users"] for r in result["runs"]} == {3}  # ceil(0.01 * 240)
    assert sorted(p.name for p in (tmp_path / "runs" / "pretrain").iterdir()) == ["profile_infonce"]
    assert (tmp_path / "out" / "transfer_coldstart.png").exists()
    text = (tmp_path / "out" / "transfer.md").read_text()
    assert "**Scale: 300 users** (120 items)" in text and "Where pre-training pays off" in text
    again = subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    assert "reusing the synthetic data" in again.stdout
    assert '"skipped": 7' in again.stdout
