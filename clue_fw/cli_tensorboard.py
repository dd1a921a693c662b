"""``clue tensorboard``: runs' training curves and final metrics as TensorBoard scalars.

A thin wrapper over :mod:`clue_fw.analysis.tensorboard`; ``clue run --tensorboard`` (in
:mod:`clue_fw.cli`) follows a run live with the same code. Any bad input (not a run, no
finished epoch, the tensorboard package missing) is one paragraph on stderr, exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from clue_fw.cli_analysis import RunsArgument, stderr, stdout
from clue_fw.cli_analysis import _run_path as run_path


def tensorboard(
    runs: RunsArgument,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Log folder (default: each run's RUN/tensorboard). With several runs, each "
            "goes to a subfolder named after its directory.",
        ),
    ] = None,
) -> None:
    """Write runs' training curves (every history.csv column) and final metrics as
    TensorBoard scalars; then `tensorboard --logdir ...` shows them. Also for a run still
    training (it exports what is there; `clue run --tensorboard` follows a run live)."""
    from clue_fw.analysis.history_csv import run_history
    from clue_fw.analysis.tensorboard import TensorBoardExport, summary_writer_class

    summary_writer_class()  # a missing package is said before anything is read
    paths = [run_path(run) for run in runs]
    for path in paths:
        run_history(path)  # not a run, or no finished epoch: said before anything is written
    for path in paths:
        log_dir = None
        if out is not None:
            log_dir = Path(out) / path.name if len(paths) > 1 else Path(out)
        export = TensorBoardExport(path, log_dir)
        try:
            count = export.sync()
        finally:
            export.close()
        stderr.print(Text(f"wrote {count:,} scalars of {path} to {export.log_dir}"))
        stdout.print(Text(str(export.log_dir)), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``tensorboard`` to the ``clue`` app."""
    app.command("tensorboard")(tensorboard)
