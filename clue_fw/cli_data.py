"""``clue data``: fetch, prepare, describe and generate datasets under the data root.

The commands are added to the ``data`` group of the ``clue`` app by :func:`register`;
like every command, they print user-controlled text literally (rich ``Text``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from clue_fw.errors import ClueError

stderr = Console(stderr=True, emoji=False)
stdout = Console(emoji=False)

_COMMANDS: list[tuple[str, Callable[..., Any]]] = []


def _data_command(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def add(command: Callable[..., Any]) -> Callable[..., Any]:
        _COMMANDS.append((name, command))
        return command

    return add


def register(data_app: typer.Typer) -> None:
    """Add the ``clue data`` commands to ``data_app``, in the order they are defined."""
    for name, command in _COMMANDS:
        data_app.command(name)(command)


@_data_command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="Dataset: ml-1m or ml-100k.")],
    root: Annotated[
        Path | None, typer.Option("--root", help="Data root (default: $CLUE_DATA_DIR or cache).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download again even if present.")] = False,
) -> None:
    """Download a GroupLens archive, verify its sha256 and write the canonical layout."""
    from clue_fw.data.download import download_dataset

    def progress(done: int, total: int | None) -> None:
        if total:
            stderr.print(f"\r{done / 1e6:.1f} / {total / 1e6:.1f} MB", end="")

    folder = download_dataset(name, root, force=force, progress=progress)
    stderr.print()
    stdout.print(Text(str(folder)), highlight=False)


@_data_command("prepare")
def data_prepare(
    name: Annotated[str, typer.Argument(help="Dataset: ml-1m or ml-100k.")],
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            help="The archive downloaded by hand (.zip, checked by sha256) or the folder it "
            "unpacks to.",
        ),
    ],
    root: Annotated[
        Path | None, typer.Option("--root", help="Data root (default: $CLUE_DATA_DIR or cache).")
    ] = None,
) -> None:
    """Write the canonical layout from local files, offline (as `data download` does)."""
    from clue_fw.data.download import prepare_dataset

    if not from_.strip():
        raise ClueError("--from is empty; give the downloaded .zip or its unpacked folder.")
    folder = prepare_dataset(name, from_, root)
    stdout.print(Text(str(folder)), highlight=False)


@_data_command("stats")
def data_stats(
    file: Annotated[
        Path,
        typer.Argument(
            help="A sequence file (`user item item ...` lines): a path as given, else "
            "relative to the data root, as recipes name it (ml-1m/ml-1m_sequences.txt)."
        ),
    ],
) -> None:
    """Print users, items, interactions, length percentiles and the repeat rate of a file."""
    from clue_fw.data.root import resolve_data_path
    from clue_fw.data.stats import sequence_stats

    if not file.exists():  # not here: where a recipe would find it (or say where it looked)
        file = resolve_data_path(file, None, "FILE")
    stats = sequence_stats(file)
    stdout.print(Text("\n".join(stats.lines())), highlight=False, soft_wrap=True)


@_data_command("synth")
def data_synth(
    users: Annotated[int, typer.Option("--users", help="Number of users (lines).")],
    items: Annotated[int, typer.Option("--items", help="Number of items in the catalogue.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Sequence file to write.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same file).")] = 0,
    mean_length: Annotated[
        float, typer.Option("--mean-length", help="Mean items per user (at least 3).")
    ] = 50.0,
    repeat_rate: Annotated[
        float, typer.Option("--repeat-rate", help="Share of items that repeat an earlier one.")
    ] = 0.0,
    attributes: Annotated[
        bool,
        typer.Option(
            "--attributes",
            help="Also write planted user attributes for the profile head, next to --out "
            "NAME.txt: NAME_easy.csv, NAME_hard.csv, NAME_taste.csv (docs/synthetic.md).",
        ),
    ] = False,
    cold_start: Annotated[
        bool,
        typer.Option(
            "--cold-start",
            help="Also write a cold-start target domain for the cold_start head: "
            "NAME_target.txt, 1 to 5 items per user.",
        ),
    ] = False,
    target_items: Annotated[
        int | None,
        typer.Option(
            "--target-items",
            help="Items of the target domain (default max(items / 10, 5 x genres)).",
        ),
    ] = None,
    latent: Annotated[
        bool,
        typer.Option(
            "--latent",
            help="Also write the generator's per-user latent: NAME_latent.safetensors.",
        ),
    ] = False,
    force_size: Annotated[
        bool,
        typer.Option(
            "--force-size", help="Write even when the estimated size exceeds the free space."
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing output files.")
    ] = False,
) -> None:
    """Write a realistic synthetic sequence file (Zipf popularity, genre bursts, series).

    Interrupted (Ctrl-C: exit 130, SIGTERM: exit 143), it removes its temporary files:
    no output file is written or changed.
    """
    from clue_fw.cli import _INTERRUPT_EXIT, Terminated, _sigterm_interrupts

    try:
        with _sigterm_interrupts():
            from clue_fw.data.synth import write_synthetic_sequences

            stats = write_synthetic_sequences(
                out, users, items, seed=seed, mean_length=mean_length,
                repeat_rate=repeat_rate, attributes=attributes, cold_start=cold_start,
                latent=latent, target_items=target_items, check_space=not force_size,
                overwrite=overwrite,
            )  # fmt: skip
    except KeyboardInterrupt as exc:
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        stderr.print(
            Text(
                f"interrupted ({name}): clue data synth stopped before its files were "
                f"complete; the temporary files were removed and nothing was written to "
                f"{out} or next to it."
            ),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(_INTERRUPT_EXIT[name]) from None
    stderr.print(Text(f"wrote {stats.summary()}"), highlight=False)
    for path in stats.outputs.values():
        stdout.print(Text(str(path)), highlight=False, soft_wrap=True)
