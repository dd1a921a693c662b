"""``<run>/<stage>/history.csv``: the writer. One row per finished epoch of a training
stage; :mod:`clue_fw.analysis.history_csv` reads the file back.

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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from clue_fw.running.layout import HISTORY_FILE as HISTORY_FILE  # its old home


class _Writer(Protocol):
    def write_bytes(self, path: Path, payload: bytes) -> None: ...


def columns(history: Iterable[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys, in first-seen order."""
    seen: dict[str, None] = {}
    for row in history:
        seen.update(dict.fromkeys(row))
    return list(seen)


def history_csv_text(history: list[Mapping[str, Any]]) -> str:
    """``history`` as CSV text: a header of :func:`columns`, one line per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = columns(history)
    writer.writerow(names)
    for row in history:
        writer.writerow(["" if row.get(name) is None else row[name] for name in names])
    return buffer.getvalue()


def write_history(directory: _Writer, path: Path, history: list[Mapping[str, Any]]) -> None:
    """Rewrite ``path`` from ``history`` through ``directory.write_bytes`` (atomic).

    Temp files that an earlier, killed write of the same file left are removed first.
    """
    for stale in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else ():
        stale.unlink(missing_ok=True)
    directory.write_bytes(path, history_csv_text(history).encode("utf-8"))
