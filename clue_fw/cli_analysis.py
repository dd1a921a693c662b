"""``clue plot``, ``clue analyze``, ``clue compare`` and ``clue sweep``: curves, measures
and tables of finished runs.

Thin wrappers over :mod:`clue_fw.analysis`; :func:`register` adds them to the ``clue``
app. Torch and matplotlib are imported only when a command runs, so ``clue --help``
stays fast. Every bad input (a directory that is not a run, a bad ``--grid``, a missing
matplotlib) is a :class:`~clue_fw.errors.ClueError`: one paragraph on stderr, exit 2.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clue_fw.errors import ClueError, quote

if TYPE_CHECKING:
    from clue_fw.analysis.compare import Comparison

# As in clue_fw.cli: user-controlled text goes out as rich Text, never markup.
stderr = Console(stderr=True, emoji=False)
stdout = Console(emoji=False)

RunsArgument = Annotated[
    list[str], typer.Argument(metavar="RUN...", help="Run directories (what `clue run` printed).")
]
MarkdownOption = Annotated[
    str | None, typer.Option("--markdown", help="Also write the table to this markdown file.")
]
LABEL_COLUMNS = ("gender", "age", "occupation")
_SEED = re.compile(r"^-?[0-9]+$")  # ASCII digits only: int() would take 1_0, +5 and ٣


# --------------------------------------------------------------------------- plot


def plot(
    runs: RunsArgument,
    out: Annotated[
        str, typer.Option("--out", "-o", help="Figure file: .png, .svg or .pdf.")
    ] = "curves.png",
) -> None:
    """Plot the losses, validation metrics and collapse monitors of runs, per epoch.

    Reads each run's pretrain/history.csv and finetune/history.csv (for runs made before
    those files existed: the history in last.safetensors).
    """
    from clue_fw.analysis.history_csv import run_history
    from clue_fw.analysis.plots import check_figure_path, plot_curves, pyplot

    pyplot()  # a missing matplotlib is said before anything is read
    out_path = Path(out)
    check_figure_path(out_path)  # a bad suffix or target, before anything is read
    paths = [_run_path(run) for run in runs]
    histories = [run_history(path) for path in paths]
    labels = run_labels(paths)
    panels = plot_curves(labels, histories, out_path)
    stderr.print(
        Text(f"wrote {len(panels)} panels of {len(paths)} run(s) to {out_path}"), highlight=False
    )
    stdout.print(Text(str(out_path)), highlight=False, soft_wrap=True)


def run_labels(paths: list[Path]) -> list[str]:
    """Legend names: the directory names; where those repeat, recipe name and seed; where
    those repeat too, the last two path components, then the whole path."""
    from clue_fw.analysis.history_csv import recipe_name_and_seed

    candidates = [
        [p.name for p in paths],
        [recipe_name_and_seed(p) or p.name for p in paths],
        [str(Path(p.parent.name) / p.name) for p in paths],
        [str(p) for p in paths],
    ]
    for labels in candidates:
        if len(set(labels)) == len(labels):
            return labels
    return [f"{index + 1}: {label}" for index, label in enumerate(candidates[-1])]


# --------------------------------------------------------------------------- analyze


def _analyze_options(seed: int, labels: str | None, label_column: str | None) -> str:
    """Refuse bad ``clue analyze`` flags before anything is loaded; return the label column."""
    if not 0 <= seed < 2**63:
        raise ClueError(
            f"--seed must lie in 0 .. 2**63 - 1 (a 64-bit generator seed), not {quote(str(seed))}."
        )
    if label_column is not None and labels is None:
        raise ClueError("--label-column picks a column of --labels; give --labels FILE too.")
    column = label_column or "gender"
    if column not in LABEL_COLUMNS:
        raise ClueError(
            f"--label-column must be gender, age or occupation, not {quote(column)} (a "
            "user,label CSV has one label column and needs no --label-column)."
        )
    return column


def analyze(
    run_dir: Annotated[str, typer.Argument(metavar="RUN", help="A finished run directory.")],
    out: Annotated[
        str, typer.Option("--out", "-o", help="Folder for analysis.json, pca.png, spectrum.png.")
    ],
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            help="Colour the PCA scatter by a label file: ML-1M users.dat, ML-100K u.user or "
            "a user,label CSV.",
        ),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(
            "--label-column", help="gender, age or occupation (users.dat / u.user; default gender)."
        ),
    ] = None,
    stage: Annotated[
        str,
        typer.Option(
            "--stage", help="finetune: the fine-tuned encoder; pretrain: the pre-trained one."
        ),
    ] = "finetune",
    max_users: Annotated[
        int,
        typer.Option(
            "--max-users", min=2, help="Users (a seeded sample) for alignment and uniformity."
        ),
    ] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample and the views.")] = 0,
    data_root: Annotated[
        Path | None,
        typer.Option("--data-root", help="Data root of the run's data (default: $CLUE_DATA_DIR)."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda:N, mps.")] = "auto",
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Users per batch.")
    ] = None,
) -> None:
    """Measure a run's user vectors: alignment, uniformity, effective rank, collapse.

    Writes analysis.json, pca.png (a 2-D PCA scatter, coloured by --labels) and
    spectrum.png (the normalised singular values) to --out.
    """
    from clue_fw.analysis.plots import (
        NO_LABEL,
        check_figure_path,
        plot_pca,
        plot_spectrum,
        pyplot,
    )
    from clue_fw.cli_export import one_process
    from clue_fw.file_safety import check_user_output, write_output

    one_process("analyze")
    column = _analyze_options(seed, labels, label_column)
    pyplot()  # a missing matplotlib is said before the run is loaded
    from clue_fw.analysis.representations import analyze_run
    from clue_fw.data.labels import read_label_file
    from clue_fw.inference import load_run
    from clue_fw.inference.run_files import check_stage
    from clue_fw.metrics.representation import pca_2d

    if not out.strip():
        raise ClueError("--out is empty; give the folder for analysis.json, pca.png, spectrum.png.")
    out_dir = Path(out)
    files = {"pca": "pca.png", "spectrum": "spectrum.png"}
    for name in files.values():
        check_figure_path(out_dir / name)
    check_user_output(out_dir / "analysis.json")
    label_map = read_label_file(labels, column) if labels is not None else None  # type: ignore[arg-type]
    loaded = load_run(_run_path(run_dir), check_stage(stage), device=device, data_root=data_root)
    try:
        result = analyze_run(loaded, max_users=max_users, seed=seed, batch_size=batch_size)
    except ValueError as exc:
        raise ClueError(f"Cannot analyse the run in {run_dir}: {exc}.") from None
    name = f"{Path(run_dir).name} ({stage})"
    point_labels = None
    label_info: dict[str, Any] | None = None
    if label_map is not None:
        point_labels = [label_map.get(user, NO_LABEL) for user in result.users]
        missing = point_labels.count(NO_LABEL)
        if missing == len(point_labels):
            raise ClueError(
                f"None of the run's {len(point_labels):,} users has a label in {labels}; is it "
                "the label file of the run's dataset (same user ids)?"
            )
        label_info = {"file": str(labels), "column": column, "users_without_label": missing}
    points, shares = pca_2d(result.vectors)
    try:  # made only now, once the run has been read and analysed
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClueError(f"Cannot create --out {out_dir}: {exc.strerror or exc}.") from None
    plot_pca(points, shares, point_labels, f"user vectors of {name}, PCA", out_dir / files["pca"])
    plot_spectrum(
        result.singular_values,
        f"singular values of {name} (effective rank {result.measures['effective_rank']:.1f})",
        out_dir / files["spectrum"],
    )
    report = {
        "run": str(loaded.run_dir),
        "run_id": loaded.identity.run_id,
        "stage": stage,
        **result.measures,
        "pca_variance_shares": shares,
        "labels": label_info,
        "definitions": result.notes,
        "files": files,
    }
    path = out_dir / "analysis.json"
    write_output(path, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    summary = ", ".join(
        f"{key} {'n/a (no pre-training views)' if value is None else format(value, '.4g')}"
        for key in ("alignment", "uniformity", "effective_rank", "collapse_std")
        for value in (result.measures[key],)
    )
    stderr.print(Text(f"{name}: {summary}"), highlight=False, soft_wrap=True)
    stdout.print(Text(str(path)), highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- compare


def compare(runs: RunsArgument, markdown: MarkdownOption = None) -> None:
    """Tabulate runs' valid and test metrics, runs that differ only in seed as one row.

    Such rows show mean ± std over the seeds (the mean alone for one run).
    """
    from clue_fw.analysis.compare import comparison, group_by_recipe, read_results

    _check_markdown(markdown)
    table = comparison(group_by_recipe(read_results(runs)))
    _show_table(table, markdown)


def comparison_table(table: Comparison, width: int) -> Table:
    """``table`` for a terminal ``width`` columns wide, nothing cut with an ellipsis: the
    ``key=value`` parts every row shares go to the caption, the run column (what tells
    rows apart) is never wrapped while it fits, and the other columns fold instead."""
    labels, shared = _shorten_labels([row[0] for row in table.rows])
    caption = f"every row: {','.join(shared)}" if shared else None
    rich_table = Table(caption=Text(caption) if caption else None, caption_justify="left")
    longest = max((len(label) for label in labels), default=0)
    for index, column in enumerate(table.header):
        if index == 0:
            rich_table.add_column(
                Text(column), no_wrap=True, min_width=min(longest, max(width - 40, 10))
            )
        else:
            justify = "left" if index < 2 else "right"
            rich_table.add_column(Text(column), justify=justify, overflow="fold")
    for label, row in zip(labels, table.rows, strict=True):
        rich_table.add_row(Text(label), *(Text(cell) for cell in row[1:]))
    return rich_table


def _shorten_labels(labels: list[str]) -> tuple[list[str], list[str]]:
    """Row labels without the ``key=value`` parts that all of them share (a sweep's fixed
    settings), and those parts; labels that are not such lists stay as they are."""
    parts = [label.split(",") for label in labels]
    if len(labels) < 2 or not all(all("=" in p for p in row) for row in parts):
        return labels, []
    shared = [p for p in parts[0] if all(p in row for row in parts[1:])]
    if not shared:
        return labels, []
    short = [",".join(p for p in row if p not in shared) or "(the same)" for row in parts]
    return short, shared


def _show_table(table: Comparison, markdown: str | None) -> None:
    # a terminal's own width (rows folded by the terminal are unreadable); else wide
    width = stdout.width if stdout.is_terminal else max(stdout.width, 160)
    Console(width=width, emoji=False).print(comparison_table(table, width))
    if markdown is not None:
        from clue_fw.file_safety import write_output

        write_output(markdown, table.markdown().encode("utf-8"), "--markdown")
        stderr.print(Text(f"wrote the table to {markdown}"), highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- sweep


def sweep(
    ctx: typer.Context,
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Folder of the sweep's runs.")],
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            help="key.path=value1,value2,... (repeatable; the grid is every combination).",
        ),
    ] = None,
    seeds: Annotated[
        list[str] | None,
        typer.Option(
            "--seeds", help="Seeds of every grid point: --seeds 0 1 2 (default: the recipe's)."
        ),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Runs at a time.")] = 1,
    markdown: MarkdownOption = None,
    max_runs: Annotated[
        int,
        typer.Option(
            "--max-runs", min=1, help="Refuse a sweep of more runs than this (grid points x seeds)."
        ),
    ] = 200,
) -> None:
    """Run a recipe over a grid of --set values times seeds, then tabulate them.

    Each run is `clue run RECIPE --set key=v ... --set seed=S --out OUT/<key=v,...>/seedS`
    in its own process, --jobs at a time; finished runs are skipped, interrupted ones
    resumed. Every run's recipe is checked before the first starts. The table has one row
    per grid point (mean ± std over seeds). Stopped (Ctrl-C, SIGTERM), the sweep stops its
    runs, waits for them and prints the command that continues it.
    """
    from clue_fw.analysis import sweep as sweeping
    from clue_fw.analysis.compare import Group, comparison, read_result
    from clue_fw.cli import _sigterm_interrupts
    from clue_fw.recipe import load_recipe

    _check_markdown(markdown)
    axes = sweeping.parse_grid(grid or [])
    seed_list = _seeds(seeds, ctx.args)
    if not out.strip():
        raise ClueError("--out is empty; give the folder for the sweep's runs.")
    if seed_list is None:
        seed_list = [int(load_recipe(recipe).seed)]
    runs = sweeping.check_runs(recipe, sweeping.plan(axes, seed_list, Path(out)), max_runs)
    waiting = sum(not run.finished() for run in runs)
    stderr.print(
        Text(
            f"sweep: {len(runs)} run(s) ({len(runs) // len(seed_list)} grid point(s) x "
            f"{len(seed_list)} seed(s)), {len(runs) - waiting} finished before, {jobs} at a time"
        ),
        highlight=False,
    )

    def report(outcome: sweeping.Outcome) -> None:
        if outcome.skipped or not outcome.started:
            return
        status = (
            "ok" if outcome.code == 0 else f"FAILED (exit {outcome.code}, see {outcome.run.log})"
        )
        stderr.print(
            Text(f"{outcome.run.run_dir}: {status} in {outcome.seconds:.0f} s"), highlight=False
        )

    try:
        with _sigterm_interrupts():
            outcomes = sweeping.execute(recipe, runs, jobs, report)
    except sweeping.SweepInterrupted as stopped:
        name = "SIGTERM" if stopped.signum == signal.SIGTERM else "SIGINT"
        again = _sweep_command(
            recipe, out, grid or [], seed_list if seeds else None, jobs, markdown
        )
        stderr.print(
            Text(
                f"interrupted ({name}); {stopped.stopped} running run(s) stopped, each keeping "
                f"its last checkpoint. Continue the sweep with: {again}"
            ),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(128 + stopped.signum) from None
    groups = []
    for point in sweeping.grid_points(axes):
        done = [read_result(run.run_dir) for run in runs if run.point == point and run.finished()]
        groups.append(Group(sweeping.point_name(point), done))
    _show_table(comparison(groups), markdown)
    failed = [o for o in outcomes if o.code != 0]
    if failed:
        for outcome in failed:
            reason = _last_error(outcome.run.log)
            stderr.print(
                Text(f"failed: {outcome.run.label} (exit {outcome.code}): {reason}"),
                highlight=False,
                soft_wrap=True,
            )
        # A run that refused its input (exit 2) makes the sweep's input bad too.
        raise typer.Exit(2 if any(o.code == 2 for o in failed) else 1)


def _last_error(log: Path) -> str:
    """The ``error:`` paragraph at the end of a run's log, or where to look."""
    try:
        with open(log, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 8192))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return f"see {log}"
    found = tail.rfind("error:")
    if found < 0:
        return f"see {log}"
    return " ".join(tail[found:].split())[:600] + f" (log: {log})"


def _sweep_command(
    recipe: Path,
    out: str,
    grid: list[str],
    seeds: list[int] | None,
    jobs: int,
    markdown: str | None,
) -> str:
    """The ``clue sweep`` command that continues a stopped sweep."""
    import shlex

    words = ["clue", "sweep", str(recipe), "--out", out]
    for spec in grid:
        words += ["--grid", spec]
    if seeds:
        words += ["--seeds", ",".join(map(str, seeds))]
    if jobs != 1:
        words += ["--jobs", str(jobs)]
    if markdown is not None:
        words += ["--markdown", markdown]
    return " ".join(shlex.quote(word) for word in words)


def _seeds(given: list[str] | None, extra: list[str]) -> list[int] | None:
    """``--seeds 0 1 2``: click gives the first value to the option and the rest as extra
    arguments; commas (``--seeds 0,1,2``) work too."""
    if extra and given is None:
        raise ClueError(
            f"Unexpected argument(s) {' '.join(map(quote, extra))}; the sweep takes one RECIPE."
        )
    if given is None:
        return None
    values = [v for text in [*given, *extra] for v in text.replace(",", " ").split()]
    seeds = []
    for value in values:
        if _SEED.match(value):
            seeds.append(int(value))
        else:
            raise ClueError(
                f"--seeds takes whole numbers (--seeds 0 1 2), not {quote(value)}; a second "
                "argument after --seeds is read as a seed, so give RECIPE before --seeds."
            )
    if not seeds:
        raise ClueError("--seeds is empty; give whole numbers, e.g. --seeds 0 1 2.")
    return seeds


# --------------------------------------------------------------------------- helpers


def _check_markdown(markdown: str | None) -> None:
    """Refuse a bad ``--markdown`` target before any run is read or started."""
    if markdown is not None:
        from clue_fw.file_safety import check_user_output

        check_user_output(markdown, "--markdown")


def _run_path(run: str) -> Path:
    if not run.strip():
        raise ClueError("A RUN argument is empty; give run directories (what `clue run` printed).")
    return Path(run)


def register(app: typer.Typer) -> None:
    """Add ``plot``, ``analyze``, ``compare`` and ``sweep`` to the ``clue`` app."""
    app.command("plot")(plot)
    app.command("analyze")(analyze)
    app.command("compare")(compare)
    app.command("sweep", context_settings={"allow_extra_args": True})(sweep)
