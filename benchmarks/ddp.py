"""Measure data-parallel scaling: ``torchrun --nproc_per_node N`` against one process.

    CLUE_DATA_DIR=... python benchmarks/ddp.py [--users 1000000 --items 1000000] \
        [--nproc 2] [--device cuda] [--budget-s 470] [--out docs/results/ddp]
    python benchmarks/ddp.py --cpu-smoke          # the same stages, tiny, gloo on the CPU

    # one GPU: the data-parallel step's own cost (torchrun of one process vs a plain run)
    CLUE_DATA_DIR=... python benchmarks/ddp.py --stages overhead --users 200000 \
        --out docs/results/ddp_overhead

One command runs the chosen stages (``--stages``, default ``synth,small,eval``), in
order, and rewrites ``OUT.md`` and ``OUT.json`` after each, so a run cut off still
leaves what it measured:

1. ``synth_data``: ``clue data synth`` writes the USERS x ITEMS file (once; kept).
2. ``synth_1`` / ``synth_N`` / ``synth_N_local`` (``synth``): ``recipes/synth_1m.yaml``
   on that file, bounded to ``--pretrain-epochs`` CLUE pre-training epochs (default 2:
   the figure is the last one, the first pays for CUDA/cuBLAS start-up) and
   ``--finetune-epochs`` next-item fine-tuning epochs with the recipe's sampled softmax
   (default 1: it follows a full evaluation, so it is warm). One process on one GPU,
   then N processes on N GPUs with the global BatchNorm, then N processes with
   ``pretrain.objective.batchnorm=local`` (each process's own statistics, no
   collective in the forward pass; one process has no such difference).
3. ``small_1`` / ``small_N`` (``small``): ``recipes/ml50_dropout.yaml`` (ML-1M) end to end.
4. ``eval_same_weights`` (``eval``): ``clue evaluate`` of ONE checkpoint in one process
   and in N; the metric dicts must be equal, bit for bit.
5. ``synth_1`` / ``synth_torchrun1`` / ``synth_torchrun1_local`` (``overhead``, one
   GPU): the synthetic run plain, then under ``torchrun --nproc_per_node 1`` with
   ``CLUE_DATA_PARALLEL=1``, which runs the data-parallel step in a process group of one
   (sharded step, global views, overlapped gradient all-reduce, global BatchNorm; then
   with ``batchnorm=local``). The difference in ms per step is what that machinery
   costs without sharing any work (target: at most 5%).

Epoch figures are the framework's own: the ``seconds`` (training only) and
``eval seconds`` columns of each stage's ``history.csv``; the whole process's wall time
(interpreter start, data loading, everything) is reported beside them. While a stage
runs, ``nvidia-smi`` samples every GPU's utilisation and memory every 500 ms. Every
stage has a timeout (the smaller of its cap and the budget left); a stage that fails or
runs out of time is recorded as such, and the next one starts. ``NCCL_NVLS_ENABLE=0``
is always set.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP = 1.8
TARGET_OVERHEAD_PCT = 5.0
"""The most that the data-parallel step may cost a one-process run, in % of its step."""
STAGES = ("synth", "small", "eval", "overhead")
LOCAL_BATCHNORM = "pretrain.objective.batchnorm=local"
FORCE_ENV = {"CLUE_DATA_PARALLEL": "1"}
#: Seed-to-seed standard deviation of a small recipe's test metric: (metric, std, source).
SEED_NOISE = {
    "recipes/ml50_dropout.yaml": (
        "test ndcg@10",
        0.0030,
        "docs/results/ml1m_history_all.md, 3 seeds",
    ),
}
NCCL_ENV = {"NCCL_NVLS_ENABLE": "0"}
Record = dict[str, Any]

# --------------------------------------------------------------------------- settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000, help="Synthetic users.")
    parser.add_argument("--items", type=int, default=1_000_000, help="Synthetic items.")
    parser.add_argument("--nproc", type=int, default=2, help="Processes (GPUs) to compare.")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--gpus", default="0,1", help="CUDA_VISIBLE_DEVICES of the N runs.")
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--synth-recipe", default="recipes/synth_1m.yaml")
    parser.add_argument("--small-recipe", default="recipes/ml50_dropout.yaml")
    parser.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        help="Extra recipe override for the synthetic runs (repeatable).",
    )
    parser.add_argument(
        "--small-set",
        action="append",
        default=[],
        help="Extra recipe override for the small recipe's runs (repeatable).",
    )
    parser.add_argument("--omp-threads", type=int, default=None, help="OMP_NUM_THREADS.")
    parser.add_argument("--budget-s", type=float, default=470.0, help="Seconds for everything.")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "ddp")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "ddp")
    parser.add_argument("--note", default="", help="A paragraph above the tables.")
    parser.add_argument(
        "--stages",
        default="synth,small,eval",
        help="Which of synth, small, eval, overhead to run, comma-separated, in that order "
        "(default: synth,small,eval; overhead needs one GPU only).",
    )
    parser.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="Everything tiny on the CPU with gloo (2,000 users x 1,000 items, "
        "recipes/quickstart.yaml as the small recipe): checks the script in ~2 minutes.",
    )
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        args.device = "cpu"
        if args.users == 1_000_000:
            args.users = 2000
        if args.items == 1_000_000:
            args.items = 1000
        if args.small_recipe == "recipes/ml50_dropout.yaml":
            args.small_recipe = "recipes/quickstart.yaml"
        args.extra = ["finetune.head.negatives=128", *args.extra]
        args.small_set = ["pretrain.train.epochs=2", "finetune.train.epochs=8", *args.small_set]
        args.pretrain_epochs = min(args.pretrain_epochs, 2)
        if args.out == ROOT / "docs" / "results" / "ddp":
            args.out = args.work / "smoke"
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        parser.error(f"--stages: unknown {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if args.nproc < 2:
        parser.error("--nproc must be at least 2 (the one-process runs are always made)")
    if args.omp_threads is None:
        args.omp_threads = 1 if args.device == "cpu" else 4
    return args


def data_root() -> Path:
    return Path(os.environ.get("CLUE_DATA_DIR", ROOT.parent / "shared" / "data"))


def synth_relative(users: int, items: int) -> str:
    """The synthetic file's path under the data root (the recipe's own at 1M x 1M)."""
    if users == items == 1_000_000:
        return "synth/synth_1m.txt"
    return f"synth/synth_{users}x{items}.txt"


# --------------------------------------------------------------------------- one stage


class GpuSampler:
    """``nvidia-smi`` sampling every GPU's utilisation and memory every 500 ms."""

    QUERY = ["--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader"]

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GpuSampler:
        tool = shutil.which("nvidia-smi")
        if tool is not None:
            with open(self.path, "wb") as sink:
                self.process = subprocess.Popen(
                    [tool, *self.QUERY, "-lms", "500"], stdout=sink, stderr=subprocess.DEVNULL
                )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def summary(self) -> dict[str, Any]:
        """Per GPU: samples, mean and max utilisation (%), max memory used (MiB)."""
        if self.process is None:
            return {"note": "no nvidia-smi on this machine"}
        found: dict[str, list[tuple[float, float]]] = {}
        for line in self.path.read_text(errors="replace").splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 3:
                continue
            try:
                util = float(parts[1].split()[0])
                memory = float(parts[2].split()[0])
            except (ValueError, IndexError):
                continue
            found.setdefault(parts[0], []).append((util, memory))
        return {
            gpu: {
                "samples": len(rows),
                "util_mean": round(sum(u for u, _ in rows) / len(rows), 1),
                "util_max": max(u for u, _ in rows),
                "memory_max_mib": max(m for _, m in rows),
            }
            for gpu, rows in sorted(found.items())
        }


def run_stage(
    name: str, command: list[str], env: dict[str, str], timeout: float, work: Path
) -> Record:
    """Run ``command`` (with ``env`` on top of ours) for at most ``timeout`` seconds,
    sampling the GPUs; its output goes to ``WORK/logs/NAME.log``."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    shown = " ".join(f"{k}={v}" for k, v in env.items())
    text = f"{shown} {shlex.join(command)}".strip()
    print(f"[{name}] {text} (timeout {timeout:.0f} s)", file=sys.stderr, flush=True)
    result: Record = {"command": text, "timeout_s": round(timeout), "log": str(log)}
    started = time.perf_counter()
    with GpuSampler(logs / f"{name}.gpu.csv") as sampler, open(log, "wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # torchrun's workers die with it on a timeout
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            code = None
    result["wall_s"] = round(time.perf_counter() - started, 2)
    result["gpu"] = sampler.summary()
    if code == 0:
        result["status"] = "ok"
    else:
        result["status"] = "timeout" if code is None else "failed"
        result["exit"] = code
        tail = log.read_text(errors="replace").strip().splitlines()[-12:]
        result["error"] = "\n".join(tail)[-2000:]
    print(f"[{name}] {result['status']} in {result['wall_s']} s", file=sys.stderr, flush=True)
    return result


def read_history(run_dir: Path, stage: str) -> list[dict[str, Any]]:
    """The rows of ``RUN/STAGE/history.csv``, numbers as floats (missing: absent)."""
    path = run_dir / stage / "history.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as file:
        for raw in csv.DictReader(file):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value in ("", None):
                    continue
                try:
                    row[key] = float(value)
                except ValueError:
                    row[key] = value
            rows.append(row)
    return rows


def run_facts(run_dir: Path) -> Record:
    """Per-epoch seconds (training only, the framework's), evaluation seconds and the
    metrics of a run directory, from its history.csv files and metrics.json."""
    pretrain = read_history(run_dir, "pretrain")
    finetune = read_history(run_dir, "finetune")
    facts: Record = {
        "pretrain_epoch_s": [r["seconds"] for r in pretrain if "seconds" in r],
        "finetune_epoch_s": [r["seconds"] for r in finetune if "seconds" in r],
        "eval_s": [r["eval seconds"] for r in finetune if "eval seconds" in r],
        "finetune_epochs": len([r for r in finetune if r.get("epoch", 0) > 0]),
    }
    for stage, rows in (("pretrain", pretrain), ("finetune", finetune)):
        step = _ms_per_step(run_dir, stage, [r for r in rows if "seconds" in r])
        if step is not None:
            facts[f"{stage}_steps"], facts[f"{stage}_ms_per_step"] = step
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        facts.update(
            valid=metrics.get("valid"),
            test=metrics.get("test"),
            best_epoch=metrics.get("best_epoch"),
            run_s=metrics.get("seconds"),
        )
    return facts


def _ms_per_step(run_dir: Path, stage: str, rows: list[dict[str, Any]]) -> tuple[int, float] | None:
    """(optimiser steps, milliseconds per step) of the stage's last epoch, from its rows
    per second and the global batch size in the run's recipe.yaml."""
    import yaml

    recipe_path = run_dir / "recipe.yaml"
    if not rows or not recipe_path.is_file() or "seq/s" not in rows[-1]:
        return None
    try:
        batch = int(yaml.safe_load(recipe_path.read_text())[stage]["train"]["batch_size"])
    except (KeyError, TypeError, ValueError, yaml.YAMLError):
        return None
    seconds = float(rows[-1]["seconds"])
    steps = max(1, -(-round(float(rows[-1]["seq/s"]) * seconds) // batch))
    return steps, round(seconds * 1000 / steps, 2)


# --------------------------------------------------------------------------- the plan


class Bench:
    """The stages, their commands and the record they fill."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.perf_counter()
        self.work: Path = args.work
        self.work.mkdir(parents=True, exist_ok=True)
        self.record: Record = {
            "machine": machine(),
            "command": shlex.join(["python", "benchmarks/ddp.py", *sys.argv[1:]]),
            "settings": {
                "users": args.users,
                "items": args.items,
                "nproc": args.nproc,
                "device": args.device,
                "pretrain_epochs": args.pretrain_epochs,
                "finetune_epochs": args.finetune_epochs,
                "synth_recipe": args.synth_recipe,
                "small_recipe": args.small_recipe,
                "extra_overrides": args.extra,
                "small_overrides": args.small_set,
                # the one-GPU stages alone run on the first GPU only
                "env": self.env(1 if args.stages == "overhead" else args.nproc),
                "budget_s": args.budget_s,
                "stages": args.stages,
            },
            "stages": {},
            "note": args.note,
        }

    # ------------------------------------------------------------ commands

    def env(self, processes: int, forced: bool = False) -> dict[str, str]:
        """The environment of a run of ``processes`` processes (``forced``: a torchrun
        world of one that runs the data-parallel step, ``CLUE_DATA_PARALLEL=1``)."""
        env = {**NCCL_ENV, "OMP_NUM_THREADS": str(self.args.omp_threads)}
        if self.args.device == "cuda":
            gpus = self.args.gpus.split(",")
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[:processes])
        if forced:
            env.update(FORCE_ENV)
        return env

    def clue(self, processes: int, *args: str, torchrun: bool = False) -> list[str]:
        """``python -m clue_fw ARGS``, or torchrun of it (several processes, or
        ``torchrun``)."""
        if processes == 1 and not torchrun:
            return [sys.executable, "-m", "clue_fw", *args]
        launcher = shutil.which(
            "torchrun", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        )
        start = [launcher] if launcher else [sys.executable, "-m", "torch.distributed.run"]
        return [*start, "--standalone", f"--nproc_per_node={processes}", "-m", "clue_fw", *args]

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.started)

    def stage(
        self, name: str, command: list[str], env: dict[str, str], cap: float, least: float = 20
    ) -> Record:
        """Run one stage within the budget left; record it; rewrite the results."""
        left = self.left()
        if left < least:
            result: Record = {
                "status": "skipped",
                "error": f"budget spent ({left:.0f} s left)",
                "command": shlex.join(command),
            }
        else:
            result = run_stage(name, command, env, min(cap, left), self.work)
        self.record["stages"][name] = result
        self.write()
        return result

    # ------------------------------------------------------------ stages

    def synth_data(self) -> bool:
        relative = synth_relative(self.args.users, self.args.items)
        path = data_root() / relative
        if path.is_file():
            self.record["stages"]["synth_data"] = {"status": "ok", "note": f"{path} existed"}
            self.write()
            return True
        path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "clue_fw", "data", "synth", "--users", str(self.args.users),
            "--items", str(self.args.items), "--seed", "0", "--out", str(path),
        ]  # fmt: skip
        return self.stage("synth_data", command, {}, cap=150)["status"] == "ok"

    def synth_overrides(self) -> list[str]:
        return [
            f"data.path={synth_relative(self.args.users, self.args.items)}",
            f"pretrain.train.epochs={self.args.pretrain_epochs}",
            f"finetune.train.epochs={self.args.finetune_epochs}",
            *(["device=cpu"] if self.args.device == "cpu" else []),
            *self.args.extra,
        ]

    def synth_runs(self) -> None:
        """One process, then N with the global BatchNorm, then N with local BatchNorm."""
        overrides, n = self.synth_overrides(), self.args.nproc
        self.synth_plain()
        self.run_recipe(f"synth_{n}", self.args.synth_recipe, overrides, n, 300)
        local = [*overrides, LOCAL_BATCHNORM]
        self.run_recipe(f"synth_{n}_local", self.args.synth_recipe, local, n, 300)

    def synth_plain(self) -> None:
        """``synth_1``, unless this invocation has already measured it."""
        if self.record["stages"].get("synth_1", {}).get("status") != "ok":
            self.run_recipe("synth_1", self.args.synth_recipe, self.synth_overrides(), 1, 300)

    def overhead_runs(self) -> None:
        """One GPU: the plain run against torchrun of one process that runs the
        data-parallel step (global BatchNorm, then local)."""
        overrides = self.synth_overrides()
        self.synth_plain()
        for name, extra in (("synth_torchrun1", []), ("synth_torchrun1_local", [LOCAL_BATCHNORM])):
            self.run_recipe(name, self.args.synth_recipe, [*overrides, *extra], 1, 300, forced=True)

    def small_runs(self) -> None:
        overrides = (["device=cpu"] if self.args.device == "cpu" else []) + self.args.small_set
        for processes in (1, self.args.nproc):
            self.run_recipe(f"small_{processes}", self.args.small_recipe, overrides, processes, 200)

    def run_recipe(
        self,
        name: str,
        recipe: str,
        overrides: list[str],
        processes: int,
        cap: float,
        forced: bool = False,
    ) -> None:
        """``clue run`` of ``recipe``; ``forced``: under torchrun as a data-parallel run
        of ``processes`` (one) with ``CLUE_DATA_PARALLEL=1``."""
        out = self.work / name
        args = ["run", recipe, "--out", str(out), "--overwrite"]
        for override in overrides:
            args += ["--set", override]
        command = self.clue(processes, *args, torchrun=forced)
        result = self.stage(name, command, self.env(processes, forced), cap)
        result.update(processes=processes, run_dir=str(out), **run_facts(out))
        self.write()

    def eval_same_weights(self) -> None:
        """``clue evaluate`` of one checkpoint in 1 and in N processes: equal dicts?"""
        for source, splits in (("small_1", ["valid", "test"]), ("synth_1", ["valid"])):
            run_dir = self.work / source
            if not (run_dir / "metrics.json").is_file():
                continue
            name = f"eval_same_weights_{source}"
            found: Record = {"run_dir": str(run_dir), "splits": splits, "checkpoint": "best"}
            results = {}
            for processes in (1, self.args.nproc):
                out = self.work / f"{name}_{processes}.json"
                out.unlink(missing_ok=True)
                args = ["evaluate", str(run_dir), "--checkpoint", "best", "--out", str(out)]
                for split in splits:
                    args += ["--split", split]
                step = self.stage(
                    f"{name}_{processes}", self.clue(processes, *args), self.env(processes), 150
                )
                found[f"stage_{processes}"] = step
                if step["status"] == "ok" and out.is_file():
                    results[processes] = json.loads(out.read_text())
            if len(results) == 2:
                one, many = results[1], results[self.args.nproc]
                found["equal"] = all(one[s] == many[s] for s in splits)
                found["differences"] = {
                    f"{s} {k}": [repr(v), repr(many[s].get(k))]
                    for s in splits
                    for k, v in one[s].items()
                    if many[s].get(k) != v
                }
                found["metrics_1"] = {s: one[s] for s in splits}
                found["metrics_n"] = {s: many[s] for s in splits}
                run_metrics = json.loads((run_dir / "metrics.json").read_text())
                found["equal_to_run_metrics"] = all(run_metrics[s] == one[s] for s in splits)
                found["eval_s"] = {1: one.get("seconds"), self.args.nproc: many.get("seconds")}
            self.record.setdefault("equality", {})[source] = found
            self.write()

    # ------------------------------------------------------------ output

    def write(self) -> None:
        out: Path = self.args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        self.record["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        out.with_suffix(".json").write_text(json.dumps(self.record, indent=2) + "\n")
        out.with_suffix(".md").write_text(render(self.record))


def machine() -> dict[str, Any]:
    """What ran the measures: GPUs (from nvidia-smi), CPU cores, torch, date."""
    gpus = None
    tool = shutil.which("nvidia-smi")
    if tool is not None:
        try:
            found = subprocess.run(
                [tool, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            gpus = found.stdout.strip().splitlines()
        except (OSError, subprocess.SubprocessError):
            gpus = None
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - the runs would fail too
        torch_version = "not importable"
    return {
        "gpus": gpus,
        "cpu_cores": os.cpu_count(),
        "torch": torch_version,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --------------------------------------------------------------------------- the table


def _last(values: list[float] | None) -> float | None:
    return values[-1] if values else None


def _median(values: list[float] | None) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _ratio(one: float | None, many: float | None) -> float | None:
    if one is None or many is None or many <= 0:
        return None
    return round(one / many, 2)


def _show(value: Any, unit: str = " s") -> str:
    return "-" if value is None else f"{value}{unit}"


def speed_rows(record: Record) -> list[list[str]]:
    """Rows of the scaling table: measure, 1 process, N processes, speed-up, target."""
    stages, n = record["stages"], record["settings"]["nproc"]
    s1, sn = stages.get("synth_1", {}), stages.get(f"synth_{n}", {})
    m1, mn = stages.get("small_1", {}), stages.get(f"small_{n}", {})
    epochs = record["settings"]["pretrain_epochs"]
    local = stages.get(f"synth_{n}_local", {})
    rows: list[tuple[str, Any, Any, float | None]] = [
        (
            f"CLUE pre-training epoch {epochs} (synthetic), training seconds",
            _last(s1.get("pretrain_epoch_s")),
            _last(sn.get("pretrain_epoch_s")),
            TARGET_SPEEDUP,
        ),
        (
            f"CLUE pre-training epoch {epochs} (synthetic), local BatchNorm in the "
            "N processes, training seconds",
            _last(s1.get("pretrain_epoch_s")),
            _last(local.get("pretrain_epoch_s")),
            TARGET_SPEEDUP,
        ),
        (
            "next-item fine-tuning epoch, sampled softmax (synthetic), training seconds",
            _last(s1.get("finetune_epoch_s")),
            _last(sn.get("finetune_epoch_s")),
            TARGET_SPEEDUP,
        ),
        (
            "full-ranking validation of every user (synthetic, before fine-tuning)",
            _first(s1.get("eval_s")),
            _first(sn.get("eval_s")),
            None,
        ),
        ("synthetic run, whole process (wall)", s1.get("wall_s"), sn.get("wall_s"), None),
        ("small recipe end to end, whole process (wall)", m1.get("wall_s"), mn.get("wall_s"), None),
        (
            "small recipe, median pre-training epoch",
            _median(m1.get("pretrain_epoch_s")),
            _median(mn.get("pretrain_epoch_s")),
            None,
        ),
        (
            "small recipe, median fine-tuning epoch",
            _median(m1.get("finetune_epoch_s")),
            _median(mn.get("finetune_epoch_s")),
            None,
        ),
    ]
    table = []
    for what, one, many, target in rows:
        ratio = _ratio(one, many)
        met = "-" if ratio is None or target is None else ("yes" if ratio >= target else "no")
        shown_target = f">= {target}x" if target else "-"
        ratio_text = "-" if ratio is None else f"{ratio}x"
        table.append([what, _show(one), _show(many), ratio_text, shown_target, met])
    return table


def _first(values: list[float] | None) -> float | None:
    return values[0] if values else None


def quality_rows(record: Record) -> list[list[str]]:
    stages, n = record["stages"], record["settings"]["nproc"]
    rows = []
    pairs = (("synth", "synth_1", f"synth_{n}"), ("synth local BatchNorm", "synth_1",
             f"synth_{n}_local"), ("small", "small_1", f"small_{n}"))  # fmt: skip
    for base, first, second in pairs:
        one, many = stages.get(first, {}), stages.get(second, {})
        if base.endswith("BatchNorm") and not many:
            continue
        for split in ("valid", "test"):
            a, b = one.get(split) or {}, many.get(split) or {}
            for key in sorted(set(a) | set(b)):
                x, y = a.get(key), b.get(key)
                diff = "-" if x is None or y is None else f"{y - x:+.4f}"
                rows.append([f"{base} {split} {key}", _fmt(x), _fmt(y), diff])
        if one.get("best_epoch") is not None or many.get("best_epoch") is not None:
            rows.append(
                [
                    f"{base} best epoch / epochs run",
                    f"{one.get('best_epoch')} / {one.get('finetune_epochs')}",
                    f"{many.get('best_epoch')} / {many.get('finetune_epochs')}",
                    "-",
                ]
            )
    return rows


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


OVERHEAD_RUNS = (
    ("global BatchNorm", "synth_torchrun1"),
    ("local BatchNorm", "synth_torchrun1_local"),
)
"""The one-GPU data-parallel runs (torchrun of one process, ``CLUE_DATA_PARALLEL=1``)."""


def overhead_pct(plain: float | None, forced: float | None) -> float | None:
    """How much longer (%) the data-parallel run's figure is than the plain run's."""
    if plain is None or forced is None or plain <= 0:
        return None
    return round((forced / plain - 1) * 100, 1)


def overhead_rows(record: Record) -> list[list[str]]:
    """Rows of the one-GPU table: measure, variant, plain, torchrun of one, overhead,
    target, met (the target holds for the time of a step)."""
    stages = record["stages"]
    plain = stages.get("synth_1", {})
    epochs = record["settings"]["pretrain_epochs"]
    measures = (
        ("CLUE pre-training step (synthetic)", "pretrain_ms_per_step", " ms", True),
        ("next-item fine-tuning step (synthetic)", "finetune_ms_per_step", " ms", True),
        (f"CLUE pre-training epoch {epochs}, training seconds", "pretrain_epoch_s", " s", False),
        ("next-item fine-tuning epoch, training seconds", "finetune_epoch_s", " s", False),
    )
    table = []
    for what, key, unit, targeted in measures:
        for variant, name in OVERHEAD_RUNS:
            forced = stages.get(name, {})
            mine, theirs = plain.get(key), forced.get(key)
            if isinstance(mine, list):
                mine, theirs = _last(mine), _last(theirs)
            extra = overhead_pct(mine, theirs)
            met = "-"
            if targeted and extra is not None:
                met = "yes" if extra <= TARGET_OVERHEAD_PCT else "no"
            table.append(
                [
                    what,
                    variant,
                    _show(mine, unit),
                    _show(theirs, unit),
                    "-" if extra is None else f"{extra:+.1f}%",
                    f"<= {TARGET_OVERHEAD_PCT:g}%" if targeted else "-",
                    met,
                ]
            )
    return table


def render(record: Record) -> str:
    chosen = record["settings"].get("stages", "synth,small,eval").split(",")
    lines = _header_lines(record)
    if "overhead" in chosen:
        lines += _overhead_lines(record)
    if {"synth", "small", "eval"} & set(chosen):
        lines += _scaling_lines(record)
        lines += _equality_lines(record)
    lines += _stage_lines(record)
    return "\n".join(lines)


def _header_lines(record: Record) -> list[str]:
    settings, n = record["settings"], record["settings"]["nproc"]
    where = record["machine"]
    gpus = "; ".join(where["gpus"]) if where.get("gpus") else "no GPU"
    chosen = settings.get("stages", "synth,small,eval").split(",")
    title = (
        "# The data-parallel step on one GPU: torchrun of one process against a plain run"
        if chosen == ["overhead"]
        else f"# Data-parallel scaling: {n} processes against 1"
    )
    return [
        title,
        "",
        *([record["note"], ""] if record.get("note") else []),
        f"Machine: {gpus}; {where['cpu_cores']} CPU cores; torch {where['torch']}; "
        f"{where['date']}. Device: {settings['device']}.",
        f"Command: `{record['command']}` ({record.get('elapsed_s', '?')} s).",
        f"Synthetic data: {settings['users']:,} users x {settings['items']:,} items "
        f"(`clue data synth --seed 0`), `{settings['synth_recipe']}` bounded to "
        f"{settings['pretrain_epochs']} pre-training and {settings['finetune_epochs']} "
        "fine-tuning epochs. Small recipe: "
        f"`{settings['small_recipe']}` end to end. Environment of every run: "
        + ", ".join(f"`{k}={v}`" for k, v in settings["env"].items())
        + (
            " (the one-process runs see the first GPU only)."
            if settings["device"] == "cuda"
            else "."
        ),
        "",
        "Epoch figures are the framework's own `seconds` column of `history.csv`: the",
        "training steps of one epoch, without process start, data loading or evaluation.",
        f"The pre-training figure is the last of {settings['pretrain_epochs']} epochs (the "
        "first pays for start-up); the fine-tuning epoch follows a full evaluation, so it "
        "starts warm.",
        "",
    ]


def _overhead_lines(record: Record) -> list[str]:
    lines = [
        "## The data-parallel step on one GPU",
        "",
        "The synthetic run plain (`synth_1`) and under `torchrun --nproc_per_node 1` with "
        "`CLUE_DATA_PARALLEL=1`: a process group of one that runs the whole data-parallel "
        "step (sharded batches, global views, the gradient all-reduce overlapped with the "
        "backward pass, the global BatchNorm's all-reduces, or `batchnorm=local`) and "
        "shares no work. The difference is what that machinery costs a step.",
        "",
        "| measure | data-parallel run | plain | torchrun of 1 | overhead | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in overhead_rows(record)]
    return [*lines, ""]


def _scaling_lines(record: Record) -> list[str]:
    settings, n = record["settings"], record["settings"]["nproc"]
    lines = [
        "## Speed",
        "",
        f"| measure | 1 process | {n} processes | speed-up | target | met |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in speed_rows(record)]
    lines += [
        "",
        "## Quality (valid and test metrics of the runs)",
        "",
        f"| metric | 1 process | {n} processes | difference |",
        "|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in quality_rows(record)]
    noise = SEED_NOISE.get(settings["small_recipe"])
    if noise is not None:
        metric, std, source = noise
        lines += [
            "",
            f"Seed noise of the small recipe: {metric} std {std} over seeds ({source}). "
            "Runs with dropout differ between 1 and N processes for real (each process draws "
            "its own dropout masks, docs/distributed.md), so equal is 'within seed noise'.",
        ]
    lines += ["", "## Time per optimiser step (last epoch)", ""]
    lines += [
        f"| run | pre-training steps, ms/step (1 / {n}) | fine-tuning steps, ms/step (1 / {n}) |",
        "|---|---|---|",
    ]
    runs = (("synth", "synth_1", f"synth_{n}"), ("synth, local BatchNorm", "synth_1",
            f"synth_{n}_local"), ("small", "small_1", f"small_{n}"))  # fmt: skip
    for base, first, second in runs:
        one, many = record["stages"].get(first, {}), record["stages"].get(second, {})
        cells = []
        for stage in ("pretrain", "finetune"):
            steps = one.get(f"{stage}_steps", "-")
            mine, theirs = one.get(f"{stage}_ms_per_step"), many.get(f"{stage}_ms_per_step")
            cells.append(f"{steps} steps, {_show(mine, ' ms')} / {_show(theirs, ' ms')}")
        lines.append(f"| {base} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        f"Each of the {n} processes takes every step of the global batch with 1/{n} of its "
        "rows, then averages the gradients (all-reduce) and runs the whole optimiser update. "
        f"A step scales by {n} only when its rows dominate its time; a step that costs the "
        "same with half the rows (kernel launches, the optimiser over every parameter, the "
        "all-reduce of every gradient) does not get faster: the ms/step columns show "
        "which kind each run's steps are.",
    ]
    return lines


def _equality_lines(record: Record) -> list[str]:
    n = record["settings"]["nproc"]
    lines = ["", "## Evaluation of the same weights", ""]
    equality = record.get("equality") or {}
    if not equality:
        lines.append("Not measured (no finished run to evaluate, or the budget ran out).")
    for source, found in equality.items():
        verdict = {True: "EQUAL, bit for bit", False: "NOT equal"}.get(
            found.get("equal"), "not measured"
        )
        lines.append(
            f"- `{source}` best checkpoint, splits {', '.join(found['splits'])}: 1 process and "
            f"{n} processes: **{verdict}**"
            + (
                f"; the 1-process evaluation also equals the run's metrics.json: "
                f"{found['equal_to_run_metrics']}"
                if "equal_to_run_metrics" in found
                else ""
            )
            + (f"; evaluation seconds {found['eval_s']}" if "eval_s" in found else "")
        )
        for key, (a, b) in (found.get("differences") or {}).items():
            lines.append(f"  - {key}: {a} vs {b}")
    return [*lines, ""]


def _stage_lines(record: Record) -> list[str]:
    lines = [
        "## Stages",
        "",
        "| stage | status | wall | GPU utilisation mean / max %, max memory MiB |",
        "|---|---|---|---|",
    ]
    for name, stage in record["stages"].items():
        gpu = stage.get("gpu") or {}
        if "note" in gpu or not gpu:
            shown = gpu.get("note", "-")
        else:
            shown = "; ".join(
                f"GPU {g}: {v['util_mean']} / {v['util_max']}, {v['memory_max_mib']:.0f}"
                for g, v in gpu.items()
            )
        status = stage.get("status", "?")
        if status != "ok" and stage.get("error"):
            status += ": " + stage["error"].splitlines()[-1][:160].replace("|", "/")
        lines.append(f"| {name} | {status} | {_show(stage.get('wall_s'))} | {shown} |")
    lines += ["", "Exact commands (run from the repository root):", "", "```bash"]
    lines += [
        stage.get("command", "") for stage in record["stages"].values() if stage.get("command")
    ]
    lines += ["```", ""]
    return lines


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    bench.write()
    chosen = args.stages.split(",")
    if "synth" in chosen and bench.synth_data():
        bench.synth_runs()
    if "small" in chosen:
        bench.small_runs()
    if "eval" in chosen:
        bench.eval_same_weights()
    if "overhead" in chosen and bench.synth_data():
        bench.overhead_runs()
    bench.write()
    print(args.out.with_suffix(".md"))
    failed = [n for n, s in bench.record["stages"].items() if s.get("status") != "ok"]
    if failed:
        print(f"stages not ok: {', '.join(failed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
