"""Run many ``clue run`` jobs at once, spread over the GPUs of one machine.

Every benchmark sweep in this folder runs its runs through :func:`run_jobs`. A job is one
recipe with its ``--set`` overrides and its run directory. Each job runs as
``python -m clue_fw run RECIPE --set ... --out DIR`` in its own process, ``workers`` at a
time; with ``gpus > 1`` the processes are spread over the GPUs (``CUDA_VISIBLE_DEVICES``
names one GPU per process, the least busy one when the job starts). Jobs start in the
order given, except that a job waits for the runs it names in ``after`` (a fine-tuning
for its pre-training) and the next job that can start takes its slot: a free slot never
waits while a later job could run, and a job is started as soon as what it needs is
done, ahead of later ones. A job whose
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
    #: Run directories of jobs that must have finished (``metrics.json``) before this one
    #: starts: the pre-training whose encoder a fine-tuning starts from.
    after: tuple[Path, ...] = ()


@dataclass
class JobResult:
    job: Job
    #: "done" (finished now), "skipped" (finished before), "failed", "not started" (the
    #: deadline passed, or a run it needs did not finish: ``reason`` says which)
    status: str
    exit_code: int | None = None
    seconds: float = 0.0
    gpu: int | None = None
    reason: str = ""


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
        return JobResult(job, "not started", reason="the deadline passed")
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


class _Queue:
    """The jobs not started yet, in priority order; hands out the first one whose ``after``
    runs have finished. Thread-safe: the pool's workers share it."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.waiting = list(jobs)
        self.pending = {job.run_dir for job in jobs}
        self.running: set[Path] = set()
        self.finished: set[Path] = set()
        self.lost: dict[Path, str] = {}  # run dir -> why it will not finish in this sweep
        self.changed = threading.Condition()

    def _ready(self, job: Job) -> bool:
        return all(need in self.finished or (need / "metrics.json").exists() for need in job.after)

    def _blocked_by(self, job: Job) -> str | None:
        for need in job.after:
            if need in self.lost:
                return f"{need} {self.lost[need]}"
            if not (
                need in self.finished
                or need in self.running
                or (need / "metrics.json").exists()
                or need in self.pending
            ):
                return f"{need} is not part of this sweep and has not finished"
        return None

    def take(self, expired: bool) -> Job | JobResult | None:
        """The next job to start; a "not started" result for a job that cannot (the deadline
        passed, or a run it needs is lost); None when nothing is left."""
        with self.changed:
            while self.waiting:
                for index, job in enumerate(self.waiting):
                    blocker = self._blocked_by(job)
                    if expired or blocker is not None:
                        del self.waiting[index]
                        self.pending.discard(job.run_dir)
                        self.lost[job.run_dir] = "did not start"
                        self.changed.notify_all()
                        reason = "the deadline passed" if expired else f"it needs {blocker}"
                        return JobResult(job, "not started", reason=reason)
                    if self._ready(job):
                        del self.waiting[index]
                        self.pending.discard(job.run_dir)
                        self.running.add(job.run_dir)
                        return job
                self.changed.wait()  # every waiting job needs a run still going
            return None

    def settle(self, result: JobResult) -> None:
        with self.changed:
            self.running.discard(result.job.run_dir)
            if result.status in ("done", "skipped"):
                self.finished.add(result.job.run_dir)
            else:
                self.lost[result.job.run_dir] = result.status
            self.changed.notify_all()


def run_jobs(
    jobs: Sequence[Job],
    workers: int,
    gpus: int = 0,
    deadline_s: float | None = None,
    quiet: bool = False,
) -> list[JobResult]:
    """Run ``jobs``, ``workers`` at a time (over ``gpus`` GPUs when > 0); report each as it
    ends. Returns the results in the order of ``jobs``."""
    started = time.perf_counter()
    slots = _GpuSlots(gpus) if gpus > 0 else None
    queue = _Queue(jobs)
    by_run: dict[Path, JobResult] = {}
    report = threading.Lock()

    def worker() -> None:
        while True:
            expired = deadline_s is not None and time.perf_counter() - started > deadline_s
            taken = queue.take(expired)
            if taken is None:
                return
            if isinstance(taken, JobResult):
                result = taken
            else:
                try:
                    result = run_job(taken, slots, started, deadline_s)
                except BaseException:
                    queue.settle(JobResult(taken, "failed"))
                    raise
            queue.settle(result)
            with report:
                by_run[result.job.run_dir] = result
                if not quiet:
                    _report(result)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in [pool.submit(worker) for _ in range(max(1, workers))]:
            future.result()
    results = [by_run[job.run_dir] for job in jobs]
    unstarted = [result for result in results if result.status == "not started"]
    late = sum(result.reason == "the deadline passed" for result in unstarted)
    if late:
        print(f"{late} runs not started: the {deadline_s:.0f} s deadline passed", flush=True)
    if len(unstarted) > late:
        print(f"{len(unstarted) - late} runs not started: a run they need failed", flush=True)
    print(f"all runs: {time.perf_counter() - started:.0f} s wall", flush=True)
    return results


def _report(result: JobResult) -> None:
    if result.status == "skipped" or result.reason == "the deadline passed":
        return
    where = f" on GPU {result.gpu}" if result.gpu is not None else ""
    if result.status == "done":
        print(f"{result.job.run_dir}: ok in {result.seconds:.0f} s{where}", flush=True)
    elif result.status == "failed":
        print(
            f"{result.job.run_dir}: FAILED (exit {result.exit_code}, see "
            f"{result.job.run_dir}.stderr.log) in {result.seconds:.0f} s{where}",
            flush=True,
        )
    else:
        print(f"{result.job.run_dir}: not started, {result.reason}", flush=True)


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
