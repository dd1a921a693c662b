"""How strong can CLUE's own pre-training be? One setting at a time, judged by linear probes.

Usage (from the repository root)::

    CLUE_DATA_DIR=../shared/data python benchmarks/clue_strength.py --seeds 0 1 \
        --jobs 16 --runs-dir runs/clue_strength

Each variant of :data:`VARIANTS` changes one thing of the Table II CLUE pre-training
(``recipes/table2/gender_clue_paper.yaml``: batch 256, Adam at lr 1e-3, 20 epochs, projector
256, predictor 64, dropout views at the backbone's dropout 0.5, every window of every
user): batch size, learning rate and schedule (SimSiam's SGD with cosine decay and lr
scaled by batch / 256), length of pre-training, projector and predictor sizes, view
strength and the amount of pre-training data. The pre-trained encoder is then judged by
linear probes (frozen encoder, a linear softmax trained on the labelled users) of
gender, age and occupation: the usual test of a self-supervised representation, free of
what full fine-tuning would change. Random (no pre-training) and masked-item encoders
are probed the same way as references.

Writes ``docs/results/clue_strength.json`` and ``.md``. Finished runs are skipped
(repeat the command to finish); ``--summarize-only`` rebuilds the outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pool import Job, run_jobs, visible_gpus
from seeds_table import machine_info

from clue_fw.analysis.compare import mean_std

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("gender", "age", "occupation")
FIRST = "gender"  # its run pre-trains; the other tasks start from that run's encoder

P = "pretrain.train."
VARIANTS: dict[str, tuple[str, ...]] = {
    "base": (),
    "batch1024": (f"{P}batch_size=1024",),
    "batch1024_lr4e-3": (f"{P}batch_size=1024", f"{P}lr=0.004"),
    "sgd_cosine_bs512": (
        f"{P}batch_size=512",
        f"{P}optimizer=sgd",
        f"{P}momentum=0.9",
        f"{P}lr=0.05",
        f"{P}lr_scale=linear",
        f"{P}weight_decay=0.0001",
        f"{P}schedule=cosine",
    ),
    "adam_cosine_warmup": (f"{P}schedule=cosine", f"{P}warmup_epochs=2", f"{P}lr=0.002"),
    "epochs100": (f"{P}epochs=100",),
    "projector1024_predictor256": (
        "pretrain.objective.projector_dim=1024",
        "pretrain.objective.predictor_dim=256",
    ),
    "projector2048_predictor512": (
        "pretrain.objective.projector_dim=2048",
        "pretrain.objective.predictor_dim=512",
    ),
    "dropout0.3": ("backbone.dropout=0.3",),
    "dropout0.7": ("backbone.dropout=0.7",),
    "views_mask0.3": ('pretrain.views=[{"kind": "mask", "rho": 0.3}]',),
    "recent_only": (f"{P}history=recent",),
}
REFERENCES: dict[str, tuple[str, ...]] = {
    "random_encoder": ("pretrain=null",),
    "masked_item": (),  # recipes/table2/<task>_masked_item.yaml as it is
}


def recipe_for(task: str, variant: str) -> Path:
    # the SimSiam settings studied here are those of the paper's form of CLUE
    model = "masked_item" if variant == "masked_item" else "clue_paper"
    return ROOT / "recipes" / "table2" / f"{task}_{model}.yaml"


def run_dir(runs: Path, variant: str, task: str, seed: int) -> Path:
    return runs / variant / task / f"seed{seed}"


def overrides_for(variant: str) -> tuple[str, ...]:
    return VARIANTS.get(variant, REFERENCES.get(variant, ()))


def first_jobs(runs: Path, seeds: list[int]) -> list[Job]:
    """The runs that pre-train (and probe the first task)."""
    return [
        Job(
            recipe_for(FIRST, variant),
            run_dir(runs, variant, FIRST, seed),
            (f"seed={seed}", "finetune.mode=probe", *overrides_for(variant)),
        )
        for seed in seeds
        for variant in (*VARIANTS, *REFERENCES)
    ]


def probe_jobs(runs: Path, seeds: list[int]) -> list[Job]:
    """Probes of the other tasks from the encoder each first run pre-trained."""
    jobs = []
    for seed in seeds:
        for variant in (*VARIANTS, *REFERENCES):
            source = run_dir(runs, variant, FIRST, seed)
            pretrained = variant != "random_encoder"
            if pretrained and not (source / "pretrain" / "encoder.safetensors").exists():
                continue
            start = (f"finetune.init_from={source}", "pretrain=null") if pretrained else ()
            for task in TASKS[1:]:
                jobs.append(
                    Job(
                        recipe_for(task, variant),
                        run_dir(runs, variant, task, seed),
                        (
                            f"seed={seed}",
                            "finetune.mode=probe",
                            *overrides_for(variant),
                            *start,
                        ),
                    )
                )
    return jobs


def summarize(runs: Path, seeds: list[int], command: str) -> dict:
    table: dict = {}
    for variant in (*VARIANTS, *REFERENCES):
        table[variant] = {"overrides": list(overrides_for(variant))}
        for task in TASKS:
            found = []
            for seed in seeds:
                path = run_dir(runs, variant, task, seed) / "metrics.json"
                if path.exists():
                    found.append(json.loads(path.read_text())["test"])
            mean, std = mean_std([m["acc"] for m in found]) if found else (None, 0.0)
            table[variant][task] = {
                "n": len(found),
                "acc_mean": mean,
                "acc_std": std,
                "runs": found,
            }
    return {"command": command, "machine": machine_info(), "seeds": seeds, "variants": table}


def markdown(summary: dict) -> str:
    lines = [
        "# CLUE pre-training settings, judged by linear probes on ML-1M",
        "",
        f"Command: `{summary['command']}`; machine: {json.dumps(summary['machine'])}.",
        "Test accuracy of a linear probe on the frozen encoder (mean ± std over seeds "
        f"{summary['seeds']}); each variant changes one setting of the Table II CLUE "
        "pre-training (`recipes/table2/gender_clue_paper.yaml`).",
        "",
        "| variant | " + " | ".join(f"{task} acc" for task in TASKS) + " | overrides |",
        "|---|" + "---|" * len(TASKS) + "---|",
    ]
    for variant, entry in summary["variants"].items():
        cells = []
        for task in TASKS:
            cell = entry[task]
            cells.append(
                "not run"
                if not cell["n"]
                else f"{cell['acc_mean']:.4f} ± {cell['acc_std']:.4f} (n={cell['n']})"
            )
        overrides = " ".join(entry["overrides"]) or "-"
        lines.append(f"| `{variant}` | " + " | ".join(cells) + f" | `{overrides}` |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--gpus", type=int, default=None, help="Default: all visible.")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/clue_strength"))
    parser.add_argument("--deadline", type=float, default=None)
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()
    command = "python benchmarks/clue_strength.py " + " ".join(sys.argv[1:])
    if not args.summarize_only:
        gpus = visible_gpus() if args.gpus is None else args.gpus
        started = time.perf_counter()
        run_jobs(first_jobs(args.runs_dir, args.seeds), args.jobs, gpus, args.deadline)
        left = None if args.deadline is None else args.deadline - (time.perf_counter() - started)
        run_jobs(probe_jobs(args.runs_dir, args.seeds), args.jobs, gpus, left)
    summary = summarize(args.runs_dir, args.seeds, command)
    results = ROOT / "docs" / "results"
    (results / "clue_strength.json").write_text(json.dumps(summary, indent=1) + "\n")
    (results / "clue_strength.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
