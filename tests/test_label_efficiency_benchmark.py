"""Tests for benchmarks/label_efficiency.py: the plan of runs (shared pre-trainings,
priority order, overrides), the nested label subsets, and the summary, markdown and
plots built from a fake runs directory."""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmark_scripts import load_benchmark

from clue_fw.heads.user_level import labelled_train, split_users

ROOT = Path(__file__).resolve().parent.parent
le = load_benchmark("label_efficiency")

RECIPES = ROOT / "recipes" / "table2"


def write_tiny_ml1m(root: Path, users: int = 160, seed: int = 0) -> Path:
    """A small data root shaped like ML-1M (``ml-1m/`` with the sequence file, users.dat
    and movies.dat), so the shipped table2 recipes run on it unchanged: movies 1-60 are
    source genres, 61-80 target genres; a user's gender sets which half of the source
    movies they prefer."""
    rng = random.Random(seed)
    folder = root / "ml-1m"
    folder.mkdir(parents=True, exist_ok=True)
    source = ["Action", "Comedy", "Drama"]
    target = ["Animation", "Children's", "Documentary", "Fantasy", "Film-Noir", "Musical"]
    target.append("Western")  # every default target genre of the cold-start recipes
    movies = [f"{m}::Movie {m} (1999)::{source[m % 3]}" for m in range(1, 61)]
    movies += [f"{m}::Movie {m} (1999)::{target[m % 7]}" for m in range(61, 81)]
    (folder / "movies.dat").write_text("\n".join(movies) + "\n", encoding="latin-1")
    ages = [1, 18, 25, 35, 45, 50, 56]
    people, lines = [], []
    for user in range(1, users + 1):
        male = user % 3 != 0
        people.append(f"{user}::{'M' if male else 'F'}::{ages[user % 7]}::{user % 21}::00000")
        liked = range(1, 31) if male else range(31, 61)
        items = rng.sample(list(liked), 15) + rng.sample(range(1, 61), 5)
        items += rng.sample(range(61, 81), rng.randint(1, 4))
        rng.shuffle(items)
        lines.append(" ".join(map(str, [user, *items])))
    (folder / "users.dat").write_text("\n".join(people) + "\n", encoding="latin-1")
    (folder / "ml-1m_sequences.txt").write_text("\n".join(lines) + "\n")
    return root


# --------------------------------------------------------------------------- the plan


def test_profile_tasks_share_a_pretraining_and_cold_start_tasks_another() -> None:
    tasks = list(le.TASKS)
    for method in ("clue", "masked_item"):
        groups = le.pretrain_groups(RECIPES, tasks, method, [])
        assert groups["gender"] is groups["age"] is groups["occupation"]
        assert groups["coldrec3"] is groups["coldrec5"]
        assert groups["gender"].name == "profile" and groups["coldrec3"].name == "cold_start"
        assert groups["gender"].recipe == RECIPES / f"gender_{method}.yaml"


def test_a_changed_target_domain_splits_the_cold_start_group(tmp_path: Path) -> None:
    for task in ("coldrec3", "coldrec5"):
        text = (RECIPES / f"{task}_clue.yaml").read_text()
        if task == "coldrec5":
            text = text.replace(
                "movies: ml-1m/movies.dat",
                "movies: ml-1m/movies.dat\n      target_genres: [Western]",
            )
        (tmp_path / f"{task}_clue.yaml").write_text(text)
    groups = le.pretrain_groups(tmp_path, ["coldrec3", "coldrec5"], "clue", [])
    assert groups["coldrec3"] != groups["coldrec5"]
    assert {g.name for g in groups.values()} == {"cold_start-coldrec3", "cold_start-coldrec5"}


def test_earlier_runs_are_kept_renamed_where_not_run_here() -> None:
    def run(method: str, seed: int, acc: float) -> dict[str, Any]:
        return {
            "task": "gender",
            "method": method,
            "mode": "full",
            "fraction": 0.1,
            "seed": seed,
            "test": {"acc": acc},
        }

    here = [run("clue", 0, 0.8)]
    earlier = [run("clue", 0, 0.6), run("clue", 1, 0.61), run("zero", 0, 0.7)]
    kept = le.keep_earlier_runs(here, earlier, {"clue": "clue_paper"})
    assert {(r["method"], r["seed"], r["test"]["acc"]) for r in kept} == {
        ("clue", 0, 0.8),
        ("clue_paper", 0, 0.6),
        ("clue_paper", 1, 0.61),
        ("zero", 0, 0.7),
    }
    assert le.keep_earlier_runs(here, [run("clue", 0, 0.6)], {}) == here  # here wins
    assert le.rename_pair("clue=clue_paper") == ("clue", "clue_paper")
    with pytest.raises(argparse.ArgumentTypeError, match="OLD=NEW"):
        le.rename_pair("clue")


def test_a_chain_of_merges_keeps_every_sweep_with_its_machine() -> None:
    h100 = {"gpu": "NVIDIA H100", "cpu_count": 16}
    cpu = {"cpu_count": 2}
    oldest = {"command": "first", "started": "2026-12-07 15:22:40", "wall_seconds": 504.5}
    middle = {"command": "second", "started": "2026-12-07 21:12:35", "wall_seconds": 500.0}
    newest = {"command": "third", "started": "2026-12-08 01:00:09", "wall_seconds": 504.4}
    # An output that itself kept an earlier one (written before sweeps carried machines).
    output = {
        "machine": cpu,
        "sweeps": [middle],
        "earlier": {"machine": h100, "sweeps": [oldest]},
    }
    sweeps = le.lineage_sweeps(output)
    assert [(s["command"], s["machine"]) for s in sweeps] == [("first", h100), ("second", cpu)]
    # Merging once more: the flattened sweeps keep their own machines.
    again = le.lineage_sweeps({"machine": h100, "sweeps": [newest], "earlier": {"sweeps": sweeps}})
    assert [(s["command"], s["machine"]) for s in again] == [
        ("first", h100),
        ("second", cpu),
        ("third", h100),
    ]
    assert le.machine_name(h100) == "NVIDIA H100"
    assert le.machine_name(cpu) == "CPU only (2 cores)"
    assert le.machine_name({}) == "CPU only (? cores)"


def without_and_with_prerequisite(jobs: list[Any]) -> tuple[list[Any], list[Any]]:
    """(pre-trainings and runs that need none, fine-tunings that wait for a pre-training)."""
    return [job for job in jobs if not job.after], [job for job in jobs if job.after]


def test_plan_counts_order_and_overrides(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    jobs = le.plan(
        RECIPES,
        runs,
        list(le.TASKS),
        list(le.METHODS),
        list(le.DEFAULT_MODES),
        list(le.FRACTIONS),
        [0, 1, 2],
        ["pretrain.train.epochs=1", "finetune.patience=5"],
    )
    first, second = without_and_with_prerequisite(jobs)
    pretrainings = [job for job in first if "pretrain" in job.run_dir.parts]
    # (profile, cold start) x (clue, clue_paper, masked item) x seeds
    assert len(pretrainings) == 2 * 3 * 3
    assert first[: len(pretrainings)] == pretrainings  # they start first
    # CLUEZero and the untrained item-mean encoder: no encoder to wait for
    assert len(first) - len(pretrainings) == 5 * 5 * 2 * 2 * 3
    assert len(second) == 5 * 5 * 2 * 3 * 3
    for job in pretrainings:
        assert "pretrain.train.epochs=1" in job.overrides
        assert job.overrides[-3:] == (
            "finetune.train.epochs=1",
            "finetune.mode=probe",
            "finetune.head.label_fraction=0.01",
        )
    for job in first[len(pretrainings) :] + second:
        method = job.run_dir.parts[-3].rsplit("_", 1)[0]
        # the fixed CLUE fine-tunes its own (item-mean) encoder, the others the Transformer
        encoder = "_item_mean.yaml" if method in ("clue", "item_mean") else "_zero.yaml"
        assert job.recipe.name.endswith(encoder), (method, job.recipe.name)
        assert "pretrain.train.epochs=1" not in job.overrides  # a zero recipe has no pretrain
        assert "finetune.patience=5" in job.overrides
    # priority: tasks in order, then fractions in the order given
    tasks = [job.run_dir.parts[-4] for job in second]
    assert tasks == sorted(tasks, key=list(le.TASKS).index)
    gender = [job.run_dir.parts[-2] for job in second if job.run_dir.parts[-4] == "gender"]
    assert gender[0] == "f0.01" and gender[-1] == "f0.25"
    # fine-tunings start from the pre-training of their group, method and seed
    job = next(j for j in second if j.run_dir == runs / "age/clue_probe/f0.1/seed2")
    assert "finetune.init_from=" + str(runs / "pretrain/profile_clue/seed2") in job.overrides
    assert job.after == (runs / "pretrain/profile_clue/seed2",)  # the pool waits for it
    assert "finetune.head.label_fraction=0.1" in job.overrides
    assert "finetune.mode=probe" in job.overrides
    cold = next(j for j in second if j.run_dir == runs / "coldrec5/masked_item_full/f1/seed0")
    assert "finetune.init_from=" + str(runs / "pretrain/cold_start_masked_item/seed0") in (
        cold.overrides
    )
    zero = [j for j in first if j.run_dir.parts[-3].startswith("zero_")]
    assert all(not any(o.startswith("finetune.init_from") for o in j.overrides) for j in zero)


def test_planned_fine_tunings_validate(tmp_path: Path) -> None:
    """Every kind of planned run is a valid recipe (init_from is checked at run time)."""
    from clue_fw.recipe import load_recipe

    jobs = le.plan(
        RECIPES,
        tmp_path,
        ["gender", "coldrec3"],
        list(le.METHODS),
        list(le.MODES),
        [0.01],
        [0],
        [],
    )
    for job in jobs:
        recipe = load_recipe(job.recipe, list(job.overrides))
        assert recipe.finetune.head.label_fraction in (0.01,)


def test_lpft_and_a_slower_encoder_are_modes_with_their_own_overrides(tmp_path: Path) -> None:
    def cells(modes: list[str], overrides: list[str]) -> dict[str, tuple[str, ...]]:
        jobs = le.plan(
            RECIPES, tmp_path, ["gender"], ["clue", "zero"], modes, [0.1], [0], overrides
        )
        return {
            "/".join(job.run_dir.parts[-3:-2]): job.overrides
            for job in jobs
            if "pretrain" not in job.run_dir.parts
        }

    found = cells(["lpft", "full_lr01"], [])
    assert set(found) == {"clue_lpft", "zero_lpft", "clue_full_lr01", "zero_full_lr01"}
    for name in ("clue_lpft", "zero_lpft"):  # half of table2's 100 fine-tuning epochs
        assert "finetune.mode=probe_then_full" in found[name]
        assert "finetune.probe_epochs=50" in found[name]
    for name in ("clue_full_lr01", "zero_full_lr01"):
        assert "finetune.mode=full" in found[name]
        assert "finetune.encoder_lr_scale=0.1" in found[name]
        assert not any("probe_epochs" in o for o in found[name])
    # the probe phase follows the epochs a --set gives, and a --set probe_epochs wins
    assert "finetune.probe_epochs=4" in cells(["lpft"], ["finetune.train.epochs=9"])["clue_lpft"]
    given = cells(["lpft"], ["finetune.probe_epochs=3"])["clue_lpft"]
    assert [o for o in given if "probe_epochs" in o] == ["finetune.probe_epochs=3"]
    with pytest.raises(ValueError, match="mode lpft: fine-tuning has 1 epoch"):
        cells(["lpft"], ["finetune.train.epochs=1"])
    with pytest.raises(ValueError, match="unknown mode"):
        cells(["linear"], [])
    # the default modes are still full and probe, with the overrides they always had
    assert le.DEFAULT_MODES == ("full", "probe")
    assert "finetune.mode=probe" in cells(list(le.DEFAULT_MODES), [])["clue_probe"]


def test_lpft_rows_tables_gains_and_plots(tmp_path: Path) -> None:
    fake_runs(tmp_path / "runs", modes=("full", "lpft"))
    data = le.build_data(args_for(tmp_path, modes=["full", "lpft"]))
    text = le.markdown(data)
    assert "`LP-FT` (Kumar et al. 2022) trains the head alone on the frozen encoder" in text
    assert "encoder lr × 0.1" not in text  # not run, not described
    assert "| CLUE (fixed: InfoNCE, split views), LP-FT | **0.7320 ± 0.0010** |" in text
    assert "| CLUE (fixed: InfoNCE, split views) − CLUEZero, LP-FT | +0.0300* |" in text
    assert (
        "| CLUE (fixed: InfoNCE, split views), LP-FT − CLUE (fixed: InfoNCE, split views), "
        "full | +0.0100* |"
    ) in text
    assert "| CLUEZero, LP-FT − CLUEZero, full | +0.0000 |" in text
    assert "and of each other way of fine-tuning over full fine-tuning of the same model" in text
    assert len(le.plot(data, tmp_path)) == 2


def test_fraction_subsets_of_the_study_are_nested() -> None:
    train = split_users(6040, seed=0)[0]
    assert train.numel() == 4832
    previous: set[int] = set()
    for fraction in sorted(le.FRACTIONS):
        users = set(labelled_train(train, fraction).tolist())
        assert previous <= users
        previous = users
    assert previous == set(train.tolist())


# --------------------------------------------------------------------------- summarising


def fake_runs(runs: Path, modes: tuple[str, ...] = ("full", "probe")) -> None:
    """metrics.json files as clue run writes them, for two tasks (one seed missing)."""
    for task, stats in (
        ("gender", {"labelled users": 6040}),
        ("coldrec3", {"target users": 4211}),
    ):
        for method in ("zero", "clue"):
            for mode in modes:
                for fraction in (0.01, 1.0):
                    for seed in (0, 1, 2):
                        missing = ("gender", "clue", "probe", 1.0, 2)
                        if (task, method, mode, fraction, seed) == missing:
                            continue  # not run
                        base = 0.7 + 0.1 * fraction + (0.02 if method == "clue" else 0.0)
                        base += 0.01 if (method, mode) == ("clue", "lpft") else 0.0
                        value = base + 0.001 * seed
                        test = (
                            {"acc": value, "macro_f1": value / 2, "majority_acc": 0.74}
                            if task == "gender"
                            else {"mrr@10": value / 5, "recall@10": value / 2, "ndcg@10": 0.1}
                        )
                        folder = le.finetune_dir(runs, task, method, mode, fraction, seed)
                        folder.mkdir(parents=True)
                        metrics = {
                            "valid": test,
                            "test": test,
                            "best_epoch": 3,
                            "epochs": 13,
                            "seconds": 9.5,
                            "task": stats,
                        }
                        (folder / "metrics.json").write_text(json.dumps(metrics))


def args_for(tmp_path: Path, **extra: object) -> object:
    import argparse

    values = {
        "runs_dir": tmp_path / "runs",
        "tasks": list(le.TASKS),
        "methods": list(le.METHODS),
        "modes": list(le.DEFAULT_MODES),
        "fractions": list(le.FRACTIONS),
        "seeds": [0, 1, 2],
        "overrides": [],
        "recipes_dir": RECIPES,
    }
    values.update(extra)
    return argparse.Namespace(**values)


def test_summary_markdown_and_plots_from_a_runs_directory(tmp_path: Path) -> None:
    fake_runs(tmp_path / "runs")
    data = le.build_data(args_for(tmp_path))
    assert len(data["runs"]) == 2 * 2 * 2 * 2 * 3 - 1
    summary = data["summary"]
    cell = summary["cells"]["gender"]["clue/full"]["0.01"]
    assert cell["n"] == 3
    assert cell["acc"]["mean"] == pytest.approx(0.721 + 0.001)
    assert cell["acc"]["std"] == pytest.approx(0.001)
    assert cell["macro_f1"]["mean"] == pytest.approx((0.721 + 0.001) / 2)
    assert summary["cells"]["gender"]["clue/probe"]["1"]["n"] == 2
    assert summary["majority_acc"]["gender"] == {"0.01": 0.74, "1": 0.74}
    assert "coldrec3" not in summary["majority_acc"]
    assert summary["train_users"]["gender"] == {"0.01": 49, "1": 4832}
    assert summary["train_users"]["coldrec3"] == {"0.01": 34, "1": 3370}
    assert summary["cells"]["coldrec3"]["zero/full"]["1"]["mrr@10"]["mean"] == pytest.approx(
        0.801 / 5
    )
    assert "machine" in data and "command" in data

    text = le.markdown(data)
    assert "## Gender (2 classes): test accuracy" in text
    assert "## ColdRec g<=3: test MRR@10" in text
    assert "| model, mode | 1% (49) | 100% (4,832) |" in text
    assert (
        "| CLUE (fixed: InfoNCE, split views), full | **0.7220 ± 0.0010** | **0.8210 ± 0.0010** |"
        in text
    )
    assert (
        "| CLUE (fixed: InfoNCE, split views), probe | 0.7220 ± 0.0010 | 0.8205 ± 0.0007 (n=2) |"
        in text
    )  # 2 seeds
    assert "| majority class | 0.7400 | 0.7400 |" in text
    assert "| CLUE (fixed: InfoNCE, split views) − CLUEZero, full | +0.0200* | +0.0200* |" in text
    assert "Best fine-tuning epoch: mean 3.0; longest run 13 epochs." in text
    assert "never beat the untrained head" not in text
    assert "Age" not in text  # no runs, no table

    written = le.plot(data, tmp_path)
    assert [p.name for p in written] == [
        "label_efficiency_gender.png",
        "label_efficiency_coldrec3.png",
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the JSON alone is enough to redraw everything
    le.write_outputs(data, tmp_path / "out")
    again = json.loads((tmp_path / "out" / "label_efficiency.json").read_text())
    assert le.markdown(again) == text
    assert len(le.plot(again, tmp_path / "out")) == 2


def test_runs_that_kept_the_untrained_head_are_named(tmp_path: Path) -> None:
    fake_runs(tmp_path / "runs")
    path = le.finetune_dir(tmp_path / "runs", "gender", "zero", "probe", 0.01, 1) / "metrics.json"
    metrics = json.loads(path.read_text())
    path.write_text(json.dumps({**metrics, "best_epoch": 0}))
    data = le.build_data(args_for(tmp_path))
    assert data["summary"]["cells"]["gender"]["zero/probe"]["0.01"]["best_epoch"] == [3, 0, 3]
    assert "1 of 23 runs never beat the untrained head" in le.markdown(data)
    assert "zero/probe 1% (1)." in le.markdown(data)


def test_sweep_records_accumulate(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    first = le.note_sweep(runs, {"command": "a", "finished": False})
    le.note_sweep(runs, {"command": "a", "finished": True, "wall_seconds": 1.0}, first)
    le.note_sweep(runs, {"command": "b", "finished": False})  # killed by a time limit
    data = le.build_data(args_for(tmp_path))
    assert [s["command"] for s in data["sweeps"]] == ["a", "b"]
    assert [s["finished"] for s in data["sweeps"]] == [True, False]
    assert data["summary"]["cells"] == {}
    assert "# Label efficiency" in le.markdown(data)


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path: Path) -> None:
    """The script on a tiny ML-1M look-alike: pre-trainings, fine-tunings from them,
    outputs; a second call skips every finished run."""
    import subprocess

    data = write_tiny_ml1m(tmp_path / "data")
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "label_efficiency.py"),
        *("--data-root", str(data), "--runs-dir", str(tmp_path / "runs")),
        *("--out-dir", str(tmp_path / "out"), "--tasks", "gender", "coldrec3"),
        *("--methods", "clue", "zero", "--modes", "probe", "--fractions", "0.05"),
        *("--seeds", "0", "--jobs", "2", "--gpus", "0"),
    ]
    for override in (
        "device=cpu",
        "pretrain.train.epochs=1",
        "finetune.train.epochs=2",
        "backbone.dim=16",
        "data.max_len=10",
    ):
        command += ["--set", override]
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
    result = json.loads((tmp_path / "out" / "label_efficiency.json").read_text())
    assert len(result["runs"]) == 2 * 2  # tasks x methods
    assert {r["train_users"] for r in result["runs"]} == {7}  # ceil(0.05 * 128)
    assert (tmp_path / "out" / "label_efficiency_coldrec3.png").exists()
    assert sorted(p.name for p in (tmp_path / "runs" / "pretrain").iterdir()) == [
        "cold_start_clue",
        "profile_clue",
    ]
    again = subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    assert '"skipped": 6' in again.stdout
