"""What a run tells its user: rich progress bars and tables, mirrored to ``run.log``.

Messages quote user input (paths, recipe names, plugin kinds): they are printed as
rich ``Text``, never read as console markup (``[bold]``) or emoji codes (``:x:``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from clue_fw.errors import RunDirectoryError


class Reporter:
    """Console output plus a plain-text log file."""

    def __init__(
        self,
        console: Console | None = None,
        log_path: Path | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self.guard = guard
        self.console = console or Console(stderr=True)
        self.log_path = log_path

    def log(self, message: str, style: str | None = None) -> None:
        self.console.print(Text(message, style=style or ""), highlight=False)
        self._append(message)

    def _append(self, message: str) -> None:
        if self.log_path is None:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            if self.guard is not None:  # e.g. the run directory is still this run's
                self.guard()
            # No mkdir: a run directory deleted during the run is not silently re-created.
            with self.log_path.open("a", encoding="utf-8") as handle:
                handle.write(f"{stamp} {message}\n")
        except OSError as exc:  # a full disk or a read-only directory
            reason = exc.strerror or str(exc)
            raise RunDirectoryError(
                f"Cannot write {self.log_path}: {reason}. The run stopped; the files it had "
                "written are intact. Free disk space or make the directory writable, then "
                "continue with --resume."
            ) from None

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Any]:
        """A progress bar showing loss and throughput; yields ``update(n, loss, per_s)``."""
        columns = (
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} seq/s"),
            TimeElapsedColumn(),
        )
        if not self.console.is_terminal:  # logs and CI get epoch lines, not bar frames
            yield lambda advance, loss, per_second: None
            return
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total, loss="-", speed="-")

            def update(advance: int, loss: float, per_second: float) -> None:
                bar.update(task, advance=advance, loss=f"{loss:.4f}", speed=f"{per_second:,.0f}")

            yield update

    def epoch_line(self, stage: str, row: dict[str, Any]) -> None:
        parts = [f"{stage} epoch {row['epoch']}"]
        for key, value in row.items():
            if key == "epoch":
                continue
            parts.append(f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}")
        self._append(" ".join(parts))

    def epoch_table(self, stage: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        table = Table(title=f"{stage} epochs", show_lines=False)
        keys = list(dict.fromkeys(k for row in rows for k in row))
        for key in keys:
            table.add_column(Text(key), justify="right")
        for row in rows:
            table.add_row(*(Text(_cell(row.get(k))) for k in keys))
        self.console.print(table)

    def metrics_table(self, metrics: dict[str, dict[str, float]]) -> None:
        table = Table(title="final metrics")
        names = list(dict.fromkeys(k for split in metrics.values() for k in split))
        table.add_column("split")
        for name in names:
            table.add_column(Text(name), justify="right")
        for split, values in metrics.items():
            table.add_row(Text(split), *(Text(_cell(values.get(n))) for n in names))
        self.console.print(table)
        for split, values in metrics.items():
            self._append(f"{split}: " + " ".join(f"{k}={v:.4f}" for k, v in values.items()))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
