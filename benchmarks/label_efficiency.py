"""Label efficiency: when does pre-training the user encoder pay off?

Usage (from the repository root)::

    CLUE_DATA_DIR=../shared/data python benchmarks/label_efficiency.py --seeds 0 1 2 \
        --jobs 24 --deadline 420 --runs-dir runs/label_efficiency

Pre-trains once per method (``clue``, ``masked_item``), seed and distinct pre-training
data, with the pre-training section of ``recipes/table2/<task>_<method>.yaml``. The
profile tasks (gender, age, occupation) pre-train on every user's whole sequence and
share one pre-training; the cold-start tasks pre-train on the source domain of their
genre cut (fewer items), so they share another. Tasks are grouped by what their
pre-training reads (data, backbone, pre-training section, head kind and target
domain), not by a list kept here.

Then every task x label fraction x mode (``full`` fine-tuning, ``probe``: a linear
probe of the frozen encoder) x method x seed fine-tunes
``recipes/table2/<task>_zero.yaml`` with ``finetune.head.label_fraction``, starting
from the pre-trained encoder (``finetune.init_from``), or from a random one for
``zero`` (CLUEZero; its probe is a probe of random features, the honest floor). The
labelled training users of a fraction are the first ceil(fraction x n_train) of one
fixed order drawn from the split seed, so fractions are nested and validation and test
users are the same for every run.

Everything runs through :mod:`pool` (``--jobs`` processes over ``--gpus`` GPUs), in
two phases: the pre-trainings with the CLUEZero fine-tunings (which need none), then
the fine-tunings of pre-trained encoders. Within a phase, runs start in priority order:
``--tasks`` in the order given, then ``--fractions`` in the order given (the default
puts 1%, 10% and 100% first), so a sweep cut off by ``--deadline`` (seconds after which
no run starts) still has whole curves for its first tasks. Finished runs are skipped
and interrupted ones resumed: repeat the command to complete a sweep.

Writes ``docs/results/label_efficiency.json`` (every run's test metrics, mean and std
per cell, the machine, the command), ``docs/results/label_efficiency.md`` (a table per
task) and ``docs/results/label_efficiency_<task>.png``; ``--summarize-only`` rebuilds
them from the runs on disk, and ``--from-json`` from the JSON alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pool import Job, run_jobs, visible_gpus
from seeds_table import machine_info

from clue_fw.analysis.compare import mean_std
from clue_fw.heads.user_level import labelled_count, split_users
from clue_fw.recipe import apply_overrides

ROOT = Path(__file__).resolve().parent.parent

TASKS = {  # recipe prefix: (title, main metric, metrics kept per cell)
    "gender": ("Gender (2 classes)", "acc", ("acc", "macro_f1", "majority_acc")),
    "age": ("Age (7 classes)", "acc", ("acc", "macro_f1", "majority_acc")),
    "occupation": ("Occupation (21 classes)", "acc", ("acc", "macro_f1", "majority_acc")),
    "coldrec3": ("ColdRec g<=3", "mrr@10", ("mrr@10", "recall@10", "ndcg@10")),
    "coldrec5": ("ColdRec g<=5", "mrr@10", ("mrr@10", "recall@10", "ndcg@10")),
}
METHODS = {"clue": "CLUE", "masked_item": "PeterRec (masked item)", "zero": "CLUEZero"}
MODES = {"full": "full", "probe": "probe"}
FRACTIONS = (0.01, 0.1, 1.0, 0.05, 0.25)  # priority order: the ends and middle first
METRIC_TITLES = {
    "acc": "accuracy",
    "macro_f1": "macro-F1",
    "mrr@10": "MRR@10",
    "recall@10": "Recall@10",
    "ndcg@10": "NDCG@10",
}
EVAL_BATCH = 4096
"""Evaluation batch of every fine-tuning: a profile split (906 test users) or a
cold-start split (about 1,500 test pairs) is one batch; metrics are exact either way."""


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class PretrainGroup:
    """Tasks whose pre-training reads the same data with the same settings."""

    name: str
    recipe: Path  # the <task>_<method> recipe that pre-trains for all of them
    tasks: tuple[str, ...]


def fraction_name(fraction: float) -> str:
    return f"f{fraction:g}"


def pretrain_overrides(overrides: list[str]) -> list[str]:
    """User overrides for a pre-training run: all of them."""
    return list(overrides)


def finetune_overrides(overrides: list[str]) -> list[str]:
    """User overrides for a fine-tuning run: all but ``pretrain.*`` (its recipe has none)."""
    return [o for o in overrides if not o.strip().startswith("pretrain.")]


def pretrain_key(recipe: dict[str, Any]) -> str:
    """What a recipe's pre-training depends on: data, backbone, pre-training settings and
    the head's choice of sequences (profile: whole sequences; cold start: its source cut)."""
    head = recipe["finetune"]["head"]
    reads = {"kind": head["kind"], "target": head.get("target")}
    parts = {
        "data": recipe["data"],
        "backbone": recipe["backbone"],
        "pretrain": recipe.get("pretrain"),
        "head": reads,
    }
    return json.dumps(parts, sort_keys=True)


def load_yaml(path: Path, overrides: list[str]) -> dict[str, Any]:
    return apply_overrides(yaml.safe_load(path.read_text()), overrides)


def pretrain_groups(
    recipes_dir: Path, tasks: list[str], method: str, overrides: list[str]
) -> dict[str, PretrainGroup]:
    """Task -> its pre-training group, for one pre-training ``method``."""
    by_key: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for task in tasks:
        recipe = load_yaml(recipes_dir / f"{task}_{method}.yaml", pretrain_overrides(overrides))
        key = pretrain_key(recipe)
        by_key.setdefault(key, []).append(task)
        kinds[key] = recipe["finetune"]["head"]["kind"]
    groups: dict[str, PretrainGroup] = {}
    for key, members in by_key.items():
        same_kind = sum(kind == kinds[key] for kind in kinds.values())
        name = kinds[key] if same_kind == 1 else f"{kinds[key]}-{members[0]}"
        group = PretrainGroup(name, recipes_dir / f"{members[0]}_{method}.yaml", tuple(members))
        for task in members:
            groups[task] = group
    return groups


def pretrain_dir(runs_dir: Path, group: PretrainGroup, method: str, seed: int) -> Path:
    return runs_dir / "pretrain" / f"{group.name}_{method}" / f"seed{seed}"


def finetune_dir(
    runs_dir: Path, task: str, method: str, mode: str, fraction: float, seed: int
) -> Path:
    return runs_dir / task / f"{method}_{mode}" / fraction_name(fraction) / f"seed{seed}"


def plan(
    recipes_dir: Path,
    runs_dir: Path,
    tasks: list[str],
    methods: list[str],
    modes: list[str],
    fractions: list[float],
    seeds: list[int],
    overrides: list[str],
) -> tuple[list[Job], list[Job]]:
    """(phase 1, phase 2): pre-trainings then CLUEZero fine-tunings; then the fine-tunings
    of pre-trained encoders. Each in priority order (task, fraction, mode, method, seed)."""
    pretrain_jobs: list[Job] = []
    encoder_of: dict[tuple[str, str, int], Path] = {}
    for method in (m for m in methods if m != "zero"):
        groups = pretrain_groups(recipes_dir, tasks, method, overrides)
        for seed in seeds:
            for task in tasks:
                group = groups[task]
                run_dir = pretrain_dir(runs_dir, group, method, seed)
                encoder_of[(task, method, seed)] = run_dir
                job = Job(
                    group.recipe,
                    run_dir,
                    (
                        f"seed={seed}",
                        *pretrain_overrides(overrides),
                        # its own fine-tuning is not used: make it one cheap epoch
                        "finetune.train.epochs=1",
                        "finetune.mode=probe",
                        "finetune.head.label_fraction=0.01",
                    ),
                )
                if job not in pretrain_jobs:
                    pretrain_jobs.append(job)
    zero_jobs: list[Job] = []
    encoder_jobs: list[Job] = []
    for task in tasks:
        for fraction in fractions:
            for mode in modes:
                for method in methods:
                    for seed in seeds:
                        cell = (
                            f"seed={seed}",
                            *finetune_overrides(overrides),
                            f"finetune.head.label_fraction={fraction!r}",
                            f"finetune.mode={mode}",
                            f"finetune.eval.batch_size={EVAL_BATCH}",
                        )
                        if method != "zero":
                            cell += (f"finetune.init_from={encoder_of[(task, method, seed)]}",)
                        job = Job(
                            recipes_dir / f"{task}_zero.yaml",
                            finetune_dir(runs_dir, task, method, mode, fraction, seed),
                            cell,
                        )
                        (zero_jobs if method == "zero" else encoder_jobs).append(job)
    return pretrain_jobs + zero_jobs, encoder_jobs


def run_study(args: argparse.Namespace) -> dict[str, Any]:
    """Run both phases (skipping finished runs); return a record of this sweep."""
    first, second = plan(
        args.recipes_dir,
        args.runs_dir,
        args.tasks,
        args.methods,
        args.modes,
        args.fractions,
        args.seeds,
        args.overrides,
    )
    gpus = visible_gpus() if args.gpus is None else args.gpus
    started = time.perf_counter()
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    machine["gpus_used"] = gpus
    (args.runs_dir / "machine.json").write_text(json.dumps(machine, indent=1) + "\n")
    print(
        f"{len(first)} runs in phase 1 (pre-trainings and CLUEZero), {len(second)} in "
        f"phase 2; {args.jobs} at a time over {gpus} GPU(s)",
        flush=True,
    )
    # recorded before it starts, so a sweep killed by a time limit still leaves its command
    record: dict[str, Any] = {
        "command": command_line(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "jobs": args.jobs,
        "gpus": gpus,
        "deadline_s": args.deadline,
        "finished": False,
    }
    index = note_sweep(args.runs_dir, record)
    results = run_jobs(first, args.jobs, gpus, args.deadline)
    left = None if args.deadline is None else max(args.deadline - elapsed(started), 0.0)
    results += run_jobs(second, args.jobs, gpus, left)
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    record.update(
        finished=True,
        wall_seconds=round(elapsed(started), 1),
        runs=counts,
        failed=[str(r.job.run_dir) for r in results if r.status == "failed"],
    )
    note_sweep(args.runs_dir, record, index)
    print(f"sweep: {json.dumps(record)}", flush=True)
    return record


def note_sweep(runs_dir: Path, record: dict[str, Any], index: int | None = None) -> int:
    """Add ``record`` to ``runs_dir/sweeps.json`` (or replace entry ``index``)."""
    path = runs_dir / "sweeps.json"
    sweeps = json.loads(path.read_text()) if path.exists() else []
    if index is None:
        sweeps.append(record)
        index = len(sweeps) - 1
    else:
        sweeps[index] = record
    path.write_text(json.dumps(sweeps, indent=1) + "\n")
    return index


def elapsed(started: float) -> float:
    return time.perf_counter() - started


# --------------------------------------------------------------------------- summarising


def training_users(task: str, metrics: dict[str, Any]) -> int:
    """Training users of the 80/5/15 split, from the counts a run keeps in metrics.json."""
    stats = metrics.get("task", {})
    users = stats.get("labelled users", stats.get("target users", 0))
    return int(split_users(int(users), 0)[0].numel()) if users else 0


def collect(
    runs_dir: Path,
    tasks: list[str],
    methods: list[str],
    modes: list[str],
    fractions: list[float],
    seeds: list[int],
) -> list[dict[str, Any]]:
    """One record per finished fine-tuning run found under ``runs_dir``."""
    found = []
    for task in tasks:
        for method in methods:
            for mode in modes:
                for fraction in sorted(fractions):
                    for seed in seeds:
                        path = finetune_dir(runs_dir, task, method, mode, fraction, seed)
                        metrics_file = path / "metrics.json"
                        if not metrics_file.exists():
                            continue
                        metrics = json.loads(metrics_file.read_text())
                        train = training_users(task, metrics)
                        found.append(
                            {
                                "task": task,
                                "method": method,
                                "mode": mode,
                                "fraction": fraction,
                                "seed": seed,
                                "train_users": labelled_count(train, fraction) if train else None,
                                "test": metrics["test"],
                                "valid": metrics["valid"],
                                "best_epoch": metrics.get("best_epoch"),
                                "epochs": metrics.get("epochs"),
                                "seconds": metrics.get("seconds"),
                                "run_dir": str(path),
                            }
                        )
    return found


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, std and count per (task, method, mode, fraction) for every kept metric, and
    the majority-class accuracy and labelled users per (task, fraction)."""
    cells: dict[str, Any] = {}
    majority: dict[str, Any] = {}
    users: dict[str, Any] = {}
    groups: dict[tuple[str, str, str, float], list[dict[str, Any]]] = {}
    for run in runs:
        key = (run["task"], run["method"], run["mode"], run["fraction"])
        groups.setdefault(key, []).append(run)
    for (task, method, mode, fraction), members in sorted(groups.items()):
        cell: dict[str, Any] = {
            "n": len(members),
            "seeds": [m["seed"] for m in members],
            # best epoch 0: validation never beat the untrained head, whose test score is kept
            "best_epoch": [m["best_epoch"] for m in members],
            "epochs": [m["epochs"] for m in members],
        }
        for metric in TASKS[task][2]:
            values = [m["test"][metric] for m in members if metric in m["test"]]
            if values:
                mean, std = mean_std(values)
                cell[metric] = {"mean": mean, "std": std}
        cells.setdefault(task, {}).setdefault(f"{method}/{mode}", {})[f"{fraction:g}"] = cell
        if "majority_acc" in cell:
            majority.setdefault(task, {})[f"{fraction:g}"] = cell["majority_acc"]["mean"]
        if members[0]["train_users"] is not None:
            users.setdefault(task, {})[f"{fraction:g}"] = members[0]["train_users"]
    return {
        "metric": {task: spec[1] for task, spec in TASKS.items()},
        "cells": cells,
        "majority_acc": majority,
        "train_users": users,
    }


def cell_value(summary: dict[str, Any], task: str, row: str, fraction: str) -> Any:
    cell = summary["cells"].get(task, {}).get(row, {}).get(fraction)
    metric = summary["metric"][task]
    return None if cell is None or metric not in cell else (cell[metric], cell["n"])


def row_names(summary: dict[str, Any], task: str) -> list[tuple[str, str]]:
    present = summary["cells"].get(task, {})
    return [
        (f"{method}/{mode}", f"{METHODS[method]}, {mode}")
        for mode in MODES
        for method in ("zero", "masked_item", "clue")
        if f"{method}/{mode}" in present
    ]


def task_fractions(summary: dict[str, Any], task: str) -> list[str]:
    seen = {f for row in summary["cells"].get(task, {}).values() for f in row}
    return sorted(seen, key=float)


def fraction_header(summary: dict[str, Any], task: str, fraction: str) -> str:
    users = summary["train_users"].get(task, {}).get(fraction)
    share = f"{float(fraction) * 100:g}%"
    return f"{share} ({users:,})" if users else share


def markdown(data: dict[str, Any]) -> str:
    """One table per task (rows method x mode, columns fractions), the main test metric
    as mean ± std over seeds, and the difference to CLUEZero with the same mode."""
    summary = data["summary"]
    out = [
        "# Label efficiency on MovieLens-1M",
        "",
        "Test metric against the share of labelled training users (columns: share, and "
        "the number of labelled users), mean ± std over seeds "
        f"({', '.join(map(str, data['settings']['seeds']))}); bold: the best mean of each "
        "column. Validation and test users are the same in every column. Pre-training as "
        "in `recipes/table2` (20 epochs on all users' sequences, or on the source domain "
        "for cold start); fine-tuning starts from it with `finetune.init_from`. `probe` "
        "trains a linear layer on the frozen encoder; the probe of CLUEZero probes a "
        "random encoder.",
        "",
    ]
    for task in TASKS:
        if task not in summary["cells"]:
            continue
        title, metric, _ = TASKS[task]
        fractions = task_fractions(summary, task)
        out += [f"## {title}: test {METRIC_TITLES[metric]}", ""]
        header = " | ".join(fraction_header(summary, task, f) for f in fractions)
        out += [f"| model, mode | {header} |", "|---" * (len(fractions) + 1) + "|"]
        rows = row_names(summary, task)
        best = {}
        for fraction in fractions:
            means = {
                row: value[0]["mean"]
                for row, _ in rows
                if (value := cell_value(summary, task, row, fraction))
            }
            best[fraction] = max(means, key=means.__getitem__) if means else None
        for row, label in rows:
            cells = []
            for fraction in fractions:
                value = cell_value(summary, task, row, fraction)
                if value is None:
                    cells.append("-")
                    continue
                stats, count = value
                text = f"{stats['mean']:.4f} ± {stats['std']:.4f}"
                if count < len(data["settings"]["seeds"]):
                    text += f" (n={count})"
                cells.append(f"**{text}**" if best[fraction] == row else text)
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        if task in summary["majority_acc"]:
            floor = summary["majority_acc"][task]
            out.append(
                "| majority class | "
                + " | ".join(f"{floor[f]:.4f}" if f in floor else "-" for f in fractions)
                + " |"
            )
        out += ["", *gain_table(summary, task, fractions), *epoch_notes(summary, task), ""]
    out += provenance(data)
    return "\n".join(out)


def provenance(data: dict[str, Any]) -> list[str]:
    """Where and how the numbers were made: machine, sweeps (wall time), overrides."""
    machine = data.get("machine", {})
    where = machine.get("gpu", "CPU")
    gpus = machine.get("gpus_used")
    lines = [
        "## Runs",
        "",
        f"{len(data['runs'])} fine-tuning runs, on {where}"
        + (f" x {gpus}" if gpus else "")
        + f" ({machine.get('cpu_count', '?')} CPU cores, torch {machine.get('torch', '?')}).",
    ]
    if data.get("sweeps"):
        lines += ["", "Sweeps (each skips the runs finished before it):", ""]
    for sweep in data.get("sweeps", []):
        wall = f"{sweep['wall_seconds']:.0f} s" if "wall_seconds" in sweep else "did not finish"
        when = f"{sweep['started']}, " if "started" in sweep else ""
        lines.append(f"- {when}{wall}: `{sweep['command']}`")
    return [*lines, ""]


def epoch_notes(summary: dict[str, Any], task: str) -> list[str]:
    """Which runs kept the untrained head (best epoch 0) or hit the epoch limit."""
    cells = [
        (row, fraction, cell)
        for row, by_fraction in summary["cells"].get(task, {}).items()
        for fraction, cell in by_fraction.items()
    ]
    total = sum(cell["n"] for _, _, cell in cells)
    untrained = [
        f"{row} {float(fraction) * 100:g}% ({sum(e == 0 for e in cell['best_epoch'])})"
        for row, fraction, cell in sorted(cells, key=lambda c: (c[0], float(c[1])))
        if any(e == 0 for e in cell["best_epoch"])
    ]
    longest = max((e for _, _, cell in cells for e in cell["epochs"] if e is not None), default=0)
    text = (
        f"Best fine-tuning epoch: mean {mean_of(cells, 'best_epoch'):.1f}; longest run "
        f"{longest} epochs. "
    )
    if untrained:
        count = sum(sum(e == 0 for e in cell["best_epoch"]) for _, _, cell in cells)
        text += (
            f"{count} of {total} runs never beat the untrained head on validation (best "
            "epoch 0), so their test score is that of the initial weights: "
            + ", ".join(untrained)
            + "."
        )
    return ["", text]


def mean_of(cells: list[tuple[str, str, dict[str, Any]]], key: str) -> float:
    values = [v for _, _, cell in cells for v in cell[key] if v is not None]
    return statistics.mean(values) if values else float("nan")


def gain_table(summary: dict[str, Any], task: str, fractions: list[str]) -> list[str]:
    """Mean minus CLUEZero's mean (same mode); * where the gap exceeds two standard errors
    of the difference (a rough mark with 3 seeds, not a test)."""
    lines = []
    for mode in MODES:
        base_row = f"zero/{mode}"
        for method in ("masked_item", "clue"):
            row = f"{method}/{mode}"
            cells = []
            for fraction in fractions:
                ours = cell_value(summary, task, row, fraction)
                base = cell_value(summary, task, base_row, fraction)
                if ours is None or base is None:
                    cells.append("-")
                    continue
                (a, n), (b, m) = ours, base
                gap = a["mean"] - b["mean"]
                error = math.sqrt(a["std"] ** 2 / n + b["std"] ** 2 / m)
                mark = "*" if n > 1 and m > 1 and abs(gap) > 2 * error else ""
                cells.append(f"{gap:+.4f}{mark}")
            if any(c != "-" for c in cells):
                lines.append(
                    f"| {METHODS[method]} − CLUEZero, {mode} | " + " | ".join(cells) + " |"
                )
    if not lines:
        return []
    header = " | ".join(fraction_header(summary, task, f) for f in fractions)
    return [
        "Gain over CLUEZero with the same mode (* : more than two standard errors of the "
        "difference):",
        "",
        f"| | {header} |",
        "|---" * (len(fractions) + 1) + "|",
        *lines,
    ]


STYLE = {"zero": ("tab:gray", "o"), "masked_item": ("tab:blue", "s"), "clue": ("tab:red", "^")}


def plot(data: dict[str, Any], out_dir: Path, stem: str = "label_efficiency") -> list[Path]:
    """One PNG per task, from the JSON alone: the main metric against the label fraction
    (log x), mean ± std over seeds; full fine-tuning solid, probe dashed; for profile
    tasks the majority-class accuracy of the labelled users as a grey line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = data["summary"]
    written = []
    for task in TASKS:
        if task not in summary["cells"]:
            continue
        title, metric, _ = TASKS[task]
        fractions = task_fractions(summary, task)
        figure, axes = plt.subplots(figsize=(6.4, 4.4))
        rows = row_names(summary, task)
        for index, (row, label) in enumerate(rows):
            method, mode = row.split("/")
            dodge = 10 ** (0.012 * (index - (len(rows) - 1) / 2))  # overlapping error bars
            xs, ys, errors = [], [], []
            for fraction in fractions:
                value = cell_value(summary, task, row, fraction)
                if value is not None:
                    xs.append(float(fraction) * dodge)
                    ys.append(value[0]["mean"])
                    errors.append(value[0]["std"])
            color, marker = STYLE[method]
            axes.errorbar(
                xs,
                ys,
                yerr=errors,
                color=color,
                marker=marker,
                linestyle="-" if mode == "full" else "--",
                capsize=3,
                label=label,
            )
        floor = summary["majority_acc"].get(task)
        if floor:
            points = sorted((float(f), v) for f, v in floor.items())
            axes.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                color="black",
                linestyle=":",
                label="majority class",
            )
        axes.set_xscale("log")
        axes.set_xticks([float(f) for f in fractions])
        axes.set_xticklabels([fraction_header(summary, task, f) for f in fractions], fontsize=8)
        axes.minorticks_off()
        axes.set_xlabel("labelled training users (share, count; log scale)")
        axes.set_ylabel(f"test {METRIC_TITLES[metric]}")
        axes.set_title(f"{title}: label efficiency on ML-1M")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
        figure.tight_layout()
        path = out_dir / f"{stem}_{task}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written


def write_outputs(data: dict[str, Any], out_dir: Path, stem: str = "label_efficiency") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(data, indent=1) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(data))
    for path in plot(data, out_dir, stem):
        print(f"wrote {path}")
    print(f"wrote {out_dir / (stem + '.json')} and {out_dir / (stem + '.md')}")


def build_data(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON of the study: settings, every run found, the summary, the machine the runs
    ran on (``runs_dir/machine.json``) and every sweep's command and wall time."""
    runs = collect(args.runs_dir, args.tasks, args.methods, args.modes, args.fractions, args.seeds)
    machine_file = args.runs_dir / "machine.json"
    machine = json.loads(machine_file.read_text()) if machine_file.exists() else machine_info()
    sweeps_file = args.runs_dir / "sweeps.json"
    sweeps = json.loads(sweeps_file.read_text()) if sweeps_file.exists() else []
    return {
        "command": command_line(),
        "machine": machine,
        "sweeps": sweeps,
        "settings": {
            "tasks": args.tasks,
            "methods": args.methods,
            "modes": args.modes,
            "fractions": sorted(args.fractions),
            "seeds": args.seeds,
            "overrides": args.overrides,
            "recipes_dir": str(args.recipes_dir),
            "runs_dir": str(args.runs_dir),
        },
        "summary": summarize(runs),
        "runs": runs,
    }


def command_line() -> str:
    environment = os.environ.get("CLUE_DATA_DIR")
    prefix = f"CLUE_DATA_DIR={shlex.quote(environment)} " if environment else ""
    return prefix + shlex.join(["python", *sys.argv])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument(
        "--fractions",
        nargs="+",
        type=float,
        default=list(FRACTIONS),
        help="Label fractions in (0, 1], run in the order given (default: %(default)s).",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="Runs at a time.")
    parser.add_argument(
        "--gpus", type=int, default=None, help="GPUs to spread runs over (default: all visible)."
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="Seconds after which no new run starts (runs already started finish).",
    )
    parser.add_argument("--recipes-dir", type=Path, default=ROOT / "recipes" / "table2")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/label_efficiency"))
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument(
        "--data-root", type=Path, help="The data root of every run (sets CLUE_DATA_DIR)."
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="A recipe override for every run (pretrain.* only for the pre-trainings).",
    )
    parser.add_argument("--summarize-only", action="store_true")
    parser.add_argument(
        "--from-json", type=Path, help="Only redraw the markdown and plots from this JSON."
    )
    args = parser.parse_args()
    for fraction in args.fractions:
        if not 0 < fraction <= 1:
            parser.error(f"--fractions: {fraction} is not in (0, 1]")
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        (args.out_dir / "label_efficiency.md").write_text(markdown(data))
        for path in plot(data, args.out_dir):
            print(f"wrote {path}")
        return
    if args.data_root:
        os.environ["CLUE_DATA_DIR"] = str(args.data_root.resolve())
    # many small runs at once: one CPU thread each unless told otherwise
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    if not args.summarize_only:
        run_study(args)
    data = build_data(args)
    print(markdown(data))
    write_outputs(data, args.out_dir)


if __name__ == "__main__":
    main()
