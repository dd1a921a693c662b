"""Run recipes over several seeds and write a mean ± std markdown table.

Usage (from the repository root)::

    CLUE_DATA_DIR=../shared/data python benchmarks/seeds_table.py \
        recipes/ml30_dropout.yaml recipes/ml30_zero.yaml --seeds 0 1 2 --jobs 4 \
        --runs-dir runs/table --markdown docs/ml1m_table.md

Each (recipe, seed) runs as ``clue run RECIPE --set seed=S --out RUNS/<name>/seed<S>``
in its own process (``--jobs`` at a time). Finished runs are skipped, interrupted
ones resumed, so the command can be repeated until every run is done. With
``--summarize-only`` nothing runs and the table is built from what is on disk.

``clue sweep RECIPE --grid key=v1,v2 --seeds 0 1 2 --out DIR`` and ``clue compare RUN...``
do the same from the command line (every valid and test metric, grouped over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

from pool import Job, run_jobs, visible_gpus

from clue_fw.analysis.compare import mean_std

METRICS = ("mrr@10", "recall@10", "ndcg@10")


def summarize(runs_dir: Path, names: list[str], seeds: list[int]) -> tuple[str, dict]:
    rows = []
    raw: dict = {}
    for name in names:
        found = []
        for seed in seeds:
            path = runs_dir / name / f"seed{seed}" / "metrics.json"
            if path.exists():
                found.append(json.loads(path.read_text()))
        raw[name] = found
        if not found:
            rows.append(f"| {name} | 0 | " + " | ".join("-" for _ in METRICS) + " | - | - |")
            continue
        cells = []
        for metric in METRICS:
            mean, std = mean_std([m["test"][metric] for m in found])
            cells.append(f"{mean:.4f} ± {std:.4f}")
        epochs = statistics.mean(m["best_epoch"] for m in found)
        seconds = statistics.mean(m["seconds"] for m in found)
        rows.append(
            f"| {name} | {len(found)} | " + " | ".join(cells) + f" | {epochs:.1f} | {seconds:.0f} |"
        )
    header = (
        "| recipe | seeds | test MRR@10 | test Recall@10 | test NDCG@10 | best epoch | s/run |\n"
        "|---|---|---|---|---|---|---|"
    )
    return header + "\n" + "\n".join(rows) + "\n", raw


def machine_info() -> dict:
    """Where the numbers were measured: host, CPUs, Python, torch and GPU."""
    machine = {
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        machine["torch"] = torch.__version__
        if torch.cuda.is_available():
            machine["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return machine


def run_all(
    jobs: list[tuple[Path, int, Path]], workers: int, overrides: list[str], gpus: int = 0
) -> None:
    """Run ``(recipe, seed, run_dir)`` jobs, ``workers`` at a time, and report each."""
    run_jobs(
        [Job(recipe, run_dir, (f"seed={seed}", *overrides)) for recipe, seed, run_dir in jobs],
        workers,
        gpus,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipes", nargs="+", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--gpus", type=int, default=None, help="GPUs to spread runs over (default: all visible)."
    )
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/table"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--suffix", default="", help="Appended to run names (for --set variants).")
    parser.add_argument("--markdown", type=Path, help="Also write the table to this file.")
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()

    names = [recipe.stem + args.suffix for recipe in args.recipes]
    if not args.summarize_only:
        jobs = [
            (recipe, seed, args.runs_dir / (recipe.stem + args.suffix) / f"seed{seed}")
            for recipe in args.recipes
            for seed in args.seeds
        ]
        gpus = visible_gpus() if args.gpus is None else args.gpus
        run_all(jobs, args.jobs, args.overrides, gpus)
    table, raw = summarize(args.runs_dir, names, args.seeds)
    machine = machine_info()
    print(table)
    print(json.dumps(machine))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
        (args.markdown.with_suffix(".json")).write_text(
            json.dumps({"machine": machine, "runs": raw}, indent=1)
        )


if __name__ == "__main__":
    main()
