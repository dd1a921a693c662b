"""A grid of recipe overrides times seeds, run in subprocesses: ``clue sweep``.

>>> axes = parse_grid(["backbone.dropout=0.1,0.3", "pretrain.train.lr=0.001"])
>>> [point_name(p) for p in grid_points(axes)]
['backbone.dropout=0.1,pretrain.train.lr=0.001', 'backbone.dropout=0.3,pretrain.train.lr=0.001']

Each grid point and seed is one run, ``clue run RECIPE --set key=v ... --set seed=S
--out DIR/<point>/seed<S>`` (values are ``--set`` values: parsed as YAML by the recipe
loader), in its own process, ``jobs`` at a time, with its output in
``DIR/<point>/seed<S>.log``. A run with ``metrics.json`` is skipped; one with a
``recipe.yaml`` but no ``metrics.json`` (interrupted) is resumed, so a sweep can be
repeated until every run has finished.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from clue_fw.analysis.compare import is_finished
from clue_fw.errors import ClueError, quote
from clue_fw.output_target import check_user_output

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
        parts = tuple(v.strip() for v in values.split(","))
        if any(not v for v in parts):
            raise _bad(spec, "a value is empty (two commas in a row, or nothing after '=')")
        repeated = sorted({v for v in parts if parts.count(v) > 1})
        if repeated:
            raise _bad(spec, f"the value(s) {', '.join(map(quote, repeated))} appear twice")
        if any(axis.key == key for axis in axes):
            raise _bad(spec, f"the key {quote(key)} is given by another --grid too")
        axes.append(GridAxis(key, parts))
    return axes


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

    @property
    def log(self) -> Path:
        return self.run_dir.parent / f"{self.run_dir.name}.log"

    @property
    def label(self) -> str:
        return f"{point_name(self.point)} seed {self.seed}"


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
    resuming = (run.run_dir / "recipe.yaml").exists()
    return args + ["--resume" if resuming else "--out", str(run.run_dir)]


@dataclass(frozen=True)
class Outcome:
    """How one run went: ``code`` 0 is success; ``skipped``: it had finished before."""

    run: SweepRun
    code: int
    seconds: float
    skipped: bool = False


def run_one(recipe: Path, run: SweepRun) -> Outcome:
    """Run (or skip) one run in a subprocess; its output goes to ``run.log``."""
    if is_finished(run.run_dir):
        return Outcome(run, 0, 0.0, skipped=True)
    started = time.perf_counter()
    try:
        run.run_dir.parent.mkdir(parents=True, exist_ok=True)
        check_user_output(run.log, "the sweep's log")  # a named pipe would block the open
        with open(run.log, "w", encoding="utf-8") as log:
            code = subprocess.call(
                command(recipe, run), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
    except OSError as exc:
        raise ClueError(f"Cannot start the run in {run.run_dir}: {exc.strerror or exc}.") from None
    return Outcome(run, code, time.perf_counter() - started)


def execute(
    recipe: Path,
    runs: Sequence[SweepRun],
    jobs: int,
    report: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run ``runs``, ``jobs`` at a time; ``report`` hears of each as it ends."""
    if jobs < 1:
        raise ClueError(f"--jobs must be at least 1, not {jobs}.")
    outcomes = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_one, recipe, run) for run in runs]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            if report is not None:
                report(outcome)
    order = {run: index for index, run in enumerate(runs)}
    return sorted(outcomes, key=lambda o: order[o.run])
