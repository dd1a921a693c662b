"""The paper's Fig. 5 on ML-1M: next-item quality against the strength of each view.

Usage (from the repository root)::

    CLUE_DATA_DIR=../shared/data python benchmarks/sensitivity.py run --jobs 20   # GPU
    python benchmarks/sensitivity.py summarize                                    # anywhere

CLUE pre-training at MovieLens30 (``recipes/ml30_<view>.yaml``: max length 30, 20 epochs
of pre-training, then next-item fine-tuning with early stopping on validation NDCG@10),
once per strength: the backbone's dropout probability for the implicit (dropout) view, and
the ratio rho of the mask, crop and permute views, each in {0.1, 0.3, 0.5, 0.7, 0.9}. The
figure plots validation and test NDCG@10 against the strength, one panel per view, with
CLUEZero (``recipes/ml30_zero.yaml``, no pre-training) as a horizontal line; since the
dropout probability is also the fine-tuning dropout, CLUEZero runs at every dropout
probability too (group ``zero_dropout``), and the dropout panel compares against that curve
(``run --only GROUP ...`` runs some groups: ``zero``, ``zero_dropout`` and the views). It also
plots the pre-trained encoder's effective rank after the last pre-training epoch
(``rep_erank`` in ``pretrain/history.csv``). Writes ``docs/results/sensitivity.{md,json}``
and ``docs/results/fig5_sensitivity.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pool import Job, run_jobs, visible_gpus
from seeds_table import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
STRENGTHS = (0.1, 0.3, 0.5, 0.7, 0.9)
VIEWS = ("dropout", "mask", "crop", "permute")


def overrides(view: str, strength: float) -> tuple[str, ...]:
    if view == "dropout":
        return (f"backbone.dropout={strength}",)
    return (f"pretrain.views.0.rho={strength}",)


def run_dir(runs: Path, view: str, strength: float, seed: int) -> Path:
    return runs / view / f"{strength:.1f}" / f"seed{seed}"


GROUPS = ("zero", "zero_dropout", *VIEWS)


def zero_dropout_dir(runs: Path, strength: float, seed: int) -> Path:
    return runs / "zero_dropout" / f"{strength:.1f}" / f"seed{seed}"


def jobs(runs: Path, seeds: list[int], groups: tuple[str, ...] = GROUPS) -> list[Job]:
    zero = ROOT / "recipes" / "ml30_zero.yaml"
    found = []
    if "zero" in groups:
        found += [Job(zero, runs / "zero" / f"seed{seed}", (f"seed={seed}",)) for seed in seeds]
    for seed in seeds:
        for strength in STRENGTHS:
            if "zero_dropout" in groups:
                found.append(
                    Job(
                        zero,
                        zero_dropout_dir(runs, strength, seed),
                        (f"seed={seed}", *overrides("dropout", strength)),
                    )
                )
            for view in VIEWS:
                if view not in groups:
                    continue
                found.append(
                    Job(
                        ROOT / "recipes" / f"ml30_{view}.yaml",
                        run_dir(runs, view, strength, seed),
                        (f"seed={seed}", *overrides(view, strength)),
                    )
                )
    return found


def _metrics(run: Path) -> dict[str, Any] | None:
    path = run / "metrics.json"
    if not path.exists():
        return None
    metrics = json.loads(path.read_text())
    history = run / "pretrain" / "history.csv"
    erank = None
    if history.exists():
        from clue_fw.analysis.history_csv import read_history

        rows = read_history(history)
        erank = rows[-1].get("rep_erank") if rows else None
    return {
        "valid_ndcg": metrics["valid"]["ndcg@10"],
        "test_ndcg": metrics["test"]["ndcg@10"],
        "best_epoch": metrics.get("best_epoch"),
        "rep_erank": erank,
    }


def summarize(runs: Path, seeds: list[int], command: str) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for view in VIEWS:
        table[view] = {
            f"{strength:.1f}": {
                str(seed): _metrics(run_dir(runs, view, strength, seed)) for seed in seeds
            }
            for strength in STRENGTHS
        }
    zero = {str(seed): _metrics(runs / "zero" / f"seed{seed}") for seed in seeds}
    zero_dropout = {
        f"{strength:.1f}": {
            str(seed): _metrics(zero_dropout_dir(runs, strength, seed)) for seed in seeds
        }
        for strength in STRENGTHS
    }
    return {
        "command": command,
        "machine": machine_info(),
        "views": table,
        "zero": zero,
        "zero_dropout": zero_dropout,
    }


def keep_earlier_cells(summary: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with each run that is not here (None) taken from an earlier summary,
    so that groups run on different lent machines add up to one figure."""

    def merge(new: Any, old: Any) -> Any:
        if new is None:
            return old
        if isinstance(new, dict) and isinstance(old, dict):
            return {key: merge(value, old.get(key)) for key, value in new.items()}
        return new

    merged = {
        key: merge(summary[key], earlier.get(key)) for key in ("views", "zero", "zero_dropout")
    }
    return {**summary, **merged}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def markdown(summary: dict[str, Any]) -> str:
    zero = [m for m in summary["zero"].values() if m]
    zero_text = f"{_mean([m['test_ndcg'] for m in zero]):.4f}" if zero else "not run"
    lines = [
        "# Fig. 5: sensitivity of CLUE to the strength of its views (ML-1M, length 30)",
        "",
        f"Command: `{summary['command']}`; machine: {json.dumps(summary['machine'])}.",
        "",
        "Next-item NDCG@10 (full ranking, history excluded) after CLUE pre-training with one "
        "view at each strength (dropout: the backbone's dropout probability; mask, crop, "
        "permute: rho), then fine-tuning with early stopping on validation. Each cell: "
        "validation / test, mean over the seeds that ran; `erank`: the pre-trained user "
        f"vectors' effective rank (of 64). CLUEZero (no pre-training), test: {zero_text}.",
        "",
        "| view | " + " | ".join(f"{s:.1f}" for s in STRENGTHS) + " |",
        "|---|" + "---|" * len(STRENGTHS),
    ]
    rows = list(summary["views"].items())
    if "zero_dropout" in summary:
        rows.append(("CLUEZero at the same dropout p", summary["zero_dropout"]))
    for view, cells in rows:
        texts = []
        for strength in STRENGTHS:
            found = [m for m in cells[f"{strength:.1f}"].values() if m]
            if not found:
                texts.append("not run")
                continue
            valid = _mean([m["valid_ndcg"] for m in found])
            test = _mean([m["test_ndcg"] for m in found])
            eranks = [m["rep_erank"] for m in found if m["rep_erank"] is not None]
            erank = f", erank {_mean(eranks):.1f}" if eranks else ""
            texts.append(f"{valid:.4f} / {test:.4f}{erank}")
        lines.append(f"| {view} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(VIEWS), figsize=(4 * len(VIEWS), 3.4), sharey=True)
    zero = [m["test_ndcg"] for m in summary["zero"].values() if m]
    for axis, view in zip(axes, VIEWS, strict=True):
        for key, label, marker in (("valid_ndcg", "valid", "o"), ("test_ndcg", "test", "s")):
            xs, ys = [], []
            for strength in STRENGTHS:
                found = [m[key] for m in summary["views"][view][f"{strength:.1f}"].values() if m]
                if found:
                    xs.append(strength)
                    ys.append(sum(found) / len(found))
            axis.plot(xs, ys, marker=marker, label=f"CLUE, {label}")
        if view == "dropout" and "zero_dropout" in summary:
            xs, ys = [], []
            for strength in STRENGTHS:
                found = [
                    m["test_ndcg"] for m in summary["zero_dropout"][f"{strength:.1f}"].values() if m
                ]
                if found:
                    xs.append(strength)
                    ys.append(sum(found) / len(found))
            if xs:
                axis.plot(xs, ys, marker="^", color="grey", label="CLUEZero, test, same p")
        if zero:
            level = sum(zero) / len(zero)
            axis.axhline(level, color="grey", linestyle="--", label="CLUEZero, test")
        axis.set_title(f"{view} ({'dropout p' if view == 'dropout' else 'rho'})")
        axis.set_xlabel("strength")
        axis.set_xticks(STRENGTHS)
    axes[0].set_ylabel("NDCG@10")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step", choices=("run", "summarize"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--gpus", type=int, default=None, help="Default: all visible.")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/sensitivity"))
    parser.add_argument("--deadline", type=float, default=None)
    parser.add_argument(
        "--only", nargs="+", choices=GROUPS, default=list(GROUPS), help="run: these groups only."
    )
    args = parser.parse_args()
    command = "python benchmarks/sensitivity.py " + " ".join(sys.argv[1:])
    if args.step == "run":
        gpus = visible_gpus() if args.gpus is None else args.gpus
        run_jobs(jobs(args.runs_dir, args.seeds, tuple(args.only)), args.jobs, gpus, args.deadline)
        return
    summary = summarize(args.runs_dir, args.seeds, command)
    previous = RESULTS / "sensitivity.json"
    if previous.exists():  # cells whose runs were made (and summarised) on another machine
        summary = keep_earlier_cells(summary, json.loads(previous.read_text()))
    (RESULTS / "sensitivity.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / "sensitivity.md").write_text(markdown(summary))
    plot(summary, RESULTS / "fig5_sensitivity.png")
    print(markdown(summary))


if __name__ == "__main__":
    main()
