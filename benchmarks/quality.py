"""Best next-item quality on ML-1M and Amazon Beauty: a sweep, a choice on validation, seeds.

Usage (from the repository root)::

    CLUE_DATA_DIR=../shared/data python benchmarks/quality.py ml1m beauty \
        --jobs 24 --runs-dir runs/quality

For each dataset, three steps, each skipped where its runs exist (so the command can be
repeated until everything is done, also across machine leases):

1. **Sweep.** Every variant of :data:`VARIANTS` (``--set`` overrides of the dataset's
   base recipe in ``benchmarks/recipes/quality_<dataset>.yaml``) runs with seed 0.
2. **Choice on validation.** The best variant on the validation monitor (ndcg@10 for
   ML-1M, ndcg@20 for Beauty, as the published protocols select) is chosen, and so is
   the best of each family of :data:`FAMILIES` (plain fine-tuning, fine-tuning with an
   auxiliary contrastive term, CLUE pre-training then fine-tuning), so the comparison
   between them is made at each one's best settings. Test metrics play no part.
3. **Seeds.** The chosen variants run with seeds 1 and 2 as well.

It writes ``docs/results/<dataset>_best.json`` (every run's metrics, the mean and std of
the chosen variants over seeds, the machine and this command),
``docs/results/<dataset>_best.md`` (the tables) and ``recipes/<dataset>_best.yaml``, the
base recipe with the best variant's overrides applied. ``--summarize-only`` rebuilds
the outputs from the runs on disk; ``--deadline S`` starts no run after S seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from pool import Job, run_jobs, visible_gpus
from seeds_table import machine_info

from clue_fw.analysis.compare import mean_std

ROOT = Path(__file__).resolve().parents[1]

CLUE_PRETRAIN = (
    'pretrain={"objective": {"kind": "clue", "projector_dim": 256, "predictor_dim": 64}, '
    '"views": [{"kind": "dropout"}], '
    '"train": {"epochs": 20, "batch_size": 256, "lr": 0.001, "history": "all"}}'
)


def auxiliary(kind: str, weight: float, **options: object) -> str:
    objective = {"kind": kind, **options}
    term = {"objective": objective, "views": [{"kind": "dropout"}], "weight": weight}
    return "finetune.auxiliary=" + json.dumps([term])


def transformer(dim: int, blocks: int, heads: int, dropout: float) -> tuple[str, ...]:
    return (
        f"backbone.dim={dim}",
        f"backbone.blocks={blocks}",
        f"backbone.heads={heads}",
        f"backbone.dropout={dropout}",
    )


def gru(dim: int, dropout: float) -> tuple[str, ...]:
    return (f'backbone={{"kind": "gru", "dim": {dim}, "layers": 1, "dropout": {dropout}}}',)


COSINE = (
    "finetune.train.schedule=cosine",
    "finetune.train.warmup_epochs=5",
    "finetune.train.optimizer=adamw",
    "finetune.train.weight_decay=0.01",
)

VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "ml1m": {
        "d64_b2_p0.2": transformer(64, 2, 2, 0.2),
        "d64_b2_p0.1": transformer(64, 2, 2, 0.1),
        "d128_b2_p0.2": transformer(128, 2, 4, 0.2),
        "d128_b2_p0.3": transformer(128, 2, 4, 0.3),
        "d128_b3_p0.2": transformer(128, 3, 4, 0.2),
        "d256_b2_p0.3": transformer(256, 2, 4, 0.3),
        "d256_b4_p0.3": transformer(256, 4, 8, 0.3),
        "d128_b2_p0.2_len100": (*transformer(128, 2, 4, 0.2), "data.max_len=100"),
        "d128_b2_p0.2_bs256_lr2e-3": (
            *transformer(128, 2, 4, 0.2),
            "finetune.train.batch_size=256",
            "finetune.train.lr=0.002",
        ),
        "d128_b2_p0.2_cosine_lr2e-3": (
            *transformer(128, 2, 4, 0.2),
            *COSINE,
            "finetune.train.lr=0.002",
        ),
        "gru_d128_p0.3": gru(128, 0.3),
        "d128_b2_p0.2_aux_clue0.1": (*transformer(128, 2, 4, 0.2), auxiliary("clue", 0.1)),
        "d128_b2_p0.2_aux_infonce0.1": (
            *transformer(128, 2, 4, 0.2),
            auxiliary("infonce", 0.1),
        ),
        "d128_b2_p0.2_clue_pretrain": (*transformer(128, 2, 4, 0.2), CLUE_PRETRAIN),
        # architecture levers (issue 23): SwiGLU FFN, rotary positions, both
        "d128_b2_p0.2_swiglu": (*transformer(128, 2, 4, 0.2), "backbone.ffn=swiglu"),
        "d128_b2_p0.2_rotary": (*transformer(128, 2, 4, 0.2), "backbone.positions=rotary"),
        "d128_b2_p0.2_swiglu_rotary": (
            *transformer(128, 2, 4, 0.2),
            "backbone.ffn=swiglu",
            "backbone.positions=rotary",
        ),
    },
    "beauty": {
        "d64_p0.5": transformer(64, 2, 2, 0.5),
        "d64_p0.3": transformer(64, 2, 2, 0.3),
        "d128_p0.5": transformer(128, 2, 4, 0.5),
        "d64_p0.5_cosine": (*transformer(64, 2, 2, 0.5), *COSINE),
        "gru_d64_p0.3": gru(64, 0.3),
        "d64_p0.5_aux_infonce0.1": (*transformer(64, 2, 2, 0.5), auxiliary("infonce", 0.1)),
        "d64_p0.5_aux_infonce0.1_cos0.2": (
            *transformer(64, 2, 2, 0.5),
            auxiliary("infonce", 0.1, similarity="cosine", temperature=0.2),
        ),
        "d128_p0.5_aux_infonce0.1": (*transformer(128, 2, 4, 0.5), auxiliary("infonce", 0.1)),
        "d64_p0.5_aux_clue0.1": (*transformer(64, 2, 2, 0.5), auxiliary("clue", 0.1)),
        "d64_p0.5_aux_clue0.5": (*transformer(64, 2, 2, 0.5), auxiliary("clue", 0.5)),
        "d64_p0.5_clue_pretrain": (*transformer(64, 2, 2, 0.5), CLUE_PRETRAIN),
        "d64_p0.5_swiglu_rotary": (
            *transformer(64, 2, 2, 0.5),
            "backbone.ffn=swiglu",
            "backbone.positions=rotary",
        ),
    },
}

FAMILIES = {
    "plain": "fine-tuning only (CLUEZero)",
    "auxiliary": "fine-tuning with an auxiliary contrastive term",
    "pretrain": "CLUE pre-training, then fine-tuning",
}

MONITOR = {"ml1m": "ndcg@10", "beauty": "ndcg@20"}
SWEEP_SEED = 0
MORE_SEEDS = (1, 2)
PUBLISHED = {
    "ml1m": {
        "metric": "ndcg@10",
        "target": 0.19,
        "rows": {
            "SASRec, full cross-entropy (Klenitskiy and Vasilev, RecSys 2023)": 0.1821,
            "gSASRec": 0.1726,
            "HSTU (Zhai et al., ICML 2024)": 0.1720,
            "HSTU-large": 0.1893,
        },
    },
    "beauty": {
        "metric": "ndcg@20",
        "target": 0.055,
        "rows": {
            "SASRec": 0.0394,
            "CL4SRec": 0.0441,
            "ICLRec": 0.0489,
            "DuoRec": 0.0536,
            "MCLRec": 0.0539,
        },
    },
}


def family(overrides: tuple[str, ...]) -> str:
    if any(o.startswith("finetune.auxiliary=") for o in overrides):
        return "auxiliary"
    if any(o.startswith("pretrain=") for o in overrides):
        return "pretrain"
    return "plain"


@dataclass(frozen=True)
class Sweep:
    dataset: str
    runs_dir: Path

    @property
    def base(self) -> Path:
        return ROOT / "benchmarks" / "recipes" / f"quality_{self.dataset}.yaml"

    def run_dir(self, variant: str, seed: int) -> Path:
        return self.runs_dir / self.dataset / variant / f"seed{seed}"

    def job(self, variant: str, seed: int) -> Job:
        overrides = (f"seed={seed}", *VARIANTS[self.dataset][variant])
        return Job(self.base, self.run_dir(variant, seed), overrides)

    def metrics(self, variant: str, seed: int) -> dict | None:
        path = self.run_dir(variant, seed) / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else None

    def sweep_jobs(self) -> list[Job]:
        return [self.job(variant, SWEEP_SEED) for variant in VARIANTS[self.dataset]]

    def chosen(self, complete: bool = True) -> dict[str, str] | None:
        """The best variant overall and of each family on validation. With ``complete``
        (the default, which decides the seed runs) only once every variant has finished;
        otherwise among the finished ones (None if there are none)."""
        monitor = MONITOR[self.dataset]
        scores = {}
        for variant in VARIANTS[self.dataset]:
            found = self.metrics(variant, SWEEP_SEED)
            if found is None:
                if complete:
                    return None
                continue
            scores[variant] = found["valid"][monitor]
        if not scores:
            return None
        choice = {"best": max(scores, key=lambda v: scores[v])}
        for name in FAMILIES:
            members = [v for v in scores if family(VARIANTS[self.dataset][v]) == name]
            if members:
                choice[name] = max(members, key=lambda v: scores[v])
        return choice

    def progress(self, variant: str, seed: int) -> dict | None:
        """How far an unfinished run got: epochs done and its best validation score so
        far (from its fine-tuning history), or None if it has no history."""
        path = self.run_dir(variant, seed) / "finetune" / "history.csv"
        if not path.exists():
            return None
        key = f"valid {MONITOR[self.dataset]}"
        with open(path, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get(key)]
        if not rows:
            return None
        best = max(rows, key=lambda row: float(row[key]))
        return {"epochs": len(rows), "best_epoch": int(best["epoch"]), "valid": float(best[key])}

    def seed_jobs(self) -> list[Job]:
        choice = self.chosen()
        if choice is None:
            return []
        variants = dict.fromkeys(choice.values())
        return [self.job(variant, seed) for variant in variants for seed in MORE_SEEDS]


def seed_stats(values: list[float]) -> dict[str, float]:
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "n": len(values)}


def summarize(sweep: Sweep, command: str, machine: dict | None = None) -> dict:
    monitor = MONITOR[sweep.dataset]
    runs = {}
    for variant, overrides in VARIANTS[sweep.dataset].items():
        found = {seed: sweep.metrics(variant, seed) for seed in (SWEEP_SEED, *MORE_SEEDS)}
        runs[variant] = {
            "overrides": list(overrides),
            "family": family(overrides),
            "seeds": {str(seed): m for seed, m in found.items() if m is not None},
        }
        if found[SWEEP_SEED] is None:
            runs[variant]["unfinished"] = sweep.progress(variant, SWEEP_SEED)
    choice = sweep.chosen(complete=False) or {}
    chosen = {}
    for role, variant in choice.items():
        seeds = runs[variant]["seeds"]
        test_keys = next(iter(seeds.values()))["test"].keys()
        chosen[role] = {
            "variant": variant,
            "test": {k: seed_stats([m["test"][k] for m in seeds.values()]) for k in test_keys},
            "valid": {k: seed_stats([m["valid"][k] for m in seeds.values()]) for k in test_keys},
        }
    return {
        "dataset": sweep.dataset,
        "monitor": monitor,
        "base_recipe": str(sweep.base.relative_to(ROOT)),
        "command": command,
        "machine": machine or machine_info(),
        "published": PUBLISHED[sweep.dataset],
        "chosen": chosen,
        "runs": runs,
    }


def _cell(stats: dict) -> str:
    return f"{stats['mean']:.4f} ± {stats['std']:.4f} (n={stats['n']})"


def markdown(summary: dict) -> str:
    dataset, monitor = summary["dataset"], summary["monitor"]
    published = summary["published"]
    lines = [
        f"# Next-item quality on {dataset}: sweep, choice on validation {monitor}, seeds",
        "",
        f"Command: `{summary['command']}`. Base recipe `{summary['base_recipe']}`; machine: "
        f"{json.dumps(summary['machine'])}. Several runs shared each GPU, so seconds are "
        "wall time under sharing.",
        "",
    ]
    chosen = summary["chosen"]
    if chosen:
        metric = published["metric"]
        lines += [
            "## Chosen on validation (test metrics, mean ± std over the seeds run, n of them)",
            "",
            f"| role | variant | test {metric} | test recall@{metric.split('@')[1]} |",
            "|---|---|---|---|",
        ]
        recall = "recall@" + metric.split("@")[1]
        for role, entry in chosen.items():
            title = "best overall" if role == "best" else FAMILIES[role]
            lines.append(
                f"| {title} | `{entry['variant']}` | {_cell(entry['test'][metric])} | "
                f"{_cell(entry['test'][recall])} |"
            )
        best = chosen["best"]["test"][metric]["mean"]
        verdict = "met" if best >= published["target"] else "not met"
        lines += [
            "",
            f"Target {metric} >= {published['target']}: **{verdict}** (best {best:.4f}).",
            "",
            "Published (other papers' preprocessing and code; see docs/protocol.md):",
            "",
        ]
        lines += [f"- {name}: {value}" for name, value in published["rows"].items()]
        lines.append("")
    lines += [
        "## Sweep (seed 0)",
        "",
        "`s` is the wall time of the run's last process: a run stopped at the end of one "
        "machine lease and resumed in the next counts only its resumed part.",
        "",
        f"| variant | family | valid {monitor} | test {monitor} | best epoch | s |",
        "|---|---|---|---|---|---|",
    ]
    for variant, entry in summary["runs"].items():
        found = entry["seeds"].get(str(SWEEP_SEED))
        if found is None:
            progress = entry.get("unfinished")
            status = (
                "not run"
                if progress is None
                else f"unfinished: {progress['valid']:.4f} at epoch {progress['best_epoch']} "
                f"(best of the {progress['epochs']} epochs run)"
            )
            lines.append(f"| `{variant}` | {entry['family']} | {status} | - | - | - |")
            continue
        lines.append(
            f"| `{variant}` | {entry['family']} | {found['valid'][monitor]:.4f} | "
            f"{found['test'][monitor]:.4f} | {found['best_epoch']} | {found['seconds']:.0f} |"
        )
    lines += ["", "Overrides of each variant:", ""]
    lines += [
        f"- `{variant}`: `{' '.join(entry['overrides'])}`"
        for variant, entry in summary["runs"].items()
    ]
    return "\n".join(lines) + "\n"


def seeds_text(stats: dict) -> str:
    if stats["n"] == 1:
        return f"{stats['mean']:.4f} with seed 0 alone"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f} over {stats['n']} seeds"


def best_recipe_text(sweep: Sweep, variant: str, summary: dict) -> str:
    """The base recipe with the chosen variant's overrides applied, as a shipped recipe."""
    from clue_fw.recipe import apply_overrides, read_recipe_file

    data = apply_overrides(read_recipe_file(sweep.base), list(VARIANTS[sweep.dataset][variant]))
    data["name"] = f"{sweep.dataset}_best"
    stats = summary["chosen"]["best"]["test"][summary["published"]["metric"]]
    header = (
        f"# Best next-item recipe on {sweep.dataset}, chosen on validation "
        f"{summary['monitor']} by benchmarks/quality.py\n"
        f"# (variant {variant}; test {summary['published']['metric']} "
        f"{seeds_text(stats)}, docs/results/{sweep.dataset}_best.md).\n"
        "# Do not edit by hand: re-run the script. Data: $CLUE_DATA_DIR/"
        f"{data['data']['path']} (see README: Getting the data).\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False)


def write_outputs(sweep: Sweep, command: str, machine: dict | None = None) -> dict:
    summary = summarize(sweep, command, machine)
    results = ROOT / "docs" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{sweep.dataset}_best.json").write_text(json.dumps(summary, indent=1) + "\n")
    (results / f"{sweep.dataset}_best.md").write_text(markdown(summary))
    if summary["chosen"]:
        variant = summary["chosen"]["best"]["variant"]
        (ROOT / "recipes" / f"{sweep.dataset}_best.yaml").write_text(
            best_recipe_text(sweep, variant, summary)
        )
    return summary


def previous_run(sweep: Sweep) -> dict:
    """The command and machine of the sweep, kept when the outputs are only rebuilt."""
    path = ROOT / "docs" / "results" / f"{sweep.dataset}_best.json"
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {key: previous[key] for key in ("command", "machine") if key in previous}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("datasets", nargs="+", choices=sorted(VARIANTS))
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--gpus", type=int, default=None, help="Default: all visible.")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/quality"))
    parser.add_argument("--deadline", type=float, default=None, help="Seconds; see above.")
    parser.add_argument("--only", nargs="*", help="Run only these variants (sweep step).")
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()
    command = "python benchmarks/quality.py " + " ".join(sys.argv[1:])
    sweeps = [Sweep(dataset, args.runs_dir) for dataset in args.datasets]
    if not args.summarize_only:
        gpus = visible_gpus() if args.gpus is None else args.gpus
        started = time.perf_counter()
        jobs = [
            job
            for sweep in sweeps
            for job in sweep.sweep_jobs()
            if not args.only or job.run_dir.parent.name in args.only
        ]
        run_jobs(jobs, args.jobs, gpus, args.deadline)
        left = None if args.deadline is None else args.deadline - (time.perf_counter() - started)
        run_jobs([job for sweep in sweeps for job in sweep.seed_jobs()], args.jobs, gpus, left)
    for sweep in sweeps:
        kept = previous_run(sweep) if args.summarize_only else {}
        summary = write_outputs(sweep, kept.get("command", command), kept.get("machine"))
        print(markdown(summary))


if __name__ == "__main__":
    main()
