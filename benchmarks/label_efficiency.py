"""Label efficiency: when does pre-training the user encoder pay off?

Usage (from the repository root)::

    CLUE_DATA_DIR=../shared/data python benchmarks/label_efficiency.py --seeds 0 1 2 \
        --jobs 24 --deadline 420 --runs-dir runs/label_efficiency

Pre-trains once per method, seed and distinct pre-training data, with the pre-training
section of ``recipes/table2/<task>_<method>.yaml``: ``clue`` (CLUE as fixed: InfoNCE over
split views, mean-of-item-embeddings encoder), ``clue_paper`` (CLUE as the paper states
it: SimSiam, dropout views, Transformer), ``masked_item``; ``--methods`` also takes
``infonce`` (the paper recipe with the InfoNCE objective, cosine, temperature 0.2). The
methods without pre-training: ``zero`` (the Transformer, CLUEZero), ``item_mean`` (the
fixed CLUE's encoder untrained, ``<task>_item_mean.yaml``) and ``bag`` (``<task>_nfm.yaml``,
the bag-of-items backbone). The
profile tasks (gender, age, occupation) pre-train on every user's whole sequence and
share one pre-training; the cold-start tasks pre-train on the source domain of their
genre cut (fewer items), so they share another. Tasks are grouped by what their
pre-training reads (data, backbone, pre-training section, head kind and target
domain), not by a list kept here.

Then every task x label fraction x mode (``full`` fine-tuning, ``probe``: a linear
probe of the frozen encoder; ``--modes`` also takes ``lpft``, LP-FT: the probe for half
the fine-tuning epochs, then full fine-tuning, and ``full_lr01``: full fine-tuning with
the encoder at a tenth of the learning rate; see :data:`MODES`) x method x seed fine-tunes
``recipes/table2/<task>_zero.yaml`` (``<task>_item_mean.yaml`` for ``clue`` and
``item_mean``, ``<task>_nfm.yaml`` for ``bag``) with ``finetune.head.label_fraction``, starting
from the pre-trained encoder (``finetune.init_from``), or from a random one for
``zero`` (CLUEZero; its probe is a probe of random features, the honest floor). The
labelled training users of a fraction are the first ceil(fraction x n_train) of one
fixed order drawn from the split seed, so fractions are nested and validation and test
users are the same for every run.

The tables (tasks, methods, recipes) are a :class:`Study`; ``benchmarks/transfer.py``
runs the same machinery with its own study on synthetic data.

Everything runs through :mod:`pool` (``--jobs`` processes over ``--gpus`` GPUs): the
pre-trainings first, then the fine-tunings in priority order, each fine-tuning of a
pre-trained encoder as soon as its pre-training is done and the CLUEZero fine-tunings
(which need none) in the slots meanwhile. Priority: ``--tasks`` in the order given,
then ``--fractions`` in the order given (the default puts 1%, 10% and 100% first), so
a sweep cut off by ``--deadline`` (seconds after which no run starts) still has whole
curves for its first tasks. Finished runs are skipped
and interrupted ones resumed: repeat the command to complete a sweep. ``--keep-earlier
JSON`` adds the runs of an earlier output that are not on disk here (a sweep summarised on
another machine), ``--rename-earlier OLD=NEW`` renaming a method of it.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
METHODS = ("clue", "item_mean", "clue_paper", "masked_item", "zero")
"""The methods this study runs by default (``--methods`` also takes ``infonce`` and ``bag``)."""


@dataclass(frozen=True)
class Mode:
    """One way a study fine-tunes: the ``finetune.*`` overrides of its runs, and how its
    rows are labelled and drawn."""

    label: str  # in table rows, gain rows and verdict lines
    overrides: tuple[str, ...]  # added to every fine-tuning of the mode
    linestyle: Any  # its lines in the plots
    probe_share: float | None = None
    """LP-FT: ``finetune.probe_epochs`` is this share of the recipe's
    ``finetune.train.epochs`` (rounded down, at least 1), unless ``--set`` gives one."""
    description: str = ""  # a sentence for the markdown, when the mode was run
    versus_full: bool = False  # gain rows against full fine-tuning of the same method


LPFT_PROBE_SHARE = 0.5
"""LP-FT's probe phase: half of the fine-tuning epochs (10 of the 20 of
``recipes/synth_transfer``, 50 of the 100 of ``recipes/table2``). The probe of the
pre-trained CLUE encoder at 8,000 synthetic users still gained at epoch 20 of 20
(docs/results/transfer.json), so the head gets the longer half before the encoder moves;
early stopping then watches the full phase only."""

MODES: dict[str, Mode] = {
    "full": Mode("full", ("finetune.mode=full",), "-"),
    "probe": Mode("probe", ("finetune.mode=probe",), "--"),
    "lpft": Mode(
        "LP-FT",
        ("finetune.mode=probe_then_full",),
        "-.",
        probe_share=LPFT_PROBE_SHARE,
        description="`LP-FT` (Kumar et al. 2022) trains the head alone on the frozen "
        f"encoder for {LPFT_PROBE_SHARE:.0%} of the fine-tuning epochs "
        "(`finetune.mode: probe_then_full`), then the whole model; early stopping counts "
        "from the switch.",
        versus_full=True,
    ),
    "full_lr01": Mode(
        "full, encoder lr × 0.1",
        ("finetune.mode=full", "finetune.encoder_lr_scale=0.1"),
        (0, (5, 1, 1, 1, 1, 1)),
        description="`full, encoder lr × 0.1` fine-tunes the whole model with the encoder "
        "(backbone and item embeddings) at a tenth of the head's learning rate "
        "(`finetune.encoder_lr_scale: 0.1`).",
        versus_full=True,
    ),
}
"""Every mode a study can run (``--modes``), in the order of rows in tables and plots."""
DEFAULT_MODES = ("full", "probe")
"""The modes a study runs unless ``--modes`` says otherwise."""
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


@dataclass(frozen=True)
class Method:
    """One way to get the encoder that fine-tuning starts from."""

    label: str  # row label in tables and plots
    pretrains: bool  # True: fine-tuning starts from its pre-training (finetune.init_from)
    color: str
    marker: str


ALL_METHODS: dict[str, Method] = {  # the order of rows in tables and plots
    "zero": Method("CLUEZero", False, "tab:gray", "o"),
    "bag": Method("bag of items (NFM)", False, "tab:green", "D"),
    "masked_item": Method("PeterRec (masked item)", True, "tab:blue", "s"),
    "infonce": Method("InfoNCE", True, "tab:purple", "v"),
    "clue_paper": Method("CLUE as stated (SimSiam)", True, "tab:orange", "x"),
    "item_mean": Method("item-mean encoder, no pre-training", False, "tab:olive", "P"),
    "clue": Method("CLUE (fixed: InfoNCE, split views)", True, "tab:red", "^"),
}
"""Every method a study can run. ``zero`` fine-tunes a random encoder (CLUEZero); ``bag``
fine-tunes the bag-of-items backbone (``clue_fw/backbones/bag.py``), no pre-training; the
others pre-train once per group, method and seed, then fine-tune from it."""

SAME_ENCODER_BASES = {"clue": "item_mean"}
"""Pre-training methods whose encoder is not CLUEZero's Transformer -> the method that
fine-tunes the same encoder untrained (their gain is also shown against it)."""

INFONCE_OBJECTIVE = "pretrain.objective={kind: infonce, similarity: cosine, temperature: 0.2}"
"""InfoNCE as a change of the paper's CLUE recipe's objective (same dropout views and
schedule)."""


@dataclass(frozen=True)
class Study:
    """What a label-efficiency sweep runs and how it reports it: the task and method tables
    and the recipe of each (task, method). The machinery below is shared by every study
    (``benchmarks/label_efficiency.py`` on ML-1M, ``benchmarks/transfer.py`` on synthetic
    data)."""

    name: str  # stem of the output files
    title: str  # heading of the markdown
    dataset: str  # named in plot titles
    tasks: dict[str, tuple[str, str, tuple[str, ...]]]  # recipe prefix: title, metric, kept
    methods: tuple[str, ...]  # run by default
    fractions: tuple[float, ...]  # default label fractions, in priority order
    recipes_dir: Path
    intro: str  # the paragraph under the heading
    pretrain_recipes: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    """method -> (recipe file template, overrides); default ``{task}_{method}.yaml``."""
    finetune_recipes: dict[str, str] = field(default_factory=dict)
    """method -> recipe file template of its fine-tunings; default ``{task}_zero.yaml``."""
    x_axis: Literal["fraction", "users"] = "fraction"  # plots: share, or count, of users
    error: Literal["std", "sem"] = "std"  # plots' error bars: std or standard error
    task_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """task -> overrides of all its runs (before ``--set``), e.g. its data files."""
    notes: Callable[[dict[str, Any], str], list[str]] | None = None
    """Extra markdown lines after a task's tables (summary, task) -> lines."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - set(ALL_METHODS))
        if unknown:
            raise ValueError(
                f"Study {self.name}: unknown method(s) {unknown}; the known ones are "
                f"{list(ALL_METHODS)} (add a Method to ALL_METHODS first)."
            )

    def pretrain_recipe(self, task: str, method: str) -> tuple[Path, tuple[str, ...]]:
        """The recipe (and its overrides) that pre-trains ``method`` for ``task``."""
        template, overrides = self.pretrain_recipes.get(method, ("{task}_{method}.yaml", ()))
        return self.recipes_dir / template.format(task=task, method=method), overrides

    def finetune_recipe(self, task: str, method: str) -> Path:
        """The recipe that fine-tunes ``task`` for ``method`` (from its encoder, if any)."""
        template = self.finetune_recipes.get(method, "{task}_zero.yaml")
        return self.recipes_dir / template.format(task=task, method=method)


ML1M = Study(
    name="label_efficiency",
    title="Label efficiency on MovieLens-1M",
    dataset="ML-1M",
    tasks=TASKS,
    methods=METHODS,
    fractions=FRACTIONS,
    recipes_dir=ROOT / "recipes" / "table2",
    intro="Test metric against the share of labelled training users (columns: share, and "
    "the number of labelled users), mean ± std over seeds "
    "({seeds}); bold: the best mean of each "
    "column. Validation and test users are the same in every column. Pre-training as "
    "in `recipes/table2` (20 epochs on all users' sequences, or on the source domain "
    "for cold start); fine-tuning starts from it with `finetune.init_from`. `probe` "
    "trains a linear layer on the frozen encoder; the probe of CLUEZero probes a "
    "random encoder.",
    # no table2 recipe of its own: InfoNCE is the paper's CLUE recipe with another objective
    pretrain_recipes={"infonce": ("{task}_clue_paper.yaml", (INFONCE_OBJECTIVE,))},
    finetune_recipes={
        "bag": "{task}_nfm.yaml",
        "clue": "{task}_item_mean.yaml",
        "item_mean": "{task}_item_mean.yaml",
    },
)
"""The ML-1M study of this script."""


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
    target = head.get("target")
    # a target file of pairs leaves the recipe's data whole as the source domain, so the
    # encoder pre-trains on the very sequences a profile head's does
    whole = target is None or (isinstance(target, dict) and target.get("format") == "pairs")
    reads = {"sequences": "whole"} if whole else {"kind": head["kind"], "target": target}
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
    recipes_dir: Path,
    tasks: list[str],
    method: str,
    overrides: list[str],
    study: Study = ML1M,
) -> dict[str, PretrainGroup]:
    """Task -> its pre-training group, for one pre-training ``method``."""
    if not ALL_METHODS[method].pretrains:
        raise ValueError(f"method {method!r} does not pre-train; it has no pre-training group")
    study = replace_recipes_dir(study, recipes_dir)
    by_key: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for task in tasks:
        path, extra = study.pretrain_recipe(task, method)
        own = study.task_overrides.get(task, ())
        recipe = load_yaml(path, [*extra, *own, *pretrain_overrides(overrides)])
        key = pretrain_key(recipe)
        by_key.setdefault(key, []).append(task)
        kinds.setdefault(key, recipe["finetune"]["head"]["kind"])
    groups: dict[str, PretrainGroup] = {}
    for key, members in by_key.items():
        same_kind = sum(kind == kinds[key] for kind in kinds.values())
        name = kinds[key] if same_kind == 1 else f"{kinds[key]}-{members[0]}"
        group = PretrainGroup(name, study.pretrain_recipe(members[0], method)[0], tuple(members))
        for task in members:
            groups[task] = group
    return groups


def replace_recipes_dir(study: Study, recipes_dir: Path) -> Study:
    """``study`` reading its recipes from ``recipes_dir`` (``--recipes-dir``)."""
    if recipes_dir == study.recipes_dir:
        return study
    import dataclasses

    return dataclasses.replace(study, recipes_dir=recipes_dir)


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
    study: Study = ML1M,
) -> list[Job]:
    """Every run of the study in start order: the pre-trainings, then the fine-tunings in
    priority order (task, fraction, mode, method, seed). A fine-tuning of a pre-trained
    encoder names its pre-training in ``after``; the pool starts it once that is done and
    runs the fine-tunings that need none (CLUEZero, the bag of items) meanwhile."""
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose among {list(ALL_METHODS)}")
    study = replace_recipes_dir(study, recipes_dir)
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; choose among {list(MODES)}")
    pretrain_jobs: list[Job] = []
    encoder_of: dict[tuple[str, str, int], Path] = {}
    for method in (m for m in methods if ALL_METHODS[m].pretrains):
        groups = pretrain_groups(recipes_dir, tasks, method, overrides, study)
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
                        *study.pretrain_recipe(group.tasks[0], method)[1],
                        *study.task_overrides.get(group.tasks[0], ()),
                        *pretrain_overrides(overrides),
                        # its own fine-tuning is not used: make it one cheap epoch
                        "finetune.train.epochs=1",
                        "finetune.mode=probe",
                        "finetune.head.label_fraction=0.01",
                    ),
                    # keep only the encoder that the fine-tunings start from
                    prune=("finetune/*.safetensors", "pretrain/last.safetensors"),
                )
                if job not in pretrain_jobs:
                    pretrain_jobs.append(job)
    finetune_jobs: list[Job] = []
    recipes: dict[tuple[str, str], dict[str, Any]] = {}  # (task, method) -> its recipe

    def recipe_of(task: str, method: str) -> dict[str, Any]:
        own = [*study.task_overrides.get(task, ()), *finetune_overrides(overrides)]
        if (task, method) not in recipes:
            recipes[task, method] = load_yaml(study.finetune_recipe(task, method), own)
        return recipes[task, method]

    for task in tasks:
        for fraction in fractions:
            for mode in modes:
                for method in methods:
                    for seed in seeds:
                        cell = (
                            f"seed={seed}",
                            *study.task_overrides.get(task, ()),
                            *finetune_overrides(overrides),
                            f"finetune.head.label_fraction={fraction!r}",
                            *mode_overrides(mode, lambda t=task, m=method: recipe_of(t, m)),
                            f"finetune.eval.batch_size={EVAL_BATCH}",
                        )
                        encoder = encoder_of.get((task, method, seed))
                        if encoder is not None:
                            cell += (f"finetune.init_from={encoder}",)
                        finetune_jobs.append(
                            Job(
                                study.finetune_recipe(task, method),
                                finetune_dir(runs_dir, task, method, mode, fraction, seed),
                                cell,
                                prune=("**/*.safetensors",),  # the study reads metrics.json
                                after=() if encoder is None else (encoder,),
                            )
                        )
    return pretrain_jobs + finetune_jobs


def mode_overrides(mode: str, recipe: Callable[[], dict[str, Any]]) -> tuple[str, ...]:
    """The overrides that make a fine-tuning run ``mode``; ``recipe`` gives the run's
    recipe (overrides applied), read only by LP-FT for its ``finetune.train.epochs``."""
    spec = MODES[mode]
    if spec.probe_share is None:
        return spec.overrides
    finetune = recipe()["finetune"]
    if finetune.get("probe_epochs") is not None:  # --set finetune.probe_epochs=N
        return spec.overrides
    epochs = int(finetune["train"]["epochs"])
    if epochs < 2:
        raise ValueError(
            f"mode {mode}: fine-tuning has {epochs} epoch, so no epoch is left for the full "
            "phase after the probe; run it with finetune.train.epochs of 2 or more"
        )
    probe = max(1, int(epochs * spec.probe_share))
    return (*spec.overrides, f"finetune.probe_epochs={probe}")


def run_study(args: argparse.Namespace, study: Study = ML1M) -> dict[str, Any]:
    """Run both phases (skipping finished runs); return a record of this sweep."""
    jobs = plan(
        args.recipes_dir,
        args.runs_dir,
        args.tasks,
        args.methods,
        args.modes,
        args.fractions,
        args.seeds,
        args.overrides,
        study,
    )
    gpus = visible_gpus() if args.gpus is None else args.gpus
    started = time.perf_counter()
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    machine["gpus_used"] = gpus
    (args.runs_dir / "machine.json").write_text(json.dumps(machine, indent=1) + "\n")
    waiting = sum(bool(job.after) for job in jobs)
    print(
        f"{len(jobs)} runs ({waiting} wait for a pre-training); {args.jobs} at a time over "
        f"{gpus} GPU(s)",
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
    results = run_jobs(jobs, args.jobs, gpus, args.deadline)
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


def summarize(runs: list[dict[str, Any]], study: Study = ML1M) -> dict[str, Any]:
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
        for metric in study.tasks[task][2]:
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
        "metric": {task: spec[1] for task, spec in study.tasks.items()},
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
        (f"{method}/{mode}", f"{ALL_METHODS[method].label}, {MODES[mode].label}")
        for mode in MODES
        for method in ALL_METHODS
        if f"{method}/{mode}" in present
    ]


def task_fractions(summary: dict[str, Any], task: str) -> list[str]:
    seen = {f for row in summary["cells"].get(task, {}).values() for f in row}
    return sorted(seen, key=float)


def fraction_header(summary: dict[str, Any], task: str, fraction: str) -> str:
    users = summary["train_users"].get(task, {}).get(fraction)
    share = f"{float(fraction) * 100:g}%"
    return f"{share} ({users:,})" if users else share


def markdown(data: dict[str, Any], study: Study = ML1M) -> str:
    """One table per task (rows method x mode, columns fractions), the main test metric
    as mean ± std over seeds, and the difference to CLUEZero with the same mode."""
    summary = data["summary"]
    intro = study.intro.format(seeds=", ".join(map(str, data["settings"]["seeds"])))
    ran = {row.rsplit("/", 1)[1] for rows in summary["cells"].values() for row in rows}
    described = [MODES[mode].description for mode in MODES if mode in ran]
    out = [f"# {study.title}", "", " ".join([intro, *filter(None, described)]), ""]
    for task in study.tasks:
        if task not in summary["cells"]:
            continue
        title, metric, _ = study.tasks[task]
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
        out += ["", *gain_table(summary, task, fractions), *epoch_notes(summary, task)]
        out += [*(study.notes(summary, task) if study.notes else []), ""]
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
    earlier = data.get("earlier")
    if earlier:
        machine = earlier.get("machine") or {}
        renamed = ", ".join(f"`{a}` as `{b}`" for a, b in earlier.get("renamed", {}).items())
        lines += [
            "",
            f"{earlier['runs']} more runs come from an earlier output (`{earlier['file']}`"
            + (f"; its method {renamed}" if renamed else "")
            + f"), made on {machine_name(machine)} by:",
            "",
        ]
        for sweep in earlier.get("sweeps", []):
            wall = f"{sweep['wall_seconds']:.0f} s" if "wall_seconds" in sweep else "cut off"
            when = f"{sweep['started']}, " if "started" in sweep else ""
            where = f" on {machine_name(sweep['machine'])}" if sweep.get("machine") else ""
            lines.append(f"- {when}{wall}{where}: `{sweep['command']}`")
    return [*lines, ""]


def machine_name(machine: dict[str, Any]) -> str:
    """The GPU a machine record (:func:`seeds_table.machine_info`) names, or its CPU cores
    where it had none."""
    return machine.get("gpu") or f"CPU only ({machine.get('cpu_count', '?')} cores)"


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
    """Mean minus CLUEZero's mean (same mode), and for the modes that change full
    fine-tuning (LP-FT, a slower encoder) mean minus the same method's full fine-tuning;
    * where the gap exceeds two standard errors of the difference (a rough mark with 3
    seeds, not a test)."""
    lines = []
    pairs = [(m, "zero") for m in ALL_METHODS if m != "zero"] + list(SAME_ENCODER_BASES.items())
    for mode, spec in MODES.items():
        for method, base_method in pairs:
            cells = gap_cells(summary, task, f"{method}/{mode}", f"{base_method}/{mode}", fractions)
            if any(c != "-" for c in cells):
                base_label = "CLUEZero" if base_method == "zero" else ALL_METHODS[base_method].label
                lines.append(
                    f"| {ALL_METHODS[method].label} − {base_label}, {spec.label} | "
                    + " | ".join(cells)
                    + " |"
                )
    versus_full = []
    for mode, spec in MODES.items():
        for method in ALL_METHODS if spec.versus_full else ():
            cells = gap_cells(summary, task, f"{method}/{mode}", f"{method}/full", fractions)
            if any(c != "-" for c in cells):
                label = ALL_METHODS[method].label
                versus_full.append(
                    f"| {label}, {spec.label} − {label}, full | " + " | ".join(cells) + " |"
                )
    if not lines + versus_full:
        return []
    header = " | ".join(fraction_header(summary, task, f) for f in fractions)
    than_full = (
        ", and of each other way of fine-tuning over full fine-tuning of the same model"
        if versus_full
        else ""
    )
    return [
        "Gain over CLUEZero with the same mode, and of a pre-training over its own encoder "
        f"untrained{than_full} (* : more than two standard errors of the difference):",
        "",
        f"| | {header} |",
        "|---" * (len(fractions) + 1) + "|",
        *lines,
        *versus_full,
    ]


def gap_cells(
    summary: dict[str, Any], task: str, row: str, base_row: str, fractions: list[str]
) -> list[str]:
    """``row``'s mean minus ``base_row``'s per fraction (``-`` where either is missing)."""
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
    return cells


def plot(
    data: dict[str, Any], out_dir: Path, stem: str | None = None, study: Study = ML1M
) -> list[Path]:
    """One PNG per task, from the JSON alone: the main metric against the label fraction
    or the number of labelled users (``study.x_axis``; log x), mean ± std or standard error
    over seeds (``study.error``); each mode its line style (full fine-tuning solid,
    probe dashed, LP-FT dash-dotted, a slower encoder dash-dot-dotted); for profile
    tasks the majority-class accuracy of the labelled users as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = data["summary"]
    stem = stem or study.name
    written = []
    for task in study.tasks:
        if task not in summary["cells"]:
            continue
        title, metric, _ = study.tasks[task]
        fractions = task_fractions(summary, task)
        users = summary["train_users"].get(task, {})
        by_users = study.x_axis == "users" and all(f in users for f in fractions)
        x_of = {f: float(users[f]) if by_users else float(f) for f in fractions}

        figure, axes = plt.subplots(figsize=(6.4, 4.4))
        rows = row_names(summary, task)
        for index, (row, label) in enumerate(rows):
            method, mode = row.split("/")
            dodge = 10 ** (0.012 * (index - (len(rows) - 1) / 2))  # overlapping error bars
            xs, ys, errors = [], [], []
            for fraction in fractions:
                value = cell_value(summary, task, row, fraction)
                if value is not None:
                    stats, count = value
                    xs.append(x_of[fraction] * dodge)
                    ys.append(stats["mean"])
                    sem = study.error == "sem"
                    errors.append(stats["std"] / math.sqrt(count) if sem else stats["std"])
            color, marker = ALL_METHODS[method].color, ALL_METHODS[method].marker
            axes.errorbar(
                xs,
                ys,
                yerr=errors,
                color=color,
                marker=marker,
                linestyle=MODES[mode].linestyle,
                capsize=3,
                label=label,
            )
        floor = summary["majority_acc"].get(task)
        if floor:
            points = sorted((x_of[f], v) for f, v in floor.items() if f in x_of)
            axes.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                color="black",
                linestyle=":",
                label="majority class",
            )
        axes.set_xscale("log")
        axes.set_xticks([x_of[f] for f in fractions])
        labels = [
            f"{users[f]:,} ({float(f) * 100:g}%)" if by_users else fraction_header(summary, task, f)
            for f in fractions
        ]
        axes.set_xticklabels(labels, fontsize=8)
        axes.minorticks_off()
        unit = "count, share" if by_users else "share, count"
        axes.set_xlabel(f"labelled training users ({unit}; log scale)")
        spread = "standard error" if study.error == "sem" else "std"
        axes.set_ylabel(f"test {METRIC_TITLES[metric]}")
        if study.error != "std":
            axes.set_ylabel(f"test {METRIC_TITLES[metric]} (bars: {spread} over seeds)")
        # a long dataset name (the synthetic study's) gets a smaller title than ML-1M's
        size = {"fontsize": 9} if len(title) + len(study.dataset) > 45 else {}
        axes.set_title(f"{title}: label efficiency on {study.dataset}", **size)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
        figure.tight_layout()
        path = out_dir / f"{stem}_{task}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written


def write_outputs(
    data: dict[str, Any], out_dir: Path, stem: str | None = None, study: Study = ML1M
) -> None:
    stem = stem or study.name
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(data, indent=1) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(data, study))
    for path in plot(data, out_dir, stem, study):
        print(f"wrote {path}")
    print(f"wrote {out_dir / (stem + '.json')} and {out_dir / (stem + '.md')}")


def build_data(args: argparse.Namespace, study: Study = ML1M) -> dict[str, Any]:
    """The JSON of the study: settings, every run found, the summary, the machine the runs
    ran on (``runs_dir/machine.json``) and every sweep's command and wall time."""
    runs = collect(args.runs_dir, args.tasks, args.methods, args.modes, args.fractions, args.seeds)
    kept: dict[str, Any] | None = None
    if getattr(args, "keep_earlier", None):
        earlier = json.loads(args.keep_earlier.read_text())
        rename = dict(getattr(args, "rename_earlier", []))
        found_here = len(runs)
        runs = keep_earlier_runs(runs, earlier.get("runs", []), rename)
        kept = {
            "file": str(args.keep_earlier),
            "renamed": rename,
            "runs": len(runs) - found_here,
            "machine": earlier.get("machine"),
            "sweeps": lineage_sweeps(earlier),
        }
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
        "summary": summarize(runs, study),
        "runs": runs,
        **({"earlier": kept} if kept else {}),
    }


def lineage_sweeps(output: dict[str, Any]) -> list[dict[str, Any]]:
    """Every sweep behind an earlier output, oldest first: the sweeps of the output it kept
    in turn (its ``earlier``), then its own, each with the machine it ran on, so that a
    chain of ``--keep-earlier`` merges keeps the whole history of the runs it carries."""

    def on_machine(sweeps: list[dict[str, Any]], machine: Any) -> list[dict[str, Any]]:
        return [{**sweep, "machine": sweep.get("machine") or machine} for sweep in sweeps]

    older = output.get("earlier") or {}
    return [
        *on_machine(older.get("sweeps", []), older.get("machine")),
        *on_machine(output.get("sweeps", []), output.get("machine")),
    ]


def run_key(run: dict[str, Any]) -> tuple[Any, ...]:
    return (run["task"], run["method"], run["mode"], float(run["fraction"]), run["seed"])


def keep_earlier_runs(
    runs: list[dict[str, Any]], earlier: list[dict[str, Any]], rename: dict[str, str]
) -> list[dict[str, Any]]:
    """``runs`` plus each run of ``earlier`` (an earlier output's ``runs``) that is not
    among them, its method renamed by ``rename`` (old name -> new)."""
    here = {run_key(run) for run in runs}
    kept = list(runs)
    for run in earlier:
        run = {**run, "method": rename.get(run["method"], run["method"])}
        if run_key(run) not in here:
            kept.append(run)
            here.add(run_key(run))
    return kept


def rename_pair(text: str) -> tuple[str, str]:
    """``OLD=NEW`` -> (OLD, NEW), for ``--rename-earlier``."""
    old, sep, new = text.partition("=")
    if not sep or not old or new not in ALL_METHODS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give OLD=NEW with NEW one of {list(ALL_METHODS)}, e.g. clue=clue_paper"
        )
    return old, new


def command_line() -> str:
    environment = os.environ.get("CLUE_DATA_DIR")
    prefix = f"CLUE_DATA_DIR={shlex.quote(environment)} " if environment else ""
    return prefix + shlex.join(["python", *sys.argv])


def add_arguments(parser: argparse.ArgumentParser, study: Study) -> None:
    """The arguments every study takes (tasks, methods, fractions, seeds, the pool, the
    deadline, directories, overrides, summarising)."""
    parser.add_argument("--tasks", nargs="+", choices=list(study.tasks), default=list(study.tasks))
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(ALL_METHODS),
        default=list(study.methods),
        help="Methods to run (default: %(default)s).",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=list(MODES),
        default=list(DEFAULT_MODES),
        help="Fine-tuning modes (default: %(default)s): full, probe (a linear probe of the "
        "frozen encoder), lpft (probe_then_full, the probe for half the epochs), "
        "full_lr01 (full with finetune.encoder_lr_scale=0.1).",
    )
    parser.add_argument(
        "--fractions",
        nargs="+",
        type=float,
        default=list(study.fractions),
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
    parser.add_argument("--recipes-dir", type=Path, default=study.recipes_dir)
    parser.add_argument("--runs-dir", type=Path, default=Path(f"runs/{study.name}"))
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
        "--keep-earlier",
        type=Path,
        help="An earlier output JSON whose runs not found here are kept in the summary.",
    )
    parser.add_argument(
        "--rename-earlier",
        type=rename_pair,
        action="append",
        default=[],
        help="OLD=NEW: a method of the --keep-earlier runs under its new name.",
    )
    parser.add_argument(
        "--from-json", type=Path, help="Only redraw the markdown and plots from this JSON."
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for fraction in args.fractions:
        if not 0 < fraction <= 1:
            parser.error(f"--fractions: {fraction} is not in (0, 1]")
    if args.jobs < 1:
        parser.error(f"--jobs: {args.jobs} is not a positive number of runs at a time")


def run_and_write(args: argparse.Namespace, study: Study) -> None:
    """The sweep (unless ``--summarize-only`` or ``--from-json``), then its outputs."""
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        (args.out_dir / f"{study.name}.md").write_text(markdown(data, study))
        for path in plot(data, args.out_dir, study=study):
            print(f"wrote {path}")
        return
    if args.data_root:
        os.environ["CLUE_DATA_DIR"] = str(args.data_root.resolve())
    # many small runs at once: one CPU thread each unless told otherwise
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    if not args.summarize_only:
        run_study(args, study)
    data = build_data(args, study)
    print(markdown(data, study))
    write_outputs(data, args.out_dir, study=study)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser, ML1M)
    args = parser.parse_args()
    check_arguments(parser, args)
    run_and_write(args, ML1M)


if __name__ == "__main__":
    main()
