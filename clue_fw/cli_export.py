"""``clue embed``, ``clue recommend`` and ``clue neighbours``: a finished run's vectors, top-k
items and nearest users, to files.

Thin wrappers over :func:`clue_fw.inference.load_run` and
:mod:`clue_fw.inference.export`; :func:`register` adds them to the ``clue`` app. Torch
is imported only when a command runs, so ``clue --help`` stays fast. Every bad input
(a missing run, a bad stage, an unknown suffix, an unreadable data file) is a
:class:`~clue_fw.errors.ClueError`: one paragraph on stderr, exit code 2.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from clue_fw.errors import ClueError, quote

if TYPE_CHECKING:
    from clue_fw.inference import LoadedRun

# As in clue_fw.cli: user-controlled text goes out as rich Text, never markup.
stderr = Console(stderr=True, emoji=False)
stdout = Console(emoji=False)

RunArgument = Annotated[
    str, typer.Argument(metavar="RUN", help="A finished run directory (what `clue run` printed).")
]
StageOption = Annotated[
    str,
    typer.Option(
        "--stage",
        help="finetune: the fine-tuned best weights (finetune/best.safetensors); pretrain: the "
        "pre-trained encoder (pretrain/encoder.safetensors).",
    ),
]
DataRootOption = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        help="Data root of the run's own data (default: $CLUE_DATA_DIR or the cache); read "
        "for the run's users, or for the item ids of a run that did not pre-train.",
    ),
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (CUDA when available), cpu, cuda:N, mps.")
]
BatchOption = Annotated[
    int | None,
    typer.Option("--batch-size", min=1, help="Users per batch (default: the run's eval size)."),
]


def embed(
    run_dir: RunArgument,
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Output file: .npy (structured: id and vector fields), .safetensors "
            "(user_ids/item_ids and vectors) or .parquet (needs pyarrow).",
        ),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="A sequence file (`user item item ...`, oldest first) whose users to embed "
            "(unknown items skipped and reported). Default: the run's own users, from the "
            "history its test split reads (all but each user's held-out last item; the whole "
            "sequence for profile and cold_start runs).",
        ),
    ] = None,
    stage: StageOption = "finetune",
    items: Annotated[
        bool,
        typer.Option("--items", help="Export the item vectors (raw item ids) instead of users."),
    ] = False,
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    batch_size: BatchOption = None,
) -> None:
    """Write user vectors (or, with --items, item vectors) of a finished run to a file."""
    # Without --data: every user of the run's data, encoded from what its test split
    # reads (all but the held-out last item for next-item runs; the whole sequence for
    # profile and cold-start runs). With --data: the users of that file; item ids the run
    # does not know are skipped and reported, users left with no known item left out.
    from clue_fw.inference import load_run
    from clue_fw.inference.export import vector_format, write_vector_chunks, write_vectors
    from clue_fw.inference.run_files import check_stage

    one_process("embed")
    out_path = Path(out)
    vector_format(out_path)
    if items and data is not None:
        raise ClueError(
            "--items exports the run's item vectors and takes no --data; drop one of them."
        )
    loaded = load_run(run_dir, check_stage(stage), device=device, data_root=data_root)
    meta = _metadata(loaded)
    meta["user_vector"] = loaded.user_vector
    if items:
        found = loaded.item_vectors()
        ids, dim, name = found.item_ids.numpy(), found.vectors.shape[1], "item"
        meta["source"] = "items: the vectors that score items against user vectors"
        write_vectors(out_path, name, ids, found.vectors.numpy(), meta)
    else:
        # streamed: each batch of vectors goes to the file as it is computed
        if data is None:
            stream = loaded.stream_users(batch_size=batch_size)
            meta["source"] = "the run's users: the history its test split reads"
            what = "embedding the run's users"
        else:
            stream = _quietly(loaded.stream_users, _read_sequences(data), batch_size=batch_size)
            _report(stream.report, data)
            meta["source"] = f"sequence file {data}"
            what = "embedding users"
        ids, dim, name = _int_ids(stream.users), stream.dim, "user"
        with _progress(what, len(ids)) as advance:
            write_vector_chunks(out_path, name, len(ids), dim, meta, _chunks(ids, stream, advance))
    stderr.print(
        Text(f"wrote {len(ids):,} {name} vectors (dim {dim}) to {out_path}"), highlight=False
    )
    stdout.print(Text(str(out_path)), highlight=False)


def recommend(
    run_dir: RunArgument,
    out: Annotated[
        str, typer.Option("--out", "-o", help="Output CSV: columns user, rank, item, score.")
    ],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="A sequence file (`user item item ...`, oldest first) whose users to "
            "recommend for. Default: the run's own users, each from its whole sequence in "
            "the run's data (the held-out items included: what comes after all of it).",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many items per user.")] = 10,
    exclude_seen: Annotated[
        str | None,
        typer.Option(
            "--exclude-seen",
            help="history: never recommend an item of the user's sequence; none: rank every "
            "item. Default: the run's own finetune.head.exclude_seen.",
        ),
    ] = None,
    candidates: Annotated[
        str | None,
        typer.Option(
            "--candidates",
            help="A file of the item ids that may be recommended (whitespace-separated, e.g. "
            "one per line): ranking is restricted to them. Ids the run does not know are "
            "skipped and reported. Default: every item.",
        ),
    ] = None,
    stage: StageOption = "finetune",
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    batch_size: BatchOption = None,
    item_block: Annotated[
        int | None,
        typer.Option(
            "--item-block",
            min=1,
            help="Items scored at once, with a running top-k (default: the run's "
            "finetune.head.item_block; unset: every item at once). Same items and scores; "
            "equal scores come lowest item id first.",
        ),
    ] = None,
) -> None:
    """Write the top-k items for each user of the run (or of a sequence file), by the run's
    head (one that ranks items: next_item, or a plugin's)."""
    from clue_fw.inference import load_run
    from clue_fw.inference.export import check_csv, write_recommendations
    from clue_fw.inference.run_files import check_stage

    one_process("recommend")
    out_path = Path(out)
    check_csv(out_path)
    if exclude_seen not in (None, "history", "none"):
        raise ClueError(
            f"--exclude-seen must be history (seen items are not recommended) or none (every "
            f"item is ranked), not {quote(exclude_seen)}."
        )
    allowed = None if candidates is None else _read_ids(candidates, "--candidates", "item")
    loaded = load_run(run_dir, check_stage(stage), device=device, data_root=data_root)
    settings = {
        "exclude_seen": exclude_seen,
        "candidates": allowed,
        "batch_size": batch_size,
        "item_block": item_block,
    }
    if data is None:
        users = len(loaded.task_data().sequences.user_ids)
        with _progress("recommending for the run's users", users) as advance:
            result = loaded.recommend_run_users(k, progress=advance, **settings)
    else:
        sequences = _read_sequences(data)
        with _progress("recommending", sequences.num_users) as advance:
            result = _quietly(loaded.recommend, sequences, k, progress=advance, **settings)
        _report(result.report, data)
    if result.candidates_unknown:
        shown = ", ".join(map(str, result.candidates_unknown[:5]))
        stderr.print(
            Text.assemble(
                ("warning:", "yellow"),
                f" --candidates {candidates}: skipped {len(result.candidates_unknown):,} item "
                f"id(s) the run does not know ({shown}"
                f"{', ...' if len(result.candidates_unknown) > 5 else ''})",
            )
        )
    rows = write_recommendations(out_path, result.users, result.items, result.scores)
    among = "" if result.candidates is None else f", among {result.candidates:,} candidates"
    stderr.print(
        Text(
            f"wrote {rows:,} recommendations for {len(result.users):,} users to {out_path} "
            f"(exclude_seen: {result.exclude_seen}{among})"
        ),
        highlight=False,
    )
    stdout.print(Text(str(out_path)), highlight=False)


def neighbours(
    source: Annotated[
        str,
        typer.Argument(
            metavar="RUN_OR_VECTORS",
            help="A finished run directory (its own users are embedded), or a vector file "
            "that `clue embed` wrote (.npy, .safetensors, .parquet).",
        ),
    ],
    out: Annotated[
        str, typer.Option("--out", "-o", help="Output CSV: columns user, rank, neighbour, score.")
    ],
    users: Annotated[
        str | None,
        typer.Option(
            "--users",
            help="A file of the user ids to find neighbours for (whitespace-separated, e.g. one "
            "per line). Default: every user.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many neighbours per user.")] = 10,
    stage: Annotated[
        str | None,
        typer.Option(
            "--stage",
            help="For a run directory: finetune (default) or pretrain, as for `clue embed`.",
        ),
    ] = None,
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    batch_size: BatchOption = None,
) -> None:
    """Write each user's k nearest users by cosine similarity of their vectors (exact, in
    blocks: bounded memory at any number of users; a GPU makes it fast)."""
    from clue_fw.devices import resolve_device
    from clue_fw.inference.export import check_csv, write_recommendations
    from clue_fw.inference.neighbours import nearest_users

    one_process("neighbours")
    out_path = Path(out)
    check_csv(out_path, "neighbour")
    ids, vectors, what = _vectors_of(source, stage, data_root, device, batch_size)
    queries = None if users is None else _query_rows(users, ids, what)
    total = len(ids) if queries is None else int(queries.numel())
    with _progress(f"finding each {what}'s {k} nearest", total) as advance:
        found = nearest_users(
            vectors, k, queries=queries, device=resolve_device(device), progress=advance
        )
    neighbour_ids = ids[found.indices.clamp(min=0)]
    neighbour_ids[found.indices < 0] = -1
    rows = write_recommendations(
        out_path, ids[found.queries].tolist(), neighbour_ids, found.scores, "neighbour"
    )
    stderr.print(
        Text(f"wrote {rows:,} neighbours of {total:,} {what}s (of {len(ids):,}) to {out_path}"),
        highlight=False,
    )
    stdout.print(Text(str(out_path)), highlight=False)


def _vectors_of(
    source: str, stage: str | None, data_root: Path | None, device: str, batch_size: int | None
) -> tuple[Any, Any, str]:
    """(ids int64 ``[N]``, vectors ``[N, d]``, ``user`` or ``item``) of a run directory's
    own users or of a vector file."""
    import torch

    from clue_fw.inference import load_run
    from clue_fw.inference.export import read_vectors
    from clue_fw.inference.run_files import check_stage

    path = Path(source)
    if path.is_dir():
        loaded = load_run(
            path, check_stage(stage or "finetune"), device=device, data_root=data_root
        )
        with _progress(
            "embedding the run's users", len(loaded.task_data().sequences.user_ids)
        ) as advance:
            found = loaded.embed_run_users(batch_size=batch_size, progress=advance)
        return torch.as_tensor(_int_ids(found.users)), found.vectors, "user"
    for flag, value in (("--stage", stage), ("--data-root", data_root)):
        if value is not None:
            raise ClueError(
                f"{flag} applies to a run directory; {source} is a vector file, which already "
                f"holds one stage's vectors. Leave {flag} out, or give the run directory."
            )
    read = read_vectors(path, "RUN_OR_VECTORS")
    if read.name != "user":
        raise ClueError(
            f"{source} holds {read.name} vectors (its id field is {quote(read.name)}); nearest "
            "users need user vectors: give a file of `clue embed`, or the run directory."
        )
    return torch.from_numpy(read.ids), torch.from_numpy(read.vectors), "user"


def _query_rows(users: str, ids: Any, what: str) -> Any:
    """Rows of ``ids`` for the ids listed in the file ``users``; unknown ids are an error."""
    import torch

    wanted = _read_ids(users, "--users", what)
    row_of = {int(value): row for row, value in enumerate(ids.tolist())}
    unknown = [value for value in dict.fromkeys(wanted) if value not in row_of]
    if unknown:
        shown = ", ".join(str(value) for value in unknown[:5])
        more = f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else ""
        raise ClueError(
            f"--users {quote(users)}: {len(unknown):,} id(s) are not among the {len(ids):,} "
            f"{what}s of the vectors: {shown}{more}. Use ids of the same data as the run."
        )
    return torch.tensor([row_of[value] for value in wanted], dtype=torch.int64)


def _read_ids(file: str, flag: str, what: str) -> list[int]:
    """The whole-number ids listed in ``file`` (separated by spaces or new lines)."""
    path = Path(file)
    if not path.is_file():
        raise ClueError(f"{flag} {quote(file)}: no such file.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ClueError(f"{flag} {quote(file)} cannot be read as text: {error}.") from None
    ids: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for token in line.split():
            try:
                ids.append(int(token))
            except ValueError:
                raise ClueError(
                    f"{flag} {quote(file)}, line {number}: {quote(token)} is not a whole-"
                    f"number {what} id; list the ids separated by spaces or new lines."
                ) from None
    if not ids:
        raise ClueError(f"{flag} {quote(file)} lists no {what} id.")
    return ids


def one_process(command: str) -> None:
    """Refuse to run ``clue COMMAND`` as one of several processes of a data-parallel
    launch: every process would do the whole work and write the same file."""
    import os

    world = os.environ.get("WORLD_SIZE", "1")
    if world not in ("", "1") and "RANK" in os.environ:
        raise ClueError(
            f"clue {command} runs in one process, but this is one of {world} processes "
            "started by torchrun (WORLD_SIZE is set): each would do the whole work and write "
            f"the same file. Run it without torchrun: clue {command} ... (only `clue run` and "
            "`clue evaluate` split their work over processes)."
        )


def register(app: typer.Typer) -> None:
    """Add ``embed`` and ``recommend`` to the ``clue`` app."""
    app.command("embed")(embed)
    app.command("recommend")(recommend)
    app.command("neighbours")(neighbours)


# --------------------------------------------------------------------------- helpers


def _read_sequences(path: str) -> Any:
    from clue_fw.data.readers import read_sequence_file

    if not path.strip():
        raise ClueError("--data is empty; give a sequence file (`user item item ...` lines).")
    return read_sequence_file(Path(path))


def _quietly(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call`` with its UnknownItemsWarning silenced: :func:`_report` prints the report."""
    from clue_fw.inference import UnknownItemsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownItemsWarning)
        return call(*args, **kwargs)


def _report(report: Any, data: str) -> None:
    """Print what was skipped; refuse when no user of ``data`` is left."""
    if report.sequences and report.empty_count == report.sequences:
        raise ClueError(
            f"No user of {data} has an item of the run's catalogue ({report.catalogue_size:,} "
            "items), so there is nothing to write. Is it from the same dataset, with the same "
            f"item ids, as the run? ({report.summary()})"
        )
    if not report.clean:
        stderr.print(Text.assemble(("warning:", "yellow"), f" {data}: {report.summary()}"))


def _chunks(ids: Any, stream: Any, advance: Callable[[int], None]) -> Iterator[tuple[Any, Any]]:
    """(ids, vectors) pieces of a :class:`~clue_fw.inference.loaded_run.UserVectorStream`."""
    start = 0
    for vectors in stream.chunks:
        yield ids[start : start + len(vectors)], vectors.numpy()
        start += len(vectors)
        advance(len(vectors))


def _int_ids(users: list[Any]) -> Any:
    import numpy as np

    return np.asarray(users, dtype=np.int64).reshape(-1)


def _metadata(loaded: LoadedRun) -> dict[str, str]:
    from clue_fw._version import __version__

    return {
        "run_dir": str(loaded.run_dir),
        "run_id": loaded.identity.run_id,
        "recipe_sha256": loaded.identity.recipe_sha256,
        "stage": loaded.stage,
        "clue_fw": __version__,
    }


@contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A transient rich progress bar on stderr (only on a terminal); yields ``advance(n)``."""
    if not stderr.is_terminal or total <= 0:
        yield lambda done: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, advance=done)
