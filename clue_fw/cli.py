"""The ``clue`` command line: thin wrappers over the library API.

Every user-caused problem is a :class:`~clue_fw.errors.ClueError`; the CLI prints
its message as one paragraph on stderr and exits with code 2, never a traceback.

Start-up is kept light: this module imports typer, rich and clue_fw's errors only;
everything that loads torch, pydantic or the registry is imported inside the command
that needs it, so ``clue --help`` answers without importing torch.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clue_fw._version import __version__
from clue_fw.errors import ClueError
from clue_fw.running.layout import recipe_path

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import RecipeLike

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is like Ctrl-C: locks are released on the way out and
    the last checkpoint (written atomically) stays intact."""

    signum = signal.SIGTERM  # what `clue sweep` forwards to its runs


#: exit status of an interrupted run: 128 + the signal number, as shells report it
_INTERRUPT_EXIT = {"SIGINT": 130, "SIGTERM": 143}


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` in the main thread."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. an embedding application): leave it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(exc: KeyboardInterrupt, run_dir: Path | None, recipe: Path | None) -> int:
    """Say how to continue an interrupted run (rank 0 only); return the exit status."""
    name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        if run_dir is not None:
            command = f"clue run --resume {shlex.quote(str(run_dir))}"
            if recipe is not None and not recipe_path(run_dir).is_file():
                # stopped before the run stored its recipe: --resume alone would not know it
                command = (
                    f"clue run {shlex.quote(str(recipe))} --resume {shlex.quote(str(run_dir))}"
                )
            message = f"interrupted ({name}); continue with: {command}"
        else:
            again = f"clue run {shlex.quote(str(recipe))}" if recipe is not None else "clue run"
            message = (
                f"interrupted ({name}) before the run directory was opened; nothing was "
                f"written. Start it again with: {again}"
            )
        stderr.print(Text(message), highlight=False, soft_wrap=True)
    return _INTERRUPT_EXIT[name]


def _recipe_to_run(recipe: Path | None, resume: str | None, overrides: list[str]) -> Any:
    """The recipe given; with --resume alone, None (the runner continues with the run's
    own recipe.yaml), or that recipe with the --set values applied."""
    from clue_fw.recipe import load_recipe

    if recipe is not None:
        return load_recipe(recipe, overrides)
    if resume is None:
        raise typer.BadParameter(
            "give a recipe file, or --resume RUN_DIR to continue a run with its own recipe.",
            param_hint="'RECIPE'",
        )
    if not overrides:
        return None
    from clue_fw.runner import stored_recipe

    return stored_recipe(resume, overrides)


@app.command()
def run(
    recipe: Annotated[
        Path | None,
        typer.Argument(help="Recipe YAML file; optional with --resume (the run's recipe.yaml)."),
    ] = None,
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
    tensorboard: Annotated[
        bool,
        typer.Option(
            "--tensorboard",
            help="Also write every history.csv column and the final metrics as TensorBoard "
            "scalars under RUN/tensorboard/, live (needs: pip install 'clue_fw[tensorboard]').",
        ),
    ] = False,
) -> None:
    """Pre-train (if the recipe says so), fine-tune and evaluate; write metrics.json.

    `clue run --resume DIR` continues an interrupted run with the recipe stored in DIR.
    Interrupted (Ctrl-C: exit 130, SIGTERM: exit 143), a run prints the command that
    continues it.

    Started by torchrun (``torchrun --nproc_per_node N -m clue_fw run RECIPE``), the N
    processes train data-parallel on the recipe's global batches (docs/distributed.md).
    """
    if out is not None and resume is not None:
        raise ClueError("Use either --out (a new run) or --resume (an existing run), not both.")
    opened: list[Path] = [Path(resume)] if resume and resume.strip() else []
    followers: list[Any] = []

    def on_directory(path: Path) -> None:  # rank 0 only
        opened.append(path)
        if tensorboard:
            from clue_fw.analysis.tensorboard import Follower

            followers.append(Follower(path))

    try:
        with _sigterm_interrupts():
            if tensorboard:  # a missing package stops the command before any work
                from clue_fw.analysis.tensorboard import summary_writer_class

                summary_writer_class()
            from clue_fw.runner import run as run_recipe

            loaded = _recipe_to_run(recipe, resume, set_ or [])
            try:
                result = run_recipe(
                    loaded,
                    out=out,
                    resume=resume,
                    overwrite=overwrite,
                    console=stderr,
                    on_directory=on_directory,
                )
            finally:
                for follower in followers:
                    follower.stop()
    except KeyboardInterrupt as exc:
        if not opened and out and recipe_path(Path(out)).is_file():
            opened.append(Path(out))  # interrupted just after the directory was started
        raise typer.Exit(_interrupted(exc, opened[-1] if opened else None, recipe)) from None
    if result.rank == 0:  # under torchrun (WORLD_SIZE, RANK set), only rank 0 prints
        stdout.print(Text(str(result.run_dir)), highlight=False)


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: SetOption = None,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="A data file missing under the data root is an error."),
    ] = False,
) -> None:
    """Check a recipe (keys, types, component kinds) without running it.

    A data file that does not exist under the data root is a warning on stderr (an error,
    exit 2, with --strict).
    """
    from clue_fw.recipe import load_recipe, recipe_to_yaml

    loaded = load_recipe(recipe, set_ or [])
    problem = _data_file_problem(loaded)
    if problem is not None and strict:
        raise ClueError(f"{recipe}: {problem}")
    stderr.print(Text.assemble((f"{recipe} is valid.", "green"), " Resolved recipe:"))
    if problem is not None:
        stderr.print(Text.assemble(("warning:", "yellow"), f" {problem}"), soft_wrap=True)
    stdout.print(Text(recipe_to_yaml(loaded)), end="", highlight=False)


def _data_file_problem(recipe: RecipeLike) -> str | None:
    """Why the recipe's data file cannot be read (None when it can, or has no file)."""
    from clue_fw.data.root import resolve_data_path

    path = getattr(recipe.data, "path", None)
    if path is None:  # synthetic data: nothing to find
        return None
    try:
        resolve_data_path(path, None, "data.path")
    except ClueError as exc:
        return str(exc)
    return None


#: Where each family appears in a recipe, so `clue list views` finds the views too.
FAMILY_RECIPE_KEYS = {
    "backbone": "backbone",
    "augmentation": "pretrain.views view",
    "objective": "pretrain.objective",
    "head": "finetune.head",
}


@app.command("list")
def list_components(
    filter_: Annotated[
        str | None,
        typer.Argument(
            metavar="[FILTER]",
            help="Show only components whose family (or its recipe key), kind or provider "
            "contains this text.",
        ),
    ] = None,
) -> None:
    """List every registered component with its family, provider and description."""
    from clue_fw.registry import get_registry

    needle = (filter_ or "").lower()
    entries = [
        entry
        for entry in get_registry().all_entries()
        if needle in entry.family.lower()
        or needle in FAMILY_RECIPE_KEYS.get(entry.family, "")
        or needle in entry.kind.lower()
        or needle in entry.provider.lower()
    ]
    if not entries:
        raise ClueError(
            f"No component's family, kind or provider contains {filter_!r}; run `clue list` "
            "to see them all."
        )
    table = Table(title="clue_fw components")
    for column in ("family", "kind", "provider", "description"):
        table.add_column(column)
    for entry in entries:  # plugin text: literal, never markup
        table.add_row(
            *(Text(t) for t in (entry.family, entry.kind, entry.provider, entry.description))
        )
    Console(width=max(stdout.width, 140), emoji=False).print(table)


@app.command()
def show(
    names: Annotated[
        list[str],
        typer.Argument(
            metavar="[FAMILY] KIND",
            help="A component kind (clue list), preceded by its family when the kind is "
            "ambiguous: backbone, augmentation, objective or head.",
        ),
    ],
) -> None:
    """Print a component's recipe fields: name, type, default and description."""
    from clue_fw.reference import field_rows, spec_notes
    from clue_fw.registry import get_registry

    entry = _find_component(get_registry(), names)
    lines = [f"{entry.family} {entry.kind}: {entry.description}", f"provided by {entry.provider}"]
    notes = spec_notes(entry.spec)
    lines += ["", notes] if notes else []
    lines += ["", "fields:"]
    rows = field_rows(entry.spec, skip=("kind",))
    for name, type_name, default, description in rows:
        lines.append(f"  {name}: {type_name} = {default.strip('`')}")
        if description:
            lines.append(f"      {description}")
    if not rows:
        lines.append("  (none)")
    stdout.print(Text("\n".join(lines)), highlight=False, soft_wrap=True)


def _find_component(registry: Any, names: list[str]) -> Any:
    """The registry entry named by ``[FAMILY] KIND``; an error says what to type instead."""
    if len(names) not in (1, 2):
        raise ClueError(
            f"clue show takes KIND or FAMILY KIND, not {len(names)} words; e.g. "
            "`clue show transformer` or `clue show backbone transformer`."
        )
    kind = names[-1]
    family = names[0] if len(names) == 2 else None
    if family is not None and family not in registry.entries:
        families = ", ".join(registry.entries)
        raise ClueError(f"Unknown component family {family!r}; families: {families}.")
    found = [
        entry
        for entry in registry.all_entries()
        if entry.kind == kind and family in (None, entry.family)
    ]
    if not found:
        raise ClueError(
            f"No {family or 'component'} of kind {kind!r} is registered; run `clue list` to "
            "see every component and the plugin providing it."
        )
    if len(found) > 1:
        choices = " or ".join(f"`clue show {e.family} {e.kind}`" for e in found)
        raise ClueError(f"Several components are named {kind!r}: use {choices}.")
    return found[0]


@app.command()
def schema(
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Write the schema to this file instead of stdout."),
    ] = None,
) -> None:
    """Print the recipe JSON Schema (with every installed plugin's components).

    Editors complete and check recipes against it: put
    `# yaml-language-server: $schema=recipe.schema.json` on a recipe's first line.
    """
    import json

    from clue_fw.reference import recipe_json_schema

    _check_out(out)
    text = json.dumps(recipe_json_schema(), indent=2) + "\n"
    if out is None:
        stdout.print(Text(text), end="", highlight=False, soft_wrap=True)
        return
    _write_text(out, text)
    stdout.print(Text(out), highlight=False)


def _write_text(out: str, text: str) -> None:
    """Write a command's ``--out`` through the checked output target."""
    from clue_fw.file_safety import write_output

    write_output(out, text.encode("utf-8"))


def _check_out(out: str | None) -> None:
    """Refuse a bad ``--out`` before any work is done (see :func:`_write_text`)."""
    if out is not None:
        from clue_fw.file_safety import check_user_output

        check_user_output(out)


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

    _check_out(out)
    result = evaluate_recipe(load_recipe(recipe, set_ or []))
    text = json.dumps(result, indent=2) + "\n"
    if out is None:
        stdout.print(Text(text), end="", highlight=False)
        return
    _write_text(out, text)
    stdout.print(Text(out), highlight=False)


from clue_fw.cli_analysis import register as _register_analysis  # noqa: E402
from clue_fw.cli_data import register as _register_data  # noqa: E402
from clue_fw.cli_evaluate import register as _register_evaluate  # noqa: E402
from clue_fw.cli_export import register as _register_export  # noqa: E402
from clue_fw.cli_probe import register as _register_probe  # noqa: E402
from clue_fw.cli_processes import (  # noqa: E402
    _ANNOUNCED,
    _data_parallel_process,
    _exit_status,
    _parallel_failure,
    _speaks,
)
from clue_fw.cli_tensorboard import register as _register_tensorboard  # noqa: E402

_register_data(data_app)  # clue data download, prepare, stats, synth
_register_export(app)  # clue embed, recommend, neighbours
_register_analysis(app)  # clue plot, analyze, compare, sweep
_register_tensorboard(app)  # clue tensorboard
_register_evaluate(app)  # clue evaluate
_register_probe(app)  # clue probe


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning ClueErrors into exit code 2."""
    if not _data_parallel_process():
        _run_app(argv)
        return
    # A data-parallel process leaves without tearing down the interpreter: by then it
    # has left the process group with the others (a barrier, then destroy), but the
    # C++ teardown of gloo's threads at interpreter exit still aborted a finished
    # process now and then ("terminate called without an active exception", exit -6,
    # after its metrics were written). Nothing is lost: output is flushed, and every
    # file the run writes is closed when written (no atexit hooks). A failed process
    # leaves at once too: the others, waiting in a collective with it, see it go and
    # stop (quietly, with its exit status, when it said so in the group's store).
    code = 0
    try:
        _run_app(argv)
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except BaseException as exc:  # a bug in one process, or a process that left
        code = _parallel_failure(exc)
    sys.stdout.flush()
    sys.stderr.flush()
    if _ANNOUNCED:  # the failing process: let the others see it go, and read why
        from clue_fw.distributed import leave_after_failure

        leave_after_failure()
    os._exit(code)


def _run_app(argv: list[str] | None) -> None:
    try:
        app(args=argv, prog_name="clue", standalone_mode=True)
    except ClueError as exc:
        if _speaks(exc):
            # A Text is printed as it is: messages quote user input, which may look like
            # markup ("[/x]") or an emoji code (":x:").
            message = Text.assemble(("error:", "bold red"), " ", str(exc))
            stderr.print(message, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # outside `clue run`, which says how to resume
        stderr.print("interrupted.")
        sys.exit(130)


if __name__ == "__main__":
    main()
