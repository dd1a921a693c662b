"""``<run>/<stage>/history.csv``: the reader. One row per finished epoch of a training
stage, written by :mod:`clue_fw.running.history_csv` (the writer, below this layer).

The rows are exactly the stage's ``history`` (the one its ``last.safetensors`` stores):
``epoch``, the loss and its terms (``z_std``, CLUE's collapse monitor, for
pre-training), the validation metrics (``valid mrr@10`` ...; fine-tuning), ``seq/s``,
``seconds`` and ``eval seconds``; under ``finetune.mode: probe_then_full`` also ``phase``
(``probe`` or ``full``; empty for epoch 0). The columns are the union of the rows' keys in
first-seen order; a value a row lacks is an empty cell.

The file is rewritten whole, atomically (a temp file renamed into place, by the run
directory's writer), every time the stage saves its checkpoint and when it resumes, and
always *after* the checkpoint: a crash never leaves a half row, and the file never holds
an epoch that the checkpoint does not. Rank 0 writes it, as every file of a run.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from clue_fw._deprecated import moved_names
from clue_fw.errors import ClueError
from clue_fw.running.history_csv import history_csv_text
from clue_fw.running.layout import HISTORY_FILE, LAST_FILE, STAGES, recipe_path, stage_file

# The writer moved to clue_fw.running.history_csv (the stages write, analysis reads).
__getattr__ = moved_names(
    __name__,
    {"columns": "clue_fw.running.history_csv", "write_history": "clue_fw.running.history_csv"},
)

MAX_HISTORY_BYTES = 64 << 20
"""A ``history.csv`` larger than this (64 MiB) is not one clue_fw wrote."""

Row = dict[str, float | str]


def _value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def read_history(path: str | Path) -> list[Row]:
    """The rows of a ``history.csv``: numbers as floats, other cells as strings, empty
    cells left out of their row."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_HISTORY_BYTES:
            raise ClueError(
                f"{path} is larger than {MAX_HISTORY_BYTES >> 20} MiB; it is not a history.csv "
                "that clue_fw wrote."
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClueError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise ClueError(
            f"{path} is not UTF-8 text; it is not a history.csv clue_fw wrote."
        ) from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or "epoch" not in header:
        raise ClueError(
            f"{path} has no header line with an 'epoch' column; it is not a history.csv that "
            "clue_fw wrote. Delete it: the run rewrites it from its checkpoint on --resume."
        )
    rows: list[Row] = []
    for number, cells in enumerate(reader, start=2):
        if len(cells) != len(header):
            raise ClueError(
                f"{path}, line {number}: {len(cells)} cells for {len(header)} columns; the file "
                "was edited or cut. Delete it: the run rewrites it from its checkpoint on "
                "--resume."
            )
        rows.append(
            {name: _value(cell) for name, cell in zip(header, cells, strict=False) if cell != ""}
        )
    return rows


def checkpoint_history(path: Path) -> list[Row]:
    """The history stored in a stage's ``last.safetensors`` (its header only is read), as
    :func:`read_history` would read it back from ``history.csv``: for runs made before
    stages wrote ``history.csv``."""
    import json

    from safetensors import safe_open

    from clue_fw.training.checkpoint import METADATA_KEY

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = json.loads((handle.metadata() or {}).get(METADATA_KEY, "{}"))
    except Exception as exc:  # noqa: BLE001 - any unreadable header is the same problem
        raise ClueError(f"Cannot read the history in {path}: {exc}.") from None
    history = metadata.get("history") if isinstance(metadata, dict) else None
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise ClueError(f"{path} holds no training history; it was not written by clue_fw.")
    reader = csv.reader(io.StringIO(history_csv_text(history)))
    header = next(reader)
    return [
        {n: _value(c) for n, c in zip(header, cells, strict=False) if c != ""} for cells in reader
    ]


def run_history(run_dir: Path) -> dict[str, list[Row]]:
    """``{stage: rows}`` of a run directory's stages: each stage's ``history.csv``, or the
    history in its ``last.safetensors`` when the run predates ``history.csv``."""
    if not recipe_path(run_dir).is_file():
        raise ClueError(
            f"{run_dir} is not a clue_fw run directory (it has no recipe.yaml); give run "
            "directories (what `clue run` printed)."
        )
    found: dict[str, list[Row]] = {}
    for stage in STAGES:
        path = stage_file(run_dir, stage, HISTORY_FILE)
        last = stage_file(run_dir, stage, LAST_FILE)
        if path.is_file():
            found[stage] = read_history(path)
        elif last.is_file():
            found[stage] = checkpoint_history(last)
    if not any(found.values()):
        raise ClueError(
            f"The run in {run_dir} has no finished epoch yet (no {HISTORY_FILE} in pretrain/ or "
            "finetune/); plot it after its first epoch."
        )
    return found


def recipe_name_and_seed(run_dir: Path) -> str | None:
    """``<recipe name> seed <seed>`` from a run's ``recipe.yaml`` (None if unreadable)."""
    from clue_fw.recipe import read_recipe_file

    try:
        recipe = read_recipe_file(recipe_path(run_dir))
    except ClueError:
        return None
    return f"{recipe.get('name', run_dir.name)} seed {recipe.get('seed', '?')}"
