"""The collapse of CLUE's user vectors on ML-1M, before and after the fix, through the product.

Usage (from the repository root)::

    # on a GPU machine (or slowly on a CPU): pre-train every variant, 20 epochs
    CLUE_DATA_DIR=../shared/data python benchmarks/collapse.py run --jobs 8
    # anywhere: probe the pre-trained vectors, write docs/results/collapse.{md,json} and figures
    CLUE_DATA_DIR=../shared/data python benchmarks/collapse.py summarize

Every variant pre-trains the Table II encoder (``recipes/table2/gender_clue.yaml``: SASRec
d=64, 2 blocks, dropout 0.5, every window of every user, batch 256, Adam 1e-3, 20 epochs)
with one objective; the gender fine-tuning after it is cut to one epoch, since only the
pre-trained encoder is judged here. ``summarize`` then reads each run's
``pretrain/history.csv`` (loss and the encoder's own ``rep_*`` measures per epoch) and probes
the frozen pre-trained vectors of all 6,040 users with :func:`clue_fw.probing.probe_run`
(L-BFGS logistic regression and kNN on the profile head's 80/5/15 split, beside the majority
class, the random encoder of the same recipe and the bag-of-items baselines), for gender,
age and occupation. It draws the paper's Fig. 6 (loss and effective rank with and without
stop-gradient and predictor) and Fig. 7 (2-D PCA of user vectors, masked-item vs CLUE,
coloured by gender, with alignment, uniformity and effective rank).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pool import Job, run_jobs, visible_gpus
from seeds_table import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
BASE = ROOT / "recipes" / "table2" / "gender_clue.yaml"
MASKED = ROOT / "recipes" / "table2" / "gender_masked_item.yaml"
TASKS = ("gender", "age", "occupation")
OBJ = "pretrain.objective."
SHORT_FINETUNE = ("finetune.train.epochs=1",)

# name -> (recipe, overrides, what it is)
VARIANTS: dict[str, tuple[Path, tuple[str, ...], str]] = {
    "clue_paper": (BASE, (), "CLUE as the paper states it (SimSiam form), dropout views"),
    "clue_no_stop_gradient": (BASE, (f"{OBJ}stop_gradient=false",), "ablation: no stop-gradient"),
    "clue_no_predictor": (BASE, (f"{OBJ}predictor=false",), "ablation: no predictor"),
    "clue_spread": (
        BASE,
        (f"{OBJ}variance_weight=1.0", f"{OBJ}covariance_weight=1.0"),
        "CLUE + VICReg variance and covariance terms on the encoder's user vectors",
    ),
    "infonce": (
        BASE,
        ('pretrain.objective={"kind": "infonce", "similarity": "cosine", "temperature": 0.2}',),
        "InfoNCE (cosine, tau 0.2, in-batch negatives) with the same dropout views",
    ),
    "masked_item": (MASKED, (), "masked-item pre-training (PeterRec / BERT4Rec style)"),
}
FIG6 = ("clue_paper", "clue_no_stop_gradient", "clue_no_predictor")
FIG7 = ("masked_item", "clue_paper", "clue_spread", "infonce")


def run_dir(runs: Path, variant: str, seed: int) -> Path:
    return runs / variant / f"seed{seed}"


def jobs(runs: Path, seeds: list[int], variants: list[str]) -> list[Job]:
    return [
        Job(
            VARIANTS[name][0],
            run_dir(runs, name, seed),
            (f"seed={seed}", *SHORT_FINETUNE, *VARIANTS[name][1]),
        )
        for seed in seeds
        for name in variants
    ]


def read_history(run: Path) -> list[dict[str, Any]]:
    from clue_fw.analysis.history_csv import read_history as read

    path = run / "pretrain" / "history.csv"
    return [dict(row) for row in read(path)] if path.exists() else []


def probe(run: Path, data_root: Path, device: str) -> dict[str, Any]:
    """Probe reports of ``run``'s pre-trained vectors for every task (JSON-ready)."""
    from clue_fw.probing import probe_run

    reports = {}
    for index, task in enumerate(TASKS):
        report = probe_run(
            run,
            labels=data_root / "ml-1m" / "users.dat",
            column=task,
            stage="pretrain",
            device=device,
            next_item=index == 0,  # label-free: once per run
        )
        reports[task] = report.to_json()
    return reports


def summarize(runs: Path, seeds: list[int], device: str, command: str) -> dict[str, Any]:
    from clue_fw.data.root import data_root

    root = data_root()
    summary: dict[str, Any] = {
        "command": command,
        "machine": machine_info(),
        "seeds": seeds,
        "variants": {},
    }
    for name, (recipe, overrides, what) in VARIANTS.items():
        entry: dict[str, Any] = {
            "what": what,
            "recipe": str(recipe.relative_to(ROOT)),
            "overrides": list(overrides),
            "runs": {},
        }
        for seed in seeds:
            run = run_dir(runs, name, seed)
            if not (run / "pretrain" / "encoder.safetensors").exists():
                continue
            started = time.perf_counter()
            entry["runs"][str(seed)] = {
                "history": read_history(run),
                "probes": probe(run, root, device),
            }
            print(f"{name} seed {seed}: probed in {time.perf_counter() - started:.0f} s")
        summary["variants"][name] = entry
    return summary


def _row(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    for row in report["probes"]:
        if row["features"] == name:
            return row
    return None


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# The collapse of CLUE's user vectors on ML-1M, and the fix",
        "",
        f"Command: `{summary['command']}`; machine: {json.dumps(summary['machine'])}.",
        "",
        "Pre-trained (frozen) user vectors of all ML-1M users, probed on the profile head's "
        "80/5/15 user split: test accuracy of an L-BFGS logistic regression (L2 chosen on "
        "validation) with macro-F1 in brackets; `erank` is the centred effective rank of the "
        "L2-normalised vectors after the last pre-training epoch (`rep_erank`, of 64).",
        "",
    ]
    header = "| variant | seed | erank | " + " | ".join(TASKS) + " |"
    lines += [header, "|---|---|---|" + "---|" * len(TASKS)]
    baselines_done = False
    for name, entry in summary["variants"].items():
        for seed, found in entry["runs"].items():
            erank = found["history"][-1].get("rep_erank") if found["history"] else None
            cells = []
            for task in TASKS:
                row = _row(found["probes"][task], "encoder")
                cells.append(
                    f"{row['linear']['accuracy']:.4f} ({row['linear']['macro_f1']:.3f})"
                    if row
                    else "-"
                )
            erank_text = f"{erank:.1f}" if isinstance(erank, (int, float)) else "-"
            lines.append(f"| `{name}` | {seed} | {erank_text} | " + " | ".join(cells) + " |")
            if not baselines_done:
                baselines_done = True
                for baseline in ("majority", "random encoder", "bag of items", "bag SVD"):
                    cells = []
                    for task in TASKS:
                        row = _row(found["probes"][task], baseline)
                        cells.append(
                            f"{row['linear']['accuracy']:.4f} ({row['linear']['macro_f1']:.3f})"
                            if row and row.get("linear")
                            else "-"
                        )
                    lines.insert(-1, f"| {baseline} | {seed} | - | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step", choices=("run", "summarize"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--gpus", type=int, default=None, help="Default: all visible.")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/collapse"))
    parser.add_argument("--deadline", type=float, default=None)
    parser.add_argument("--device", default="cpu", help="Where summarize probes.")
    args = parser.parse_args()
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    command = "python benchmarks/collapse.py " + " ".join(sys.argv[1:])
    if args.step == "run":
        gpus = visible_gpus() if args.gpus is None else args.gpus
        run_jobs(jobs(args.runs_dir, args.seeds, args.variants), args.jobs, gpus, args.deadline)
        return
    summary = summarize(args.runs_dir, args.seeds, args.device, command)
    (RESULTS / "collapse.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / "collapse.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
