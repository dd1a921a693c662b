"""``clue evaluate``: the metrics of one checkpoint of a run, again, on its splits.

A thin wrapper over :func:`clue_fw.inference.evaluation.evaluate_run`; :func:`register`
adds it to the ``clue`` app. Torch is imported only when the command runs. Bad input (a
missing run directory, a run without the checkpoint, changed data) is a
:class:`~clue_fw.errors.ClueError`: one paragraph on stderr, exit code 2.

Under torchrun (``torchrun --nproc_per_node N -m clue_fw evaluate RUN``) the processes
score their parts of the users; only rank 0 prints and writes ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from clue_fw.errors import ClueError

# As in clue_fw.cli: user-controlled text goes out as rich Text, never markup.
stderr = Console(stderr=True, emoji=False)
stdout = Console(emoji=False)


def evaluate(
    run_dir: Annotated[
        str, typer.Argument(metavar="RUN", help="A run directory (what `clue run` printed).")
    ],
    checkpoint: Annotated[
        str,
        typer.Option(
            "--checkpoint",
            help="best: finetune/best.safetensors of a finished run (the weights its "
            "metrics.json reports); last: finetune/last.safetensors (the last finished epoch).",
        ),
    ] = "best",
    split: Annotated[
        list[str] | None,
        typer.Option("--split", help="valid or test; repeat for both (default: both)."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Also write the result as JSON to this file."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="auto, cpu, cuda... (default: the run's recipe device)."),
    ] = None,
    data_root: Annotated[
        str | None,
        typer.Option(
            "--data-root", help="Data root of the run's data (default: $CLUE_DATA_DIR or cache)."
        ),
    ] = None,
) -> None:
    """Evaluate one fine-tuning checkpoint of a run on its validation and test splits.

    Prints the metrics as JSON (rank 0 only under torchrun). The same weights give the
    same metrics, to the bit, in one process and in N (docs/distributed.md).
    """
    from clue_fw.file_safety import check_user_output
    from clue_fw.inference.evaluation import check_evaluation_arguments, evaluate_run
    from clue_fw.running.os_errors import is_dir

    chosen, splits = check_evaluation_arguments(checkpoint, split or ["valid", "test"])
    if out is not None and (not out.strip() or is_dir(Path(out))):
        raise ClueError(f"--out {out or '(empty)'} must name a file to write, not a directory.")
    if out is not None:
        check_user_output(out)
    result = evaluate_run(run_dir, chosen, splits, device=device, data_root=data_root)
    from clue_fw.distributed import launch_from_environment

    launch = launch_from_environment()
    if launch is not None and launch.rank != 0:
        return  # rank 0 prints and writes
    text = json.dumps(result, indent=2) + "\n"
    if out is not None:
        _write_json(out, text)
    stdout.print(Text(text), end="", highlight=False, soft_wrap=True)


def _write_json(out: str, text: str) -> None:
    """Write ``text`` to ``out`` through the checked output target (atomically)."""
    from clue_fw.file_safety import write_output

    write_output(out, text.encode("utf-8"))


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the ``clue`` app."""
    app.command("evaluate")(evaluate)
