"""Run many ``clue run`` jobs at once, spread over the GPUs of one machine.

Every benchmark sweep in this folder runs its runs through :func:`run_jobs`. A job is one
recipe with its ``--set`` overrides and its run directory. Each job runs as
``python -m clue_fw run RECIPE --set ... --out DIR`` in its own process, ``workers`` at a
time; with ``gpus > 1`` the processes are spread over the GPUs (``CUDA_VISIBLE_DEVICES``
names one GPU per process, the least busy one when the job starts). A job whose
``metrics.json`` exists is skipped and an interrupted one resumed (``--resume``), so a
sweep can be repeated until every run is done. ``deadline_s`` stops starting jobs once
that many seconds have passed (jobs already running are let finish by the caller's own
time limit), so a sweep inside a fixed lease ends with whole runs rather than none.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Job:
    """One run: ``clue run recipe --set override ... --out run_dir``."""

    recipe: Path
    run_dir: Path
    overrides: tuple[str, ...] = ()
    #: Files (globs under ``run_dir``) deleted once the run has finished: weights a study
    #: does not read again. At 1M items each checkpoint is about 0.8 GB, and a study of
    #: hundreds of runs filled a 64 GiB disk (ENOSPC) before it did this.
    prune: tuple[str, ...] = ()


@dataclass
class JobResult:
    job: Job
    status: str  # "done" (finished now), "skipped" (finished before), "failed", "not started"
    exit_code: int | None = None
    seconds: float = 0.0
    gpu: int | None = None


@dataclass
class _GpuSlots:
    """How many running processes each GPU has; a new process takes the least busy one."""

    count: int
    busy: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.busy = [0] * self.count

    def take(self) -> int:
        with self.lock:
            gpu = min(range(self.count), key=lambda index: self.busy[index])
            self.busy[gpu] += 1
            return gpu

    def give_back(self, gpu: int) -> None:
        with self.lock:
            self.busy[gpu] -= 1


def job_command(job: Job) -> list[str]:
    command = [sys.executable, "-m", "clue_fw", "run", str(job.recipe)]
    for override in job.overrides:
        command += ["--set", override]
    if (job.run_dir / "recipe.yaml").exists():
        command += ["--resume", str(job.run_dir)]
    else:
        command += ["--out", str(job.run_dir)]
    return command


def prune_files(job: Job) -> None:
    """Delete ``job.prune``'s files of a finished run (``metrics.json`` says it finished, so
    the pool never resumes it and nothing reads them)."""
    for pattern in job.prune:
        for path in job.run_dir.glob(pattern):
            if path.is_file():
                path.unlink()


def run_job(
    job: Job, gpus: _GpuSlots | None, started: float, deadline_s: float | None
) -> JobResult:
    if (job.run_dir / "metrics.json").exists():
        return JobResult(job, "skipped", 0)
    if deadline_s is not None and time.perf_counter() - started > deadline_s:
        return JobResult(job, "not started")
    job.run_dir.parent.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ)
    gpu = gpus.take() if gpus is not None else None
    if gpu is not None:
        environment["CUDA_VISIBLE_DEVICES"] = str(gpu)
    began = time.perf_counter()
    try:
        with open(job.run_dir.parent / f"{job.run_dir.name}.stderr.log", "w") as log:
            code = subprocess.call(
                job_command(job), stdout=subprocess.DEVNULL, stderr=log, env=environment
            )
    finally:
        if gpu is not None and gpus is not None:
            gpus.give_back(gpu)
    status = "done" if code == 0 else "failed"
    if code == 0:
        prune_files(job)
    return JobResult(job, status, code, time.perf_counter() - began, gpu)


def run_jobs(
    jobs: Sequence[Job],
    workers: int,
    gpus: int = 0,
    deadline_s: float | None = None,
    quiet: bool = False,
) -> list[JobResult]:
    """Run ``jobs``, ``workers`` at a time (over ``gpus`` GPUs when > 0); report each."""
    started = time.perf_counter()
    slots = _GpuSlots(gpus) if gpus > 0 else None
    results: list[JobResult] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(run_job, job, slots, started, deadline_s) for job in jobs]
        for future in futures:
            result = future.result()
            results.append(result)
            if quiet or result.status in ("skipped", "not started"):
                continue
            where = f" on GPU {result.gpu}" if result.gpu is not None else ""
            status = (
                "ok"
                if result.status == "done"
                else f"FAILED (exit {result.exit_code}, see {result.job.run_dir}.stderr.log)"
            )
            print(f"{result.job.run_dir}: {status} in {result.seconds:.0f} s{where}", flush=True)
    skipped = sum(result.status == "not started" for result in results)
    if skipped:
        print(f"{skipped} runs not started: the {deadline_s:.0f} s deadline passed", flush=True)
    print(f"all runs: {time.perf_counter() - started:.0f} s wall", flush=True)
    return results


def visible_gpus() -> int:
    """GPUs this process can use (0 without CUDA), without starting CUDA in this process."""
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return len([line for line in output.splitlines() if line.strip()])
