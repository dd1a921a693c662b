"""The ``clue`` command line: thin wrappers over the library API.

Every user-caused problem is a :class:`~clue_fw.errors.ClueError`; the CLI prints
its message as one paragraph on stderr and exits with code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clue_fw import __version__
from clue_fw.errors import ClueError

app = typer.Typer(
    name="clue",
    help="clue_fw: contrastive pre-training of transferable user representations (CLUE).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Fetch and inspect datasets under the data root.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Messages quote user input (paths, keys, plugin names): they are printed literally,
# never read as console markup ("[bold]") or emoji codes (":x:"). Every user-controlled
# string goes out as a rich Text, and the consoles themselves do not replace emoji codes.
stderr = Console(stderr=True, emoji=False)
stdout = Console(emoji=False)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a recipe field: key.path=value (repeatable)."),
]


def _version(value: bool) -> None:
    if value:
        stdout.print(f"clue_fw {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """clue_fw command line."""


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: SetOption = None,
    # Strings, not Paths: typer would turn an empty value ("$UNSET") into ".".
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Run directory (default runs/<name>/<time>)."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Continue an interrupted run in this directory."),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace the contents of a non-empty --out directory."),
    ] = False,
) -> None:
    """Pre-train (if the recipe says so), fine-tune and evaluate; write metrics.json.

    Started by torchrun (``torchrun --nproc_per_node N -m clue_fw run RECIPE``), the N
    processes train data-parallel on the recipe's global batches (docs/distributed.md).
    """
    from clue_fw.recipe import load_recipe
    from clue_fw.runner import run as run_recipe

    if out is not None and resume is not None:
        raise ClueError("Use either --out (a new run) or --resume (an existing run), not both.")
    loaded = load_recipe(recipe, set_ or [])
    result = run_recipe(loaded, out=out, resume=resume, overwrite=overwrite, console=stderr)
    if result.rank == 0:  # under torchrun (WORLD_SIZE, RANK set), only rank 0 prints
        stdout.print(Text(str(result.run_dir)), highlight=False)


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: SetOption = None,
) -> None:
    """Check a recipe (keys, types, component kinds) without running it."""
    from clue_fw.recipe import load_recipe, recipe_to_yaml

    loaded = load_recipe(recipe, set_ or [])
    stderr.print(Text.assemble((f"{recipe} is valid.", "green"), " Resolved recipe:"))
    stdout.print(Text(recipe_to_yaml(loaded)), end="", highlight=False)


@app.command("list")
def list_components() -> None:
    """List every registered component with its family, provider and description."""
    from clue_fw.registry import get_registry

    table = Table(title="clue_fw components")
    for column in ("family", "kind", "provider", "description"):
        table.add_column(column)
    for entry in get_registry().all_entries():  # plugin text: literal, never markup
        table.add_row(
            *(Text(t) for t in (entry.family, entry.kind, entry.provider, entry.description))
        )
    Console(width=max(stdout.width, 140), emoji=False).print(table)


@data_app.command("download")
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


@data_app.command("synth")
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
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out file.")
    ] = False,
) -> None:
    """Write a realistic synthetic sequence file (Zipf popularity, genre bursts, series)."""
    from clue_fw.data.synth import write_synthetic_sequences

    stats = write_synthetic_sequences(
        out, users, items, seed=seed, mean_length=mean_length, repeat_rate=repeat_rate,
        overwrite=overwrite,
    )  # fmt: skip
    stderr.print(Text(f"wrote {stats.summary()}"), highlight=False)
    stdout.print(Text(str(stats.path)), highlight=False)


@app.command()
def baseline(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file (its data and head).")],
    set_: SetOption = None,
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Write the metrics JSON here.")
    ] = None,
) -> None:
    """Evaluate the popularity baseline on a recipe's data, under its next_item protocol."""
    import json

    from clue_fw.baselines.popularity import evaluate_recipe
    from clue_fw.recipe import load_recipe

    result = evaluate_recipe(load_recipe(recipe, set_ or []))
    text = json.dumps(result, indent=2) + "\n"
    if out is None:
        stdout.print(Text(text), end="", highlight=False)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ClueError(f"Cannot write --out {out}: {exc.strerror or exc}.") from None
    stdout.print(Text(out), highlight=False)


from clue_fw.cli_export import register as _register_export  # noqa: E402

_register_export(app)  # clue embed, clue recommend


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning ClueErrors into exit code 2."""
    try:
        app(args=argv, prog_name="clue", standalone_mode=True)
    except ClueError as exc:
        # A Text is printed as it is: messages quote user input, which may look like
        # markup ("[/x]") or an emoji code (":x:").
        message = Text.assemble(("error:", "bold red"), " ", str(exc))
        stderr.print(message, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        stderr.print("interrupted; continue with `clue run RECIPE --resume RUN_DIR`.")
        sys.exit(130)


if __name__ == "__main__":
    main()
