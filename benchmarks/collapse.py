"""The collapse of CLUE's user vectors on ML-1M, before and after the fix, through the product.

Usage (from the repository root)::

    # on a GPU machine (or slowly on a CPU): pre-train every variant, 20 epochs
    CLUE_DATA_DIR=../shared/data python benchmarks/collapse.py run --jobs 8
    # anywhere: probe the pre-trained vectors (docs/results/collapse.{md,json}), then the figures
    CLUE_DATA_DIR=../shared/data python benchmarks/collapse.py summarize
    CLUE_DATA_DIR=../shared/data python benchmarks/collapse.py figures

The paper-form variants pre-train the Table II encoder
(``recipes/table2/gender_clue_paper.yaml``: SASRec d=64, 2 blocks, dropout 0.5, every window
of every user, batch 256, Adam 1e-3, 20 epochs) with one objective, the fix
(``recipes/table2/gender_clue.yaml``) its mean-of-item-embeddings encoder; the gender
fine-tuning after it is cut to one epoch, since only the
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
BASE = ROOT / "recipes" / "table2" / "gender_clue_paper.yaml"
FIXED = ROOT / "recipes" / "table2" / "gender_clue.yaml"
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
    "clue": (
        FIXED,
        (),
        "CLUE fixed: InfoNCE between split views (disjoint halves of each user's items), "
        "mean-of-item-embeddings encoder",
    ),
    "infonce_split_transformer": (
        BASE,
        (
            'pretrain.objective={"kind": "infonce", "similarity": "cosine", "temperature": 0.2}',
            'pretrain.views=[{"kind": "split"}]',
            "backbone.dropout=0.0",
        ),
        "the fix's objective and split views on the Transformer ([UR]), dropout 0",
    ),
}
FIG6 = ("clue_paper", "clue_no_stop_gradient", "clue_no_predictor")
FIG7 = ("masked_item", "clue_paper", "clue", "infonce_split_transformer", "clue_spread", "infonce")
"""Fig. 7's panels, in order; a variant without a pre-trained encoder under --runs-dir is left
out of the figure (and of fig7_pca.json)."""


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


def probe(run: Path, data_root: Path, device: str, tasks: list[str], baselines: bool) -> dict:
    """Probe reports of ``run``'s pre-trained vectors for ``tasks`` (JSON-ready); the
    baselines (majority, random encoder, bag of items) only where ``baselines``."""
    from clue_fw.probing import probe_run

    reports = {}
    for task in tasks:
        report = probe_run(
            run,
            labels=data_root / "ml-1m" / "users.dat",
            column=task,
            stage="pretrain",
            device=device,
            baselines=baselines,
            next_item=False,
        )
        reports[task] = report.to_json()
    return reports


def described(name: str) -> dict[str, Any]:
    """What variant ``name`` is, as ``VARIANTS`` defines it now: what, recipe, overrides."""
    recipe, overrides, what = VARIANTS[name]
    return {"what": what, "recipe": str(recipe.relative_to(ROOT)), "overrides": list(overrides)}


def summarize(
    runs: Path, seeds: list[int], tasks: list[str], device: str, command: str
) -> dict[str, Any]:
    from clue_fw.data.root import data_root

    root = data_root()
    summary: dict[str, Any] = {
        "command": command,
        "machine": machine_info(),
        "seeds": seeds,
        "tasks": tasks,
        "variants": {},
    }
    first = True
    for name in VARIANTS:
        entry: dict[str, Any] = {**described(name), "runs": {}}
        for seed in seeds:
            run = run_dir(runs, name, seed)
            if not (run / "pretrain" / "encoder.safetensors").exists():
                continue
            started = time.perf_counter()
            entry["runs"][str(seed)] = {
                "history": read_history(run),
                "probes": probe(run, root, device, tasks, baselines=first),
            }
            first = False
            print(f"{name} seed {seed}: probed in {time.perf_counter() - started:.0f} s")
        summary["variants"][name] = entry
    return summary


def keep_earlier_variants(summary: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with each variant that has no run here taken from an earlier summary
    (its runs made elsewhere), in ``VARIANTS`` order; the earlier commands are kept."""
    variants = {}
    for name, entry in summary["variants"].items():
        old = earlier.get("variants", {}).get(name)
        if not entry["runs"] and old and old.get("runs"):
            # its runs from before; what, recipe and overrides as defined now (a recipe
            # renamed since, gender_clue.yaml -> gender_clue_paper.yaml, is named as it is now)
            variants[name] = {**old, **described(name)}
        else:
            variants[name] = entry
    commands = [c for c in (earlier.get("command"), summary["command"]) if c]
    return {**summary, "variants": variants, "command": " ; then ".join(dict.fromkeys(commands))}


def _linear(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any] | None:
    for row in rows:
        if row["features"].startswith(prefix) and row["classifier"].startswith("logistic"):
            return row
    return None


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    test = row["test"]
    auc = f", AUC {test['roc_auc']:.3f}" if test.get("roc_auc") is not None else ""
    return f"{test['acc']:.4f} (bal. {test['balanced_acc']:.3f}{auc})"


def markdown(summary: dict[str, Any]) -> str:
    tasks = summary["tasks"]
    lines = [
        "# The collapse of CLUE's user vectors on ML-1M, through the product",
        "",
        f"Command: `{summary['command']}`; machine: {json.dumps(summary['machine'])}. The "
        "paper-form variants (up to `masked_item`) pre-trained on one NVIDIA H100 "
        "(`benchmarks/device_collapse.sh`), the fix's (`clue`, `infonce_split_transformer`) "
        "on a 2-core CPU, 20 epochs each; the probes ran on the machine above.",
        "",
        "Frozen pre-trained user vectors (`[UR]`; `clue`: the item mean) of all 6,040 ML-1M "
        "users (the last 50 items before "
        "the held-out ones), probed by `clue probe`'s protocol on the profile head's 80/5/15 "
        "user split: test accuracy of the converged L-BFGS logistic regression (L2 chosen on "
        "validation), with balanced accuracy and, for gender, ROC-AUC. `erank`: the centred "
        "effective rank of the normalised vectors after the last pre-training epoch "
        "(`rep_erank` in `pretrain/history.csv`, of 64); `loss`: the last epoch's.",
        "",
        "| features | erank | loss | " + " | ".join(tasks) + " |",
        "|---|---|---|" + "---|" * len(tasks),
    ]

    def rows_of(found: dict[str, Any], task: str) -> list[dict[str, Any]]:
        return found["probes"].get(task, {}).get("probes", [])

    def baseline_cells(found: dict[str, Any], prefix: str) -> list[str]:
        return [
            _cell(next((r for r in rows_of(found, t) if r["features"].startswith(prefix)), None))
            for t in tasks
        ]

    with_baselines: list[tuple[str, dict[str, Any]]] = []
    for name, entry in summary["variants"].items():
        for seed, found in entry["runs"].items():
            last = found["history"][-1] if found["history"] else {}
            erank, loss = last.get("rep_erank"), last.get("loss")
            cells = [_cell(_linear(rows_of(found, t), "encoder")) for t in tasks]
            lines.append(
                f"| `{name}` (seed {seed}) | {erank:.1f} | {loss:.3f} | " + " | ".join(cells) + " |"
                if isinstance(erank, (int, float)) and isinstance(loss, (int, float))
                else f"| `{name}` (seed {seed}) | - | - | " + " | ".join(cells) + " |"
            )
            covered = sum(bool(_linear(rows_of(found, t), "bag")) for t in tasks)
            if covered:
                with_baselines.append((name, found))
    if with_baselines:
        # the data baselines from the run probed on the most tasks; every random encoder
        widest = max(
            with_baselines, key=lambda pair: sum(bool(rows_of(pair[1], t)) for t in tasks)
        )[1]
        for prefix, label in (
            ("majority", "majority class"),
            ("bag of items, tf-idf", "bag of the same items, tf-idf"),
            ("bag of items, SVD", "bag of the same items, SVD-64"),
        ):
            lines.append(
                f"| {label} | - | - | " + " | ".join(baseline_cells(widest, prefix)) + " |"
            )
        for name, found in with_baselines:
            cells = baseline_cells(found, "random encoder")
            lines.append(
                f"| random encoder of `{name}`'s recipe | - | - | " + " | ".join(cells) + " |"
            )
    lines += ["", "Variants:", ""]
    for name, entry in summary["variants"].items():
        overrides = " ".join(entry["overrides"]) or "as shipped"
        lines.append(f"- `{name}`: {entry['what']} (`{entry['recipe']}`, `{overrides}`)")
    return "\n".join(lines) + "\n"


def figure_6(runs: Path, path: Path) -> None:
    """Pre-training loss and effective rank per epoch, with and without stop-gradient and
    predictor (the paper's Fig. 6, plus the encoder's own effective rank)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.4))
    for name in FIG6:
        history = read_history(run_dir(runs, name, 0))
        if not history:
            continue
        epochs = [row["epoch"] for row in history]
        left.plot(epochs, [row["loss"] for row in history], marker=".", label=name)
        middle.plot(epochs, [row["rep_erank"] for row in history], marker=".", label=name)
        right.plot(epochs, [row["rep_std"] for row in history], marker=".", label=name)
    left.set_title("pre-training loss (minimum -1)")
    left.set_ylim(-1.05, 0.05)
    middle.set_title("effective rank of the user vectors (of 64)")
    middle.set_ylim(0, 64)
    right.set_title("spread of the user vectors (rep_std; 0: one point)")
    right.set_ylim(0, 1.05)
    for axis in (left, middle, right):
        axis.set_xlabel("epoch")
    left.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def figure_7(runs: Path, path: Path, data_root: Path) -> dict[str, Any]:
    """2-D PCA of the pre-trained user vectors of FIG7's runs, coloured by gender, with
    alignment, uniformity and effective rank in each title (the paper's Fig. 7)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clue_fw import load_run
    from clue_fw.analysis.representations import analyze_run
    from clue_fw.data.labels import read_label_file
    from clue_fw.metrics.representation import effective_rank, pca_2d

    labels = read_label_file(data_root / "ml-1m" / "users.dat", "gender")
    names = [n for n in FIG7 if (run_dir(runs, n, 0) / "pretrain" / "encoder.safetensors").exists()]
    figure, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), squeeze=False)
    measured: dict[str, Any] = {}
    for axis, name in zip(axes[0], names, strict=True):
        run = load_run(run_dir(runs, name, 0), stage="pretrain", device="cpu")
        analysis = analyze_run(run, seed=0)
        points, shares = pca_2d(analysis.vectors)
        gender = [labels.get(int(u)) for u in analysis.users]
        for value, colour in (("M", "tab:blue"), ("F", "tab:red")):
            chosen = [i for i, g in enumerate(gender) if g == value]
            axis.scatter(
                points[chosen, 0], points[chosen, 1], s=2, c=colour, label=value, alpha=0.5
            )
        found = {
            "alignment": analysis.measures["alignment"],
            "uniformity": analysis.measures["uniformity"],
            "effective_rank_centred": effective_rank(
                torch_normalize(analysis.vectors), centre=True
            ),
            "pca_shares": shares,
        }
        measured[name] = found
        axis.set_title(
            f"{name}\nalign {found['alignment']:.2f}, unif {found['uniformity']:.2f}, "
            f"erank {found['effective_rank_centred']:.1f}",
            fontsize=8,
        )
        axis.set_xlabel(f"PC1 ({shares[0]:.0%})")
        axis.set_ylabel(f"PC2 ({shares[1]:.0%})")
    axes[0][0].legend(fontsize=7, markerscale=4)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return measured


def torch_normalize(vectors: Any) -> Any:
    import torch

    return torch.nn.functional.normalize(vectors.double(), dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "step",
        choices=("run", "summarize", "figures", "table"),
        help="table: rebuild collapse.md from collapse.json",
    )
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--gpus", type=int, default=None, help="Default: all visible.")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/collapse"))
    parser.add_argument("--deadline", type=float, default=None)
    parser.add_argument("--device", default="cpu", help="Where summarize probes.")
    parser.add_argument(
        "--figures",
        nargs="+",
        type=int,
        choices=(6, 7),
        default=[6, 7],
        help="Which figures the figures step draws (each needs its variants' runs here).",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    command = "python benchmarks/collapse.py " + " ".join(sys.argv[1:])
    if args.step == "run":
        gpus = visible_gpus() if args.gpus is None else args.gpus
        run_jobs(jobs(args.runs_dir, args.seeds, args.variants), args.jobs, gpus, args.deadline)
        return
    if args.step == "figures":
        from clue_fw.data.root import data_root

        if 6 in args.figures:
            figure_6(args.runs_dir, RESULTS / "fig6_collapse_ablation.png")
        if 7 in args.figures:
            measured = figure_7(args.runs_dir, RESULTS / "fig7_pca.png", data_root())
            record = {"command": command, "machine": machine_info(), **measured}
            (RESULTS / "fig7_pca.json").write_text(json.dumps(record, indent=1) + "\n")
            print(json.dumps(measured, indent=1))
        return
    if args.step == "table":
        summary = json.loads((RESULTS / "collapse.json").read_text())
        for name, entry in summary["variants"].items():
            if name in VARIANTS:  # described as now (a recipe renamed since is named anew)
                entry.update(described(name))
        (RESULTS / "collapse.json").write_text(json.dumps(summary, indent=1) + "\n")
        (RESULTS / "collapse.md").write_text(markdown(summary))
        print(markdown(summary))
        return
    summary = summarize(args.runs_dir, args.seeds, args.tasks, args.device, command)
    previous = RESULTS / "collapse.json"
    if previous.exists():  # variants pre-trained and probed on another machine
        summary = keep_earlier_variants(summary, json.loads(previous.read_text()))
    (RESULTS / "collapse.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / "collapse.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
