"""``clue probe``: linear and kNN probes of a finished run's frozen user vectors.

A thin wrapper over :func:`clue_fw.probing.probe_run`; :func:`register` adds it to the
``clue`` app. Torch is imported only when the command runs, so ``clue --help`` stays
fast. Every bad input (not a run, a stage the run lacks, an unreadable label file, an
unknown column, users without labels, a bad flag or output path) is a
:class:`~clue_fw.errors.ClueError`: one paragraph on stderr, exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clue_fw.errors import ClueError, quote
from clue_fw.running.layout import RUN_OWN_FILES, RUN_OWN_FOLDERS

# As in clue_fw.cli: user-controlled text goes out as rich Text, never markup.
stderr = Console(stderr=True, emoji=False)
stdout = Console(emoji=False)

#: The entries of a run directory that belong to the run; no output may replace them.
RUN_ENTRIES = (*RUN_OWN_FILES, *RUN_OWN_FOLDERS)
LABEL_FORMATS = ("auto", "csv", "users_dat", "u_user")


def probe(
    run_dir: Annotated[
        str,
        typer.Argument(metavar="RUN", help="A finished run directory (what `clue run` printed)."),
    ],
    labels: Annotated[
        str,
        typer.Option(
            "--labels",
            help="Label file: ML-1M users.dat, ML-100K u.user or a user,label CSV (a path, "
            "relative to the working directory).",
        ),
    ],
    column: Annotated[
        str,
        typer.Option("--column", help="gender, age or occupation (users.dat / u.user)."),
    ] = "gender",
    stage: Annotated[
        str,
        typer.Option(
            "--stage",
            help="finetune: the fine-tuned encoder (finetune/best.safetensors); pretrain: the "
            "pre-trained encoder (pretrain/encoder.safetensors).",
        ),
    ] = "finetune",
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Also write the report as JSON here.")
    ] = None,
    markdown: Annotated[
        str | None, typer.Option("--markdown", help="Also write the tables as markdown here.")
    ] = None,
    label_format: Annotated[
        str, typer.Option("--label-format", help="auto, csv, users_dat or u_user.")
    ] = "auto",
    missing: Annotated[
        str,
        typer.Option(
            "--missing",
            help="Users of the run without a label: error, or skip them (as the profile "
            "head's labels.missing).",
        ),
    ] = "error",
    next_item: Annotated[
        bool,
        typer.Option(
            "--next-item/--no-next-item",
            help="The label-free check: rank each user's held-out next item with the frozen "
            "vectors, next to popularity and the random encoder.",
        ),
    ] = True,
    baselines: Annotated[
        bool,
        typer.Option(
            "--baselines/--no-baselines",
            help="Probe the random encoder and the bag of items (tf-idf, SVD) too.",
        ),
    ] = True,
    l2_grid: Annotated[
        str | None,
        typer.Option(
            "--l2-grid",
            help="L2 strengths to choose from on the validation users, comma-separated "
            "(default 1e-6,1e-5,...,10).",
        ),
    ] = None,
    k_grid: Annotated[
        str | None,
        typer.Option(
            "--k-grid",
            help="kNN neighbour counts to choose from, comma-separated (default 1,5,10,20,50,100).",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the random encoder and the SVD.")
    ] = 0,
    data_root: Annotated[
        str | None,
        typer.Option(
            "--data-root", help="Data root of the run's data (default: $CLUE_DATA_DIR or cache)."
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="Where the encoder runs: auto, cpu, cuda:N, mps.")
    ] = "auto",
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Users per encoder batch.")
    ] = None,
) -> None:
    """Probe a run's frozen user vectors: L-BFGS logistic regression and kNN, with baselines.

    Users are split 80/5/15 as the profile head splits them. Rows: the majority class,
    the run's encoder, a random encoder of the same recipe, and the bag of the same items
    (tf-idf, and its SVD). Test accuracy, macro-F1, balanced accuracy and (two classes)
    ROC-AUC; the L2 strength and k are chosen on the validation users. Then a
    label-free check: the next item, ranked from the frozen vectors (docs/probing.md).
    """
    from clue_fw.inference.run_files import check_stage

    check_stage(stage)
    if label_format not in LABEL_FORMATS:
        raise ClueError(
            f"--label-format must be auto, csv, users_dat or u_user, not {quote(label_format)}."
        )
    from clue_fw.probing.probe import check_column, check_missing

    check_column(column)
    check_missing(missing, "--missing")
    if not labels.strip():
        raise ClueError("--labels is empty; give the label file (e.g. ml-1m/users.dat).")
    if not run_dir.strip():
        raise ClueError("RUN is empty; give the run directory that `clue run` printed.")
    targets = [(flag, path) for flag, path in (("--out", out), ("--markdown", markdown)) if path]
    for flag, path in targets:
        check_target(flag, path, Path(run_dir))
    if out and markdown and Path(out).resolve() == Path(markdown).resolve():
        raise ClueError("--out and --markdown name the same file; give two files.")
    grids = {
        "l2_grid": _grid("--l2-grid", l2_grid, float),
        "k_grid": _grid("--k-grid", k_grid, int),
    }
    from clue_fw.probing import probe_run

    def log(message: str) -> None:
        stderr.print(Text(f"probe: {message}"), highlight=False, soft_wrap=True)

    report = probe_run(
        run_dir,
        labels,
        column,
        stage=stage,
        label_format=label_format,  # type: ignore[arg-type]
        missing=missing,  # type: ignore[arg-type]
        data_root=data_root,
        device=device,
        batch_size=batch_size,
        seed=seed,
        baselines=baselines,
        next_item=next_item,
        log=log,
        **{name: values for name, values in grids.items() if values is not None},
    )
    _show(*report.probe_table(), title=f"{column}: test metrics")
    if report.rankers:
        _show(*report.ranker_table(), title="next item from frozen vectors")
    if out:
        _write(out, "--out", json.dumps(report.to_json(), indent=2) + "\n")
        stderr.print(Text(f"wrote {out}"), highlight=False, soft_wrap=True)
    if markdown:
        _write(markdown, "--markdown", report.markdown())
        stderr.print(Text(f"wrote {markdown}"), highlight=False, soft_wrap=True)


def _grid(flag: str, text: str | None, kind: type) -> list[float] | list[int] | None:
    """``--l2-grid 1e-4,1e-2,1``: the values, or None when the flag is not given."""
    if text is None:
        return None
    values = []
    for token in text.replace(",", " ").split():
        try:
            value = kind(token)
        except ValueError:
            value = None
        if value is None or not value > 0 or value == float("inf"):
            what = "whole numbers >= 1" if kind is int else "positive numbers"
            raise ClueError(
                f"{flag} takes {what} separated by commas (e.g. {flag} "
                f"{'1,5,20' if kind is int else '1e-4,1e-2,1'}), not {quote(token)}."
            )
        values.append(value)
    if not values:
        raise ClueError(f"{flag} is empty; give values separated by commas.")
    return values


def check_target(flag: str, path: str, run_dir: Path) -> None:
    """Refuse an output path that is empty, a directory, not a regular file, or one of
    the run's own files (its recipe, metrics, log, lock or checkpoints)."""
    from clue_fw.file_safety import NotRegularTarget, check_output_target
    from clue_fw.running.os_errors import is_dir

    if not path.strip() or is_dir(Path(path)):
        raise ClueError(f"{flag} {path or '(empty)'} must name a file to write, not a directory.")
    try:
        check_output_target(path)
    except NotRegularTarget as exc:
        raise ClueError(f"Cannot write {flag} {path}: {exc.strerror}.") from None
    target = Path(path).resolve()
    try:
        inside = target.relative_to(run_dir.resolve())
    except ValueError:
        return
    if inside.parts and inside.parts[0] in RUN_ENTRIES:
        raise ClueError(
            f"{flag} {path} is the run's own {inside.parts[0]} (in {run_dir}); a probe never "
            "replaces a run's files. Write the report elsewhere, e.g. "
            f"{run_dir / ('probe' + (Path(path).suffix or '.json'))}."
        )


def _write(path: str, flag: str, text: str) -> None:
    """Write ``text`` atomically (a temporary file beside it, then a rename)."""
    from clue_fw.file_safety import atomic_write_bytes

    try:
        atomic_write_bytes(Path(path), text.encode("utf-8"), create_parent=False)
    except OSError as exc:
        raise ClueError(f"Cannot write {flag} {path}: {exc.strerror or exc}.") from None


def _show(header: list[str], rows: list[list[str]], title: str) -> None:
    table = Table(title=Text(title))
    for index, name in enumerate(header):
        table.add_column(Text(name), justify="left" if index < 3 else "right")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    Console(width=max(stdout.width, 140), emoji=False).print(table)


def register(app: typer.Typer) -> None:
    """Add ``probe`` to the ``clue`` app."""
    app.command("probe")(probe)
