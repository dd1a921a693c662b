"""A grid of recipe overrides times seeds, run in subprocesses: ``clue sweep``.

>>> axes = parse_grid(["backbone.dropout=0.1,0.3", "pretrain.train.lr=0.001"])
>>> [point_name(p) for p in grid_points(axes)]
['backbone.dropout=0.1,pretrain.train.lr=0.001', 'backbone.dropout=0.3,pretrain.train.lr=0.001']

Each grid point and seed is one run, ``clue run RECIPE --set key=v ... --set seed=S
--out DIR/<point>/seed<S>`` (values are ``--set`` values: parsed as YAML by the recipe
loader), in its own process, ``jobs`` at a time, with its output in
``DIR/<point>/seed<S>.log``. Every run's recipe is validated before the first one
starts. A run with ``metrics.json`` and this run's recipe sha256 is skipped; one with a
``recipe.yaml`` but no ``metrics.json`` (interrupted) is resumed, so a sweep can be
repeated until every run has finished; a folder holding a run of another recipe is
refused. A stopped sweep (Ctrl-C, SIGTERM) forwards the signal to its runs and waits
for them.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from clue_fw.analysis.compare import is_finished
from clue_fw.errors import ClueError, RecipeError, quote
from clue_fw.file_safety import check_user_output
from clue_fw.running.identity import directory_identity, recipe_sha256
from clue_fw.running.layout import recipe_path

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+\-=,]")
MAX_NAME = 200

Point = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class GridAxis:
    """One ``--grid key=v1,v2,...``: a recipe key and its values (``--set`` text)."""

    key: str
    values: tuple[str, ...]


def _bad(spec: str, why: str) -> ClueError:
    return ClueError(
        f"--grid {quote(spec)}: {why}. Write --grid key.path=value1,value2 (a recipe key, "
        "then comma-separated values, each parsed like a --set value), e.g. "
        "--grid backbone.dropout=0.1,0.3."
    )


def parse_grid(specs: Sequence[str]) -> list[GridAxis]:
    """The axes of ``--grid`` specs; a ClueError (exit code 2) for a bad one."""
    axes: list[GridAxis] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep:
            raise _bad(spec, "it has no '='")
        if not key:
            raise _bad(spec, "the key before '=' is empty")
        if not _KEY.match(key):
            raise _bad(spec, f"{quote(key)} is not a dotted recipe key")
        if key == "seed":
            raise _bad(spec, "the seed is not a grid key; give the seeds with --seeds")
        parts = split_values(values)
        if parts is None:
            raise _bad(spec, "a bracket or quote is not closed")
        if any(not v for v in parts):
            raise _bad(spec, "a value is empty (two commas in a row, or nothing after '=')")
        repeated = sorted({v for v in parts if parts.count(v) > 1})
        if repeated:
            raise _bad(spec, f"the value(s) {', '.join(map(quote, repeated))} appear twice")
        if any(axis.key == key for axis in axes):
            raise _bad(spec, f"the key {quote(key)} is given by another --grid too")
        axes.append(GridAxis(key, parts))
    return axes


def split_values(text: str) -> tuple[str, ...] | None:
    """``text`` cut at the commas outside brackets, braces and quotes, so a list value
    (``[1,2],[2,4]``) or a mapping can be swept; None when one is not closed.

    >>> split_values("0.1,0.3"), split_values("[1,2],[3]"), split_values("[1,2")
    (('0.1', '0.3'), ('[1,2]', '[3]'), None)
    """
    parts, depth, quote_char, current = [], 0, "", []
    for char in text:
        if quote_char:
            quote_char = "" if char == quote_char else quote_char
        elif char in "'\"":
            quote_char = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth < 0:
                return None
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if depth or quote_char:
        return None
    parts.append("".join(current).strip())
    return tuple(parts)


def grid_points(axes: Sequence[GridAxis]) -> list[Point]:
    """Every combination of the axes' values (the first axis varies slowest)."""
    return [
        tuple(zip((a.key for a in axes), values, strict=True))
        for values in itertools.product(*(a.values for a in axes))
    ]


def point_name(point: Point) -> str:
    """``key=v,key2=w``: the point's folder and row label (``recipe`` for no key)."""
    return ",".join(f"{key}={value}" for key, value in point) or "recipe"


def folder_name(point: Point) -> str:
    """:func:`point_name` with characters outside ``[A-Za-z0-9._+-=,]`` replaced by ``_``."""
    name = _UNSAFE.sub("_", point_name(point))
    if len(name) > MAX_NAME:
        raise ClueError(
            f"The grid point {quote(point_name(point))} makes a folder name longer than "
            f"{MAX_NAME} characters; sweep over fewer keys or shorter values."
        )
    return name


def overrides(point: Point, seed: int) -> list[str]:
    """The ``--set`` values of one run."""
    return [f"{key}={value}" for key, value in point] + [f"seed={seed}"]


@dataclass(frozen=True)
class SweepRun:
    """One (grid point, seed) run and its directory."""

    point: Point
    seed: int
    run_dir: Path
    recipe_sha256: str = ""  # of the resolved recipe (set by :func:`check_runs`)

    @property
    def log(self) -> Path:
        return self.run_dir.parent / f"{self.run_dir.name}.log"

    @property
    def label(self) -> str:
        return f"{point_name(self.point)} seed {self.seed}"

    def finished(self) -> bool:
        """Whether the run in :attr:`run_dir` finished, with this run's recipe: a finished
        run of another recipe (an earlier sweep into the same folder) does not count."""
        if not is_finished(self.run_dir):
            return False
        identity = directory_identity(self.run_dir)
        return identity is not None and identity.recipe_sha256 == self.recipe_sha256


MAX_RUNS = 200
"""A sweep of more runs than this is refused unless ``--max-runs`` allows it."""


def check_runs(recipe: Path, runs: Sequence[SweepRun], max_runs: int = MAX_RUNS) -> list[SweepRun]:
    """Validate the recipe of every run (each grid point with each seed) before any run
    starts, and refuse a run folder that holds a run of another recipe; return the runs
    with their recipe sha256 set. Every problem is a ClueError (exit code 2)."""
    from clue_fw.recipe import load_recipe

    if len(runs) > max_runs:
        raise ClueError(
            f"The sweep has {len(runs):,} runs, more than --max-runs {max_runs:,}. Sweep fewer "
            f"values or seeds, or allow them with --max-runs {len(runs)}."
        )
    checked = []
    for run in runs:
        try:
            resolved = load_recipe(recipe, overrides(run.point, run.seed))
        except RecipeError as exc:
            raise RecipeError(
                f"grid point {point_name(run.point)}, seed {run.seed}: {exc}"
            ) from None
        checked.append(replace(run, recipe_sha256=recipe_sha256(resolved.model_dump(mode="json"))))
    for run in checked:
        identity = directory_identity(run.run_dir)
        if identity is not None and identity.recipe_sha256 != run.recipe_sha256:
            raise ClueError(
                f"{run.run_dir} holds a run of another recipe (recipe sha256 "
                f"{identity.recipe_sha256[:12]}…, this sweep's is {run.recipe_sha256[:12]}…): "
                "an earlier sweep into the same --out. Give this sweep another --out, or move "
                "the old runs away."
            )
    return checked


def plan(axes: Sequence[GridAxis], seeds: Sequence[int], out: Path) -> list[SweepRun]:
    """Every run of the grid times ``seeds``, under ``out/<point>/seed<S>``."""
    points = grid_points(axes)
    folders = [folder_name(point) for point in points]
    if len(set(folders)) != len(folders):
        clash = next(f for f in folders if folders.count(f) > 1)
        raise ClueError(
            f"Two grid points share the folder name {quote(clash)} (characters other than "
            "letters, digits and ._+-=, become _); use values that differ in those."
        )
    if len(set(seeds)) != len(seeds):
        raise ClueError(f"--seeds repeats a seed ({', '.join(map(str, seeds))}); give each once.")
    return [
        SweepRun(point, seed, out / folder / f"seed{seed}")
        for point, folder in zip(points, folders, strict=True)
        for seed in seeds
    ]


def command(recipe: Path, run: SweepRun) -> list[str]:
    """The ``clue run`` command of ``run``: ``--resume`` for an interrupted one."""
    args = [sys.executable, "-m", "clue_fw", "run", str(recipe)]
    for value in overrides(run.point, run.seed):
        args += ["--set", value]
    resuming = recipe_path(run.run_dir).exists()
    return args + ["--resume" if resuming else "--out", str(run.run_dir)]


@dataclass(frozen=True)
class Outcome:
    """How one run went: ``code`` 0 is success; ``skipped``: it had finished before;
    ``started`` False: the sweep was stopped before it began."""

    run: SweepRun
    code: int
    seconds: float
    skipped: bool = False
    started: bool = True


STOP_WAIT_S = 120.0
"""How long a stopped sweep waits for each run to save and leave before killing it."""


class Children:
    """The ``clue run`` processes of a sweep: a stopped sweep forwards its signal to each,
    waits for them to leave (each keeps its last checkpoint) and starts no more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[bytes]] = set()
        self.stopping = False

    def start(
        self, args: list[str], log: IO[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self.stopping:
                return None
            # A session of its own: a Ctrl-C at the terminal reaches the sweep, which
            # forwards it once, instead of every run at the same moment.
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=env,
            )
            self._live.add(process)
            return process

    def done(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._live.discard(process)

    def stop(self, signum: int) -> int:
        """Send ``signum`` to every running run and wait for each; return how many."""
        with self._lock:
            self.stopping = True
            live = list(self._live)
        for process in live:
            try:
                process.send_signal(signum)
            except OSError:
                pass
        for process in live:
            try:
                process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return len(live)


class Slots:
    """``jobs`` numbered places for runs at a time: each run takes the lowest free one and
    gets its share of the CPU threads and, with several GPUs, GPU ``slot % gpus``."""

    def __init__(self, jobs: int, environ: dict[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self._free = list(range(jobs))
        self._lock = threading.Lock()
        cpus = os.cpu_count() or 1
        #: Threads per run: the user's OMP_NUM_THREADS, else the CPU cores shared out.
        self.threads = self.environ.get("OMP_NUM_THREADS") or str(max(1, cpus // jobs))
        self.gpus = visible_gpus(self.environ)

    def take(self) -> int:
        with self._lock:
            return self._free.pop(0)

    def give_back(self, slot: int) -> None:
        with self._lock:
            self._free.append(slot)
            self._free.sort()

    def environment(self, slot: int) -> dict[str, str]:
        env = {**self.environ, "OMP_NUM_THREADS": self.threads}
        env.setdefault("MKL_NUM_THREADS", self.threads)
        if len(self.gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        return env


def visible_gpus(environ: dict[str, str]) -> list[str]:
    """The GPUs a run may see: ``CUDA_VISIBLE_DEVICES``'s entries, else every CUDA device
    (none when torch sees none; torch is imported only to count them)."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def run_one(
    recipe: Path, run: SweepRun, children: Children | None = None, slots: Slots | None = None
) -> Outcome:
    """Run (or skip) one run in a subprocess; its output goes to ``run.log``."""
    if run.finished():
        return Outcome(run, 0, 0.0, skipped=True)
    children = children or Children()
    slots = slots or Slots(1)
    slot = slots.take()
    try:
        return _run_in_slot(recipe, run, children, slots.environment(slot))
    finally:
        slots.give_back(slot)


def _run_in_slot(recipe: Path, run: SweepRun, children: Children, env: dict[str, str]) -> Outcome:
    started = time.perf_counter()
    try:
        run.run_dir.parent.mkdir(parents=True, exist_ok=True)
        check_user_output(run.log, "the sweep's log")  # a named pipe would block the open
        with open(run.log, "w", encoding="utf-8") as log:
            process = children.start(command(recipe, run), log, env)
            if process is None:
                return Outcome(run, 0, 0.0, started=False)
            try:
                code = process.wait()
            finally:
                children.done(process)
    except OSError as exc:
        raise ClueError(f"Cannot start the run in {run.run_dir}: {exc.strerror or exc}.") from None
    return Outcome(run, code, time.perf_counter() - started)


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by a signal after forwarding it to its runs: ``signum`` is the
    signal, ``stopped`` how many runs were running (each saved its last checkpoint)."""

    def __init__(self, signum: int, stopped: int) -> None:
        super().__init__(signum, stopped)
        self.signum = signum
        self.stopped = stopped


def execute(
    recipe: Path,
    runs: Sequence[SweepRun],
    jobs: int,
    report: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run ``runs``, ``jobs`` at a time; ``report`` hears of each as it ends.

    Interrupted (Ctrl-C, or SIGTERM turned into a ``KeyboardInterrupt`` with a
    ``signum``), the sweep forwards the signal to the runs going, waits for them and
    raises :class:`SweepInterrupted`."""
    if jobs < 1:
        raise ClueError(f"--jobs must be at least 1, not {jobs}.")
    outcomes = []
    children = Children()
    slots = Slots(jobs)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(run_one, recipe, run, children, slots) for run in runs]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            if report is not None:
                report(outcome)
    except KeyboardInterrupt as exc:
        signum = int(getattr(exc, "signum", signal.SIGINT))
        stopped = children.stop(signum)
        pool.shutdown(wait=True, cancel_futures=True)
        raise SweepInterrupted(signum, stopped) from None
    finally:
        pool.shutdown(wait=True)
    order = {run: index for index, run in enumerate(runs)}
    return sorted(outcomes, key=lambda o: order[o.run])
