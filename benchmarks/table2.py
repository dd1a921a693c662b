"""Table II analogue: downstream tasks on MovieLens-1M, every model over several seeds.

Usage (from the repository root)::

    CLUE_DATA_DIR=../shared/data python benchmarks/table2.py --seeds 0 1 2 --jobs 8 \
        --runs-dir runs/table2 --markdown docs/results/ml1m_table2.md

Runs every recipe of ``recipes/table2`` (``<task>_<model>.yaml``) for every seed, as
``clue run RECIPE --set seed=S --out RUNS/<task>_<model>/seed<S>`` in its own process,
``--jobs`` at a time (the ones with pre-training first). Finished runs are skipped and
interrupted ones resumed, so the command can be repeated until every run is done.
``--summarize-only`` builds the tables from what is on disk.

The markdown has the shape of the paper's Table II (test metrics, mean ± std over
seeds), a row with the majority-class accuracy of each profile task (the floor), a
macro-F1 table, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from seeds_table import machine_info, run_all

from clue_fw.analysis.compare import mean_std

TASKS = {  # recipe prefix: (column title, metrics)
    "coldrec3": ("ColdRec g<=3", ("mrr@10", "recall@10")),
    "coldrec5": ("ColdRec g<=5", ("mrr@10", "recall@10")),
    "age": ("Age (7)", ("acc",)),
    "gender": ("Gender (2)", ("acc",)),
    "occupation": ("Occupation (21)", ("acc",)),
}
MODELS = {  # recipe suffix: row title
    "nfm": "NFM",
    "deepfm": "DeepFM",
    "zero": "CLUEZero",
    "masked_item": "PeterRec (masked item)",
    "clue_paper": "CLUE as stated (SimSiam, dropout views)",
    "item_mean": "item-mean encoder, untrained",
    "clue": "CLUE fixed (InfoNCE, split views, item-mean encoder)",
}
METRIC_TITLES = {"mrr@10": "MRR@10", "recall@10": "Recall@10", "acc": "Acc", "macro_f1": "F1"}


def load_runs(runs_dir: Path, name: str, seeds: list[int]) -> list[dict]:
    found = []
    for seed in seeds:
        path = runs_dir / name / f"seed{seed}" / "metrics.json"
        if path.exists():
            found.append(json.loads(path.read_text()))
    return found


def cell_stats(runs: dict, task: str, model: str, metric: str) -> tuple[float, float] | None:
    found = runs[f"{task}_{model}"]
    if not found:
        return None
    return mean_std([m["test"][metric] for m in found])


def table(runs: dict, metric_of: dict[str, tuple[str, ...]], floor_row: bool) -> str:
    columns = [(task, metric) for task, metrics in metric_of.items() for metric in metrics]
    header = (
        "| model | " + " | ".join(f"{TASKS[t][0]} {METRIC_TITLES[m]}" for t, m in columns) + " |"
    )
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    best = {}
    for task, metric in columns:
        means = {m: s[0] for m in MODELS if (s := cell_stats(runs, task, m, metric))}
        best[(task, metric)] = max(means, key=means.__getitem__) if means else None
    for model, title in MODELS.items():
        if not any(runs[f"{task}_{model}"] for task in metric_of):
            continue  # a sweep of some models only (--only)
        cells = []
        for task, metric in columns:
            stats = cell_stats(runs, task, model, metric)
            if stats is None:
                cells.append("-")
                continue
            text = f"{stats[0]:.4f} ± {stats[1]:.4f}"
            cells.append(f"**{text}**" if best[(task, metric)] == model else text)
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    if floor_row:
        cells = []
        for task, metric in columns:
            found = next((runs[f"{task}_{m}"] for m in MODELS if runs[f"{task}_{m}"]), [])
            if metric == "acc" and found:
                cells.append(f"{statistics.mean(m['test']['majority_acc'] for m in found):.4f}")
            else:
                cells.append("-")
        lines.append("| majority class | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seed_counts(runs: dict) -> str:
    counts = sorted({len(found) for found in runs.values() if found})
    return ", ".join(map(str, counts))


def summarize(runs_dir: Path, seeds: list[int]) -> tuple[str, dict]:
    runs = {f"{t}_{m}": load_runs(runs_dir, f"{t}_{m}", seeds) for t in TASKS for m in MODELS}
    main = table(runs, {t: metrics for t, (_, metrics) in TASKS.items()}, floor_row=True)
    profile = {t: ("macro_f1",) for t, (_, metrics) in TASKS.items() if "acc" in metrics}
    f1 = table(runs, profile, floor_row=False)
    seconds = [m["seconds"] for found in runs.values() for m in found]
    epochs = {
        name: statistics.mean(m["best_epoch"] for m in found)
        for name, found in runs.items()
        if found
    }
    text = (
        f"Test metrics, mean ± std over seeds (runs per cell: {seed_counts(runs)}); the best "
        "mean of each column in bold.\n\n"
        + main
        + "\nMacro-F1 of the profile tasks:\n\n"
        + f1
        + (
            f"\n{len(seconds)} runs, {statistics.mean(seconds):.0f} s per run on average "
            "(runs shared the GPU, so this is not the time of an isolated run). Mean best "
            "fine-tuning epoch: "
            + ", ".join(f"{name} {value:.1f}" for name, value in sorted(epochs.items()))
            + ".\n"
            if seconds
            else ""
        )
    )
    return text, runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipes-dir", type=Path, default=Path("recipes/table2"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/table2"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--only", nargs="*", default=None, help="Run only these task_model names.")
    parser.add_argument("--markdown", type=Path, help="Also write the tables to this file.")
    parser.add_argument("--note", default="", help="A line put above the tables (the variant).")
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()

    if not args.summarize_only:
        names = [f"{t}_{m}" for t in TASKS for m in MODELS]
        if args.only:
            names = [n for n in names if n in set(args.only)]
        jobs = [
            (args.recipes_dir / f"{name}.yaml", seed, args.runs_dir / name / f"seed{seed}")
            for seed in args.seeds
            for name in names
        ]
        # pre-training runs are the longest: start them first
        pretraining = ("_clue", "_clue_paper", "_masked_item")
        jobs.sort(key=lambda job: not job[0].stem.endswith(pretraining))
        run_all(jobs, args.jobs, args.overrides)
    text, runs = summarize(args.runs_dir, args.seeds)
    if args.note:
        text = f"{args.note}\n\n{text}"
    print(text)
    print(json.dumps(machine_info()))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
        args.markdown.with_suffix(".json").write_text(
            json.dumps({"machine": machine_info(), "runs": runs}, indent=1)
        )


if __name__ == "__main__":
    main()
