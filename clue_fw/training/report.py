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

HEARTBEAT_S = 30.0
"""Off a terminal, a long epoch prints a progress line at least this often (seconds)."""


class Reporter:
    """Console output plus a plain-text log file."""

    def __init__(
        self,
        console: Console | None = None,
        log_path: Path | None = None,
        guard: Callable[[], None] | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.guard = guard
        self.console = console or Console(stderr=True)
        self.log_path = log_path
        self.heartbeat_s = heartbeat_s

    def log(self, message: str, style: str | None = None) -> None:
        if self.console.is_terminal:
            self.console.print(Text(message, style=style or ""), highlight=False)
        self._record(message)

    def status(self, line: str) -> None:
        """A line for someone watching a terminal (the last validation, the best so far,
        how long early stopping waits); off a terminal the epoch lines already say it."""
        if self.console.is_terminal:
            self.console.print(Text(line), highlight=False)

    def _record(self, line: str) -> None:
        """``line`` into run.log and, off a terminal, onto the console as run.log has it."""
        stamp = _stamp()
        if not self.console.is_terminal:
            self._plain(stamp, line)
        self._append(line, stamp)

    def _plain(self, stamp: str, line: str) -> None:
        """Off a terminal: ``line`` as run.log has it, with its time stamp, never wrapped
        (logs and CI are read and grepped, not watched)."""
        self.console.print(Text(f"{stamp} {line}"), highlight=False, soft_wrap=True)

    def _append(self, message: str, stamp: str) -> None:
        if self.log_path is None:
            return
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
        """A progress bar showing loss and throughput; yields ``update(n, loss, per_s)``.

        Not on a terminal (nohup, CI, ``| tee``), there is no bar: ``update`` prints a
        heartbeat line (``finetune epoch 3/200: 120/139 batches, 45 s, loss 0.1234``) once
        :attr:`heartbeat_s` seconds have passed since the epoch began or the last one.
        ``update`` receives host numbers only, so this costs a clock read per call.
        """
        if not self.console.is_terminal:  # logs and CI get epoch lines, not bar frames
            with self._heartbeat(description, total) as update:
                yield update
            return
        columns = (
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} seq/s"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total, loss="-", speed="-")

            def update(advance: int, loss: float, per_second: float) -> None:
                bar.update(task, advance=advance, loss=f"{loss:.4f}", speed=f"{per_second:,.0f}")

            yield update

    @contextmanager
    def _heartbeat(self, description: str, total: int) -> Iterator[Any]:
        started = last = time.monotonic()
        done = 0

        def update(advance: int, loss: float, per_second: float) -> None:
            nonlocal done, last
            done += advance
            now = time.monotonic()
            if now - last < self.heartbeat_s:
                return
            last = now
            line = f"{description}: {done}/{total} batches, {now - started:.0f} s, loss {loss:.4f}"
            self._plain(_stamp(), line)

        yield update

    def epoch_line(self, stage: str, row: dict[str, Any]) -> None:
        """One line per epoch in ``run.log``; also on the console when it is not a terminal
        (a terminal gets the progress bar and the epoch table instead)."""
        parts = [f"{stage} epoch {row['epoch']}"]
        for key, value in row.items():
            if key == "epoch":
                continue
            parts.append(f"{key}={_cell(value, key) if isinstance(value, float) else value}")
        self._record(" ".join(parts))

    def epoch_table(self, stage: str, rows: list[dict[str, Any]]) -> None:
        """The epochs of a stage, as one table or, when too wide for the console, several
        (each repeating the epoch column), so no value is ever cut. On a terminal only: off
        one, the epoch lines already said it (no boxes in logs)."""
        if not rows or not self.console.is_terminal:
            return
        keys = list(dict.fromkeys(k for row in rows for k in row))
        key, others = keys[0], keys[1:]  # "epoch" first
        cells = [[_cell(row.get(k), k) for k in keys] for row in rows]
        self._print_tables(f"{stage} epochs", key, others, cells)

    def metrics_table(self, metrics: dict[str, dict[str, float]]) -> None:
        """Final metrics, one row per split; split into several tables when too wide. Off a
        terminal, the lines run.log gets, one per split."""
        if self.console.is_terminal:
            names = list(dict.fromkeys(k for split in metrics.values() for k in split))
            cells = [
                [split, *(_cell(values.get(n)) for n in names)] for split, values in metrics.items()
            ]
            self._print_tables("final metrics", "split", names, cells)
        for split, values in metrics.items():
            self._record(f"{split}: " + " ".join(f"{k}={v:.4f}" for k, v in values.items()))

    def _print_tables(
        self, title: str, key: str, columns: list[str], cells: list[list[str]]
    ) -> None:
        """Print ``cells`` (rows of key + columns) as tables that fit the console width."""
        widths = [
            _column_width(name, [row[i] for row in cells]) for i, name in enumerate([key, *columns])
        ]
        groups = _pack(widths[1:], self.console.width - widths[0] - 1)
        for number, group in enumerate(groups, start=1):
            shown = title if len(groups) == 1 else f"{title} ({number}/{len(groups)})"
            table = Table(title=Text(shown), show_lines=False)
            for index in (0, *(i + 1 for i in group)):
                name = key if index == 0 else columns[index - 1]
                table.add_column(
                    Text(name),
                    justify="left" if index == 0 else "right",
                    min_width=widths[index] - _BORDER,
                    max_width=widths[index] - _BORDER,
                    overflow="fold",
                )
            for row in cells:
                table.add_row(*(Text(row[i]) for i in (0, *(i + 1 for i in group))))
            self.console.print(table)


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


_BORDER = 3
"""What a column adds to a rich table's width: one space of padding each side, one rule."""


def _column_width(header: str, values: list[str]) -> int:
    """The width a column needs: its longest value, or its longest header word (headers
    wrap between words), plus padding and rule."""
    words = header.split() or [""]
    return max(max(map(len, words)), *map(len, values), 1) + _BORDER


def _pack(widths: list[int], room: int) -> list[list[int]]:
    """Split column indices into consecutive groups whose widths fit ``room`` (a column
    wider than ``room`` gets a group of its own)."""
    groups: list[list[int]] = [[]]
    used = 0
    for index, width in enumerate(widths):
        if groups[-1] and used + width > room:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += width
    return groups


def _cell(value: Any, key: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, float) and key.endswith("seconds"):
        return f"{value:g}"  # timings as measured (rounded to 2-3 decimals), not 0.3200
    if isinstance(value, float):
        # 4 decimals, but a small non-zero value (a decayed lr: 2.5e-06) keeps 3 digits
        return f"{value:.3g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)
