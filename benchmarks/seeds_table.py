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

**The paper's sequential-recommendation table** (``--table paper``, no recipe arguments)::

    CLUE_DATA_DIR=../shared/data python benchmarks/seeds_table.py --table paper \
        --seeds 0 1 2 --jobs 14 --runs-dir runs/paper --markdown docs/results/seqrec_paper.md

runs every row of the CLUE paper's comparison (GRU4Rec, Caser, the self-attentive model,
CLUEZero, PeterRec, S3-Rec, CLUE: :data:`PAPER_ROWS`) on MovieLens-1M at max length 30
and 50 and, where recipes exist, on Amazon Beauty (:data:`PAPER_DATASETS`; ``--datasets``
picks some), under one protocol: the recipes ``recipes/<dataset>_<row>.yaml`` share data,
split, evaluation (full ranking, history excluded, pessimistic ties), fine-tuning schedule
and early stopping, and the pre-trained rows share a 20-epoch pre-training. It writes the
table of test MRR@10, Recall@10 and NDCG@10 (mean ± std over the seeds) and, below it,
the per-recipe table. A row whose recipe cannot run here (the S3-Rec rows without the
clue-s3rec plugin installed, a dataset whose file is not under the data root) is left
out with a line saying why. ``--deadline S`` starts no run after S seconds, so a call of
fixed length ends with whole runs; repeating the command resumes the rest.
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
from clue_fw.errors import ClueError

METRICS = ("mrr@10", "recall@10", "ndcg@10")
METRIC_TITLES = {"mrr@10": "MRR@10", "recall@10": "Recall@10", "ndcg@10": "NDCG@10"}

#: The rows of the CLUE paper's sequential-recommendation comparison, in its order: row
#: title -> recipe suffix (``recipes/<dataset>_<suffix>.yaml``).
PAPER_ROWS = {
    "GRU4Rec": "gru_zero",
    "Caser": "caser_zero",
    "Self-attentive (SASRec)": "sasrec_zero",
    "CLUEZero": "zero",
    "PeterRec (masked item)": "masked_item",
    "S3-Rec": "s3rec",
    "CLUE": "dropout",
}
#: The datasets of the paper table: recipe prefix -> column title. Beauty has recipes for
#: S3-Rec, CLUE and CLUEZero only; the other rows are left out there.
PAPER_DATASETS = {"ml30": "MovieLens30", "ml50": "MovieLens50", "beauty50": "Beauty"}
#: Rows whose runs take longest (pre-training, or Caser's many sliding windows) start first.
LONG_ROWS = ("s3rec", "dropout", "masked_item", "caser_zero")


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


def paper_recipes(
    recipes_dir: Path, datasets: list[str], data_root: Path | None = None
) -> tuple[dict[tuple[str, str], Path], list[str]]:
    """The recipes of the paper table that can run here, ``{(dataset, row title): path}``,
    and a line for each that cannot: no recipe for that dataset (Beauty's GRU4Rec, say),
    a recipe that does not validate (an objective whose plugin is not installed), or a
    data file missing under the data root."""
    from clue_fw.data.root import resolve_data_path
    from clue_fw.recipe import load_recipe

    found: dict[tuple[str, str], Path] = {}
    left_out: list[str] = []
    for dataset in datasets:
        for title, suffix in PAPER_ROWS.items():
            path = recipes_dir / f"{dataset}_{suffix}.yaml"
            if not path.exists():
                continue  # no such row for this dataset
            try:
                recipe = load_recipe(path)
                resolve_data_path(recipe.data.path, data_root, "data.path")
                side = getattr(recipe.pretrain and recipe.pretrain.objective, "attributes", None)
                if isinstance(side, str):  # S3-Rec's item attributes
                    try:
                        resolve_data_path(side, data_root, "pretrain.objective.attributes")
                    except ClueError as exc:
                        raise ClueError(f"pretrain.objective.attributes: {exc}") from None
            except ClueError as exc:
                reason = str(exc)
                if "s3rec" in reason and "unknown kind" in reason:
                    reason = "needs the clue-s3rec plugin: pip install -e plugins/clue-s3rec"
                left_out.append(f"{PAPER_DATASETS[dataset]} {title} ({path.name}): {reason}")
                continue
            found[(dataset, title)] = path
    return found, left_out


def paper_names(recipes_dir: Path, datasets: list[str]) -> list[str]:
    """The run names (recipe stems) of the paper table's recipes, in table order."""
    return [
        f"{dataset}_{suffix}"
        for dataset in datasets
        for suffix in PAPER_ROWS.values()
        if (recipes_dir / f"{dataset}_{suffix}.yaml").exists()
    ]


def paper_jobs(
    recipes: dict[tuple[str, str], Path], seeds: list[int], runs_dir: Path
) -> list[tuple[Path, int, Path]]:
    """``(recipe, seed, run_dir)`` of every paper-table run, in the order they start: runs
    an earlier call began (to be resumed) first, then seed by seed (a sweep cut short still
    has every row), the long rows of a seed first (:data:`LONG_ROWS`), then table order."""
    rows = list(PAPER_ROWS.values())
    datasets = list(PAPER_DATASETS)

    def order(job: tuple[Path, int, Path]) -> tuple[bool, int, int, int, int]:
        path, seed, run_dir = job
        dataset, _, suffix = path.stem.partition("_")
        long = LONG_ROWS.index(suffix) if suffix in LONG_ROWS else len(LONG_ROWS)
        began = (run_dir / "recipe.yaml").exists()
        return (not began, seed, long, rows.index(suffix), datasets.index(dataset))

    jobs = [
        (path, seed, runs_dir / path.stem / f"seed{seed}")
        for seed in seeds
        for path in recipes.values()
    ]
    return sorted(jobs, key=order)


def paper_table(runs_dir: Path, datasets: list[str], seeds: list[int]) -> str:
    """The paper's comparison: a row per model, test MRR@10, Recall@10 and NDCG@10 (mean ±
    std over the seeds found) per dataset, the best mean of each column in bold; one table
    for MovieLens (30 and 50 side by side), one for Beauty."""
    groups = [[d for d in datasets if d.startswith("ml")], [d for d in datasets if d == "beauty50"]]
    tables = []
    for group in [g for g in groups if g]:
        cells: dict[tuple[str, str, str], tuple[float, float, int]] = {}
        for dataset in group:
            for title, suffix in PAPER_ROWS.items():
                found = _load(runs_dir / f"{dataset}_{suffix}", seeds)
                for metric in METRICS:
                    if found:
                        mean, std = mean_std([m["test"][metric] for m in found])
                        cells[(dataset, title, metric)] = (mean, std, len(found))
        columns = [(d, m) for d in group for m in METRICS]
        best = {
            column: max(
                (t for t in PAPER_ROWS if (column[0], t, column[1]) in cells),
                key=lambda t, c=column: cells[(c[0], t, c[1])][0],
                default=None,
            )
            for column in columns
        }
        lines = [
            "| model | "
            + " | ".join(f"{PAPER_DATASETS[d]} {METRIC_TITLES[m]}" for d, m in columns)
            + " | seeds |",
            "|---" * (len(columns) + 2) + "|",
        ]
        for title in PAPER_ROWS:
            if not any((d, title, METRICS[0]) in cells for d in group):
                continue
            row = []
            for dataset, metric in columns:
                cell = cells.get((dataset, title, metric))
                text = "-" if cell is None else f"{cell[0]:.4f} ± {cell[1]:.4f}"
                row.append(f"**{text}**" if cell and best[(dataset, metric)] == title else text)
            counts = sorted(
                {cells[(d, title, METRICS[0])][2] for d in group if (d, title, METRICS[0]) in cells}
            )
            lines.append(f"| {title} | " + " | ".join(row) + f" | {'/'.join(map(str, counts))} |")
        tables.append("\n".join(lines) + "\n")
    return "\n".join(tables)


def _load(run_group: Path, seeds: list[int]) -> list[dict]:
    found = []
    for seed in seeds:
        path = run_group / f"seed{seed}" / "metrics.json"
        if path.exists():
            found.append(json.loads(path.read_text()))
    return found


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
    jobs: list[tuple[Path, int, Path]],
    workers: int,
    overrides: list[str],
    gpus: int = 0,
    deadline_s: float | None = None,
) -> None:
    """Run ``(recipe, seed, run_dir)`` jobs, ``workers`` at a time, and report each; none
    starts after ``deadline_s`` seconds."""
    run_jobs(
        [Job(recipe, run_dir, (f"seed={seed}", *overrides)) for recipe, seed, run_dir in jobs],
        workers,
        gpus,
        deadline_s=deadline_s,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipes", nargs="*", type=Path)
    parser.add_argument(
        "--table",
        choices=["paper"],
        help="Run the paper's sequential-recommendation table instead of RECIPES.",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=list(PAPER_DATASETS),
        default=list(PAPER_DATASETS),
        help="--table paper: the datasets (default: all).",
    )
    parser.add_argument("--recipes-dir", type=Path, default=Path("recipes"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--gpus", type=int, default=None, help="GPUs to spread runs over (default: all visible)."
    )
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/table"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--suffix", default="", help="Appended to run names (for --set variants).")
    parser.add_argument("--markdown", type=Path, help="Also write the table to this file.")
    parser.add_argument(
        "--deadline", type=float, default=None, help="Start no run after this many seconds."
    )
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()
    if bool(args.recipes) == bool(args.table):
        parser.error("give RECIPES or --table paper (not both)")

    heading = ""
    if args.table == "paper":
        if args.suffix:
            parser.error("--suffix does not apply to --table paper (use --runs-dir)")
        found, left_out = paper_recipes(args.recipes_dir, args.datasets)
        for line in left_out:
            print(f"left out: {line}", flush=True)
        jobs = paper_jobs(found, args.seeds, args.runs_dir)
        names = paper_names(args.recipes_dir, args.datasets)
        heading = paper_table(args.runs_dir, args.datasets, args.seeds)
    else:
        names = [recipe.stem + args.suffix for recipe in args.recipes]
        jobs = [
            (recipe, seed, args.runs_dir / (recipe.stem + args.suffix) / f"seed{seed}")
            for recipe in args.recipes
            for seed in args.seeds
        ]
    if not args.summarize_only:
        gpus = visible_gpus() if args.gpus is None else args.gpus
        run_all(jobs, args.jobs, args.overrides, gpus, args.deadline)
        if args.table == "paper":
            heading = paper_table(args.runs_dir, args.datasets, args.seeds)
    table, raw = summarize(args.runs_dir, names, args.seeds)
    if heading:
        table = (
            "Test metrics, mean ± std over seeds "
            f"{', '.join(map(str, args.seeds))} (bold: the best mean of each column).\n\n"
            + heading
            + "\nPer recipe:\n\n"
            + table
        )
    if args.table == "paper":
        done = sum((run_dir / "metrics.json").exists() for _, _, run_dir in jobs)
        table += f"\n{done} of the {len(jobs)} runs that can run here have finished.\n"
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
