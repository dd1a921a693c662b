"""Valid and test metrics of finished runs, grouped over seeds: ``clue compare``.

>>> results = read_results(["runs/a/seed0", "runs/a/seed1"])               # doctest: +SKIP
>>> print(comparison(group_by_recipe(results)).markdown())                # doctest: +SKIP
| run | seeds | valid mrr@10 | ... |

A run is read from its ``recipe.yaml`` (the resolved recipe, every default filled in)
and ``metrics.json``, which must carry the identity on ``recipe.yaml``'s first line (a
``metrics.json`` copied in from another run is refused). Runs whose recipes are equal
once ``seed`` is left out form one group, shown as mean ± sample standard deviation over
its runs (the mean alone for one run), with the seeds it holds.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clue_fw.errors import ClueError
from clue_fw.recipe import read_recipe_file
from clue_fw.running.identity import RECIPE_FILE, RunIdentity, directory_identity, recipe_sha256
from clue_fw.running.layout import METRICS_FILE
from clue_fw.running.os_errors import exists, is_dir
from clue_fw.running.run_reader import MAX_METRICS_BYTES

SPLITS = ("valid", "test")
DIGITS = 4


@dataclass(frozen=True)
class RunResult:
    """A finished run: its directory, recipe mapping, seed, ``metrics.json`` and run id."""

    path: Path
    recipe: dict[str, Any]
    metrics: dict[str, Any]
    run_id: str = ""

    @property
    def seed(self) -> Any:
        return self.recipe.get("seed")

    @property
    def name(self) -> str:
        return str(self.recipe.get("name") or self.path.name)

    def without_seed(self) -> str:
        """The recipe without ``seed``, as canonical JSON: equal for runs that differ only
        in their seed."""
        return json.dumps({k: v for k, v in self.recipe.items() if k != "seed"}, sort_keys=True)


@dataclass(frozen=True)
class Group:
    """Runs shown as one row, under ``label``."""

    label: str
    runs: list[RunResult]


def is_finished(run_dir: Path) -> bool:
    return exists(run_dir / METRICS_FILE)


def read_result(run_dir: str | Path) -> RunResult:
    """Read a finished run; a ClueError saying what is missing or changed otherwise.

    The run's ``recipe.yaml`` must hash to the recipe sha256 on its own first line (a
    recipe edited by hand, a seed say, is refused), and its ``metrics.json`` must carry
    the same run identity."""
    if not str(run_dir).strip():
        raise ClueError("A RUN argument is empty; give run directories (what `clue run` printed).")
    path = Path(run_dir)
    if not is_dir(path):
        what = "does not exist" if not exists(path) else "is not a directory"
        raise ClueError(f"{path} {what}; give run directories (what `clue run` printed).")
    identity = directory_identity(path)
    if identity is None:
        raise ClueError(
            f"{path} is not a clue_fw run directory: it has no {RECIPE_FILE} whose first line is "
            "a run identity. Give run directories (what `clue run` printed)."
        )
    metrics_path = path / METRICS_FILE
    if not exists(metrics_path):
        raise ClueError(
            f"The run in {path} has not finished (it has no {METRICS_FILE}). Let it finish "
            f"(`clue run {path / RECIPE_FILE} --resume {path}`) or leave it out."
        )
    recipe = read_recipe_file(path / RECIPE_FILE)
    if recipe_sha256(recipe) != identity.recipe_sha256:
        raise ClueError(
            f"{path / RECIPE_FILE} was edited after the run started: the recipe no longer "
            "hashes to the recipe sha256 on its first line, so its seed and settings may not "
            "be what the run trained with. Restore the run's own recipe.yaml, or leave the "
            "run out."
        )
    try:
        if metrics_path.stat().st_size > MAX_METRICS_BYTES:
            raise ClueError(f"{metrics_path} is too large to be a clue_fw metrics.json.")
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ClueError(
            f"Cannot read {metrics_path}: {exc}. Delete it and `clue run {path / RECIPE_FILE} "
            f"--resume {path}` to evaluate the run again."
        ) from None
    found = RunIdentity.from_json(metrics.get("run")) if isinstance(metrics, dict) else None
    if found is None:
        raise ClueError(
            f"{metrics_path} carries no run identity, so nothing shows that the run of {path} "
            "wrote it. Leave the run out, or run it again."
        )
    if found != identity:
        raise ClueError(
            f"{metrics_path} and {path / RECIPE_FILE} name different runs ({found} against "
            f"{identity}): one of them was copied in from another run or edited by hand. "
            "Leave the run out, or restore its own files."
        )
    return RunResult(path, recipe, metrics, identity.run_id)


def read_results(run_dirs: Iterable[str | Path]) -> list[RunResult]:
    """:func:`read_result` of each run; the same run given twice (by one path or two, or a
    copy of its directory) is refused, since it would count as two seeds."""
    results: list[RunResult] = []
    for run_dir in run_dirs:
        result = read_result(run_dir)
        for earlier in results:
            if earlier.run_id == result.run_id:
                same = (
                    "is the same directory as"
                    if _same_dir(earlier.path, result.path)
                    else ("is a copy of")
                )
                raise ClueError(
                    f"{result.path} {same} {earlier.path} (both are run {result.run_id}); a run "
                    "given twice would count as two seeds. Give each run once."
                )
        results.append(result)
    return results


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return False


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def group_by_recipe(results: Iterable[RunResult]) -> list[Group]:
    """Groups of runs whose recipes differ only in ``seed``, in first-seen order.

    A group is labelled by its recipe ``name``; groups that share a name add the recipe
    keys in which they differ (``name dropout=0.3``)."""
    groups: dict[str, list[RunResult]] = {}
    for result in results:
        groups.setdefault(result.without_seed(), []).append(result)
    members = list(groups.values())
    flats = [_flatten({k: v for k, v in runs[0].recipe.items() if k != "seed"}) for runs in members]
    labels = []
    for index, runs in enumerate(members):
        name = runs[0].name
        same_name = [i for i, other in enumerate(members) if other[0].name == name]
        if len(same_name) == 1:
            labels.append(name)
            continue
        union = sorted({k for i in same_name for k in flats[i]})
        keys = [k for k in union if len({_show(flats[i].get(k)) for i in same_name}) > 1]
        shown = ",".join(f"{k}={_show(flats[index].get(k))}" for k in keys)
        labels.append(f"{name} {shown}".strip())
    return [Group(label, runs) for label, runs in zip(labels, members, strict=True)]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), std


def mean_std_cell(values: Sequence[float], digits: int = DIGITS) -> str:
    """``mean ± std`` (the mean alone for one value; ``-`` for none)."""
    if not values:
        return "-"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def metric_columns(results: Iterable[RunResult]) -> list[tuple[str, str]]:
    """(split, metric) of every run's ``valid`` and ``test`` metrics, first-seen order."""
    found: dict[str, dict[str, None]] = {split: {} for split in SPLITS}
    for result in results:
        for split in SPLITS:
            values = result.metrics.get(split)
            if isinstance(values, dict):
                found[split].update(dict.fromkeys(values))
    return [(split, metric) for split in SPLITS for metric in found[split]]


def _numbers(runs: Iterable[RunResult], *keys: str) -> list[float]:
    values = []
    for run in runs:
        value: Any = run.metrics
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values.append(float(value))
    return values


@dataclass(frozen=True)
class Comparison:
    """A table: ``header`` and ``rows`` of cell text."""

    header: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        lines = [line(self.header), "|" + "---|" * len(self.header)]
        return "\n".join(lines + [line(row) for row in self.rows]) + "\n"


def _seeds(runs: Sequence[RunResult]) -> str:
    if not runs:
        return "0"
    seeds = [run.seed for run in runs]
    return f"{len(runs)} ({', '.join(map(str, seeds))})"


def comparison(groups: Sequence[Group]) -> Comparison:
    """One row per group: its label, runs (with their seeds), every valid and test
    metric, the best fine-tuning epoch and the seconds per run."""
    columns = metric_columns(run for group in groups for run in group.runs)
    header = ["run", "seeds", *(f"{split} {metric}" for split, metric in columns)]
    header += ["best epoch", "s/run"]
    rows = []
    for group in groups:
        cells = [group.label, _seeds(group.runs)]
        cells += [mean_std_cell(_numbers(group.runs, split, metric)) for split, metric in columns]
        cells.append(mean_std_cell(_numbers(group.runs, "best_epoch"), 1))
        cells.append(mean_std_cell(_numbers(group.runs, "seconds"), 0))
        rows.append(cells)
    return Comparison(header, rows)
