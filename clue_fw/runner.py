"""Run a recipe end to end: data, optional pre-training, fine-tuning, metrics.

:func:`run` is the orchestration only; the parts live in :mod:`clue_fw.running`:
the run directory with its lock and identity (``run_directory``), the stage
bookkeeping (``stage``) and the two stage drivers (``pretrain``, ``finetune``). The
layout of a run directory is described in :mod:`clue_fw.running.run_directory`.

Started by ``torchrun`` (``WORLD_SIZE`` > 1), the processes train one model together,
data-parallel, on the recipe's global batches; rank 0 alone touches the run directory
(:mod:`clue_fw.distributed`, ``docs/distributed.md``).

Every epoch ends with a checkpoint, so ``--resume`` continues from the last
finished epoch. Randomness is re-seeded from (seed, stage, epoch) at the start
of every epoch, which makes a resumed run follow the uninterrupted one exactly.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel
from rich.console import Console

from clue_fw._deprecated import moved_names
from clue_fw.components import BuildContext, SequenceEncoder, TaskData
from clue_fw.data.dataset import SequenceData
from clue_fw.data.loading import load_data
from clue_fw.devices import process_device
from clue_fw.distributed import Distributed, check_batch_sizes, launch_from_environment, session
from clue_fw.errors import ClueError, DataError, RecipeError, RunDirectoryError
from clue_fw.memory import Estimate
from clue_fw.recipe import load_recipe, pretrains, training_batch_sizes, validate_recipe
from clue_fw.resources import check_memory, translate_memory_errors
from clue_fw.running.assembly import run_context
from clue_fw.running.finetune import check_encoder_checkpoint, run_finetune
from clue_fw.running.identity import DataIdentity, RunIdentity
from clue_fw.running.layout import FINETUNE, LAST_FILE, RECIPE_FILE, recipe_path, stage_file
from clue_fw.running.os_errors import is_file, kind_of
from clue_fw.running.pretrain import run_pretrain
from clue_fw.running.run_directory import METRICS_FILE, RunDirectory, versions
from clue_fw.training.checkpoint import load_module_tensors
from clue_fw.training.loop import derive_seed
from clue_fw.training.report import Reporter

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import RecipeLike


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    #: This process's rank in a data-parallel run (0 in a one-process run): every process
    #: returns the same result; the CLI prints it from rank 0 only.
    rank: int = 0


# Device resolution lives below the runner (inference resolves devices too).
__getattr__ = moved_names(__name__, {"resolve_device": "clue_fw.devices"})

#: Runs in one process take turns: dropout and initialisation draw from torch's global
#: random state, which threads share, so two runs at once would not be reproducible.
_ONE_RUN_AT_A_TIME = threading.Lock()


def _check_run_arguments(recipe: object, out: Any, resume: Any) -> None:
    """Refuse arguments of :func:`run` that are not what it takes, in words."""
    if not isinstance(recipe, BaseModel | dict):
        raise RecipeError(
            f"clue_fw.run() takes a validated recipe or a recipe mapping, not "
            f"{type(recipe).__name__}. To run a YAML file, pass "
            "clue_fw.recipe.load_recipe(path); to continue a run with the recipe it stored, "
            "pass resume=DIR alone."
        )
    if out is not None and resume is not None:
        raise RunDirectoryError(
            "Use either --out (a new run) or --resume (an existing run), not both."
        )
    for flag, value in (("--out", out), ("--resume", resume)):
        if value is None:
            continue
        if not isinstance(value, str | os.PathLike):
            raise RunDirectoryError(
                f"{flag} must be a path (str or pathlib.Path), not {type(value).__name__}."
            )
        if isinstance(value, str) and not value.strip():
            raise RunDirectoryError(
                f"{flag} is empty; give the run directory's path (an empty path would mean "
                "the current directory)."
            )


def stored_recipe(resume: str | os.PathLike[str], overrides: list[str] | None = None) -> Any:
    """The recipe that the run in ``resume`` stored (its ``recipe.yaml``), validated, with
    ``overrides`` (``--set``) applied: what ``run(resume=DIR)`` continues without a recipe."""
    if isinstance(resume, str) and not resume.strip():
        raise ClueError("--resume is empty; give the run directory that `clue run` printed.")
    found = kind_of(Path(resume))
    if found == "missing":
        raise ClueError(
            f"Cannot resume {resume}: no such directory. Check the path (the directory that "
            "`clue run` printed), or start a new run with --out."
        )
    if found != "a directory":
        raise ClueError(
            f"Cannot resume {resume}: it is {found}, not a run directory. Give --resume the "
            "directory a run wrote."
        )
    stored = recipe_path(Path(resume))
    if kind_of(stored) == "missing":
        raise ClueError(
            f"Cannot resume {resume} without a recipe: it holds no {RECIPE_FILE}, so it is not "
            "a clue_fw run directory (or the run was killed before it wrote one). Check the "
            "path, or give the recipe: clue run RECIPE --resume DIR."
        )
    return load_recipe(stored, overrides)


def _init_from_inside(init_from: str, out: Path) -> bool:
    """Whether ``finetune.init_from`` lies inside ``out`` (which --overwrite deletes)."""
    try:
        source, target = Path(init_from).resolve(), out.resolve()
    except (OSError, RuntimeError):
        return False
    return source == target or target in source.parents


@dataclass(frozen=True)
class RunRequest:
    """What :func:`run` was asked for, checked: the arguments its steps share."""

    recipe: RecipeLike  # validated
    out: Path | None
    resume: Path | None
    overwrite: bool
    console: Console | None
    data_root: Path | None
    on_directory: Callable[[Path], None] | None


def run(
    recipe: BaseModel | dict[str, Any] | None = None,
    out: Path | str | None = None,
    resume: Path | str | None = None,
    overwrite: bool = False,
    console: Console | None = None,
    data_root: Path | None = None,
    on_directory: Callable[[Path], None] | None = None,
) -> RunResult:
    """Run a validated recipe (or a recipe mapping) and return its run directory and metrics.

    ``out`` starts a new run (default ``runs/<name>/<time>``; ``overwrite`` replaces a
    non-empty one), ``resume`` continues the run in that directory; not both. With
    ``resume`` and no recipe, the run continues with the recipe it stored
    (:func:`stored_recipe`). The run holds an exclusive lock on its directory until this
    function returns or raises;
    runs in one process take turns (torch's random state is process-wide).
    ``on_directory(path)`` is called (on rank 0) once the run directory is open, e.g. so
    that an interrupted run can name the directory to resume.
    """
    if recipe is None and out is None and isinstance(resume, str | os.PathLike):
        recipe = stored_recipe(resume)
    _check_run_arguments(recipe, out, resume)
    if isinstance(recipe, dict):
        recipe = validate_recipe(recipe)
    request = RunRequest(
        recipe,
        Path(out) if out is not None else None,
        Path(resume) if resume is not None else None,
        overwrite,
        console,
        data_root,
        on_directory,
    )
    with _ONE_RUN_AT_A_TIME:
        return _run(request)


def _run(request: RunRequest) -> RunResult:
    r = request.recipe
    launch = launch_from_environment()  # started by torchrun: one process of several
    if launch is not None:
        check_batch_sizes(training_batch_sizes(r), launch.world_size)  # before they meet
    device = process_device(r.device, launch)
    with session(launch, device) as distributed:
        return _run_process(request, device, distributed)


def _run_process(request: RunRequest, device: torch.device, distributed: Distributed) -> RunResult:
    """The run, as one process of ``distributed`` runs it (rank 0 alone touches the run
    directory; see :mod:`clue_fw.distributed`)."""
    started = time.perf_counter()
    r = request.recipe
    task_data = distributed.together(lambda: _prepare_data(r, request.data_root))
    data_identity = DataIdentity.of(task_data)  # --resume refuses data that changed
    if distributed.parallel:
        _check_same_data(distributed, data_identity)
    context = run_context(r, task_data, request.data_root)
    _check_init_from_survives(request)
    estimate, initial_encoder = _check_before_opening(
        request, task_data, context, device, distributed
    )
    encoder = _build_encoder(r, context, device, estimate, initial_encoder)
    task_stats = task_data.stats()
    opened: list[tuple[RunDirectory, Reporter]] = []
    state = distributed.on_main(
        lambda: _open_directory(
            request,
            data_identity,
            _setup_lines(task_data.sequences, task_stats, device, distributed),
            opened,
        )
    )
    if state["finished"] is not None:
        return RunResult(Path(state["path"]), state["finished"], distributed.rank)
    directory, reporter = opened[0] if distributed.is_main else _follow_directory(r, state)
    with directory:
        # Running out of memory anywhere below is a ResourceError naming the estimate.
        with translate_memory_errors(estimate, device, "the run"):
            metrics = _train(
                r, task_data, context, encoder, device, directory, reporter, distributed
            )
        metrics.update(_run_facts(r, device, started, task_data.sequences, task_stats))
        if distributed.parallel:
            metrics["processes"] = distributed.world_size
        stamped = distributed.on_main(lambda: _finish(directory, reporter, metrics))
        return RunResult(directory.path, stamped, distributed.rank)


def _prepare_data(r: RecipeLike, data_root: Path | None) -> TaskData:
    """The recipe's data, prepared for its fine-tuning head."""
    with translate_memory_errors(None, torch.device("cpu"), "loading the data"):
        return r.finetune.head.prepare(load_data(r.data, data_root), data_root)


def _check_init_from_survives(request: RunRequest) -> None:
    """Refuse a ``finetune.init_from`` that ``--overwrite`` would delete before it is read."""
    init_from, out_path = request.recipe.finetune.init_from, request.out
    if init_from and request.overwrite and out_path is not None:
        if _init_from_inside(init_from, out_path):
            raise RecipeError(
                f"finetune.init_from: {init_from} lies inside --out {out_path}, which "
                "--overwrite would delete before the run reads it. Copy the encoder "
                "elsewhere, or choose another --out."
            )


#: The encoder of ``finetune.init_from``, read before the run directory exists: its file
#: and its tensors.
_InitialEncoder = tuple[Path, dict[str, torch.Tensor]]


def _check_before_opening(
    request: RunRequest,
    task_data: TaskData,
    context: BuildContext,
    device: torch.device,
    distributed: Distributed,
) -> tuple[Estimate | None, _InitialEncoder | None]:
    """Before the run directory exists, refuse a recipe that cannot fit and read (on
    rank 0) the ``finetune.init_from`` encoder; nothing to check for a finished run.
    Returns the memory estimate and the encoder to load (``None`` where there is none)."""
    r, resume_path = request.recipe, request.resume
    init_from = r.finetune.init_from
    resuming_finetune, unfinished = distributed.on_main(  # rank 0 looks at the directory
        lambda: [
            resume_path is not None and is_file(stage_file(resume_path, FINETUNE, LAST_FILE)),
            resume_path is None or not is_file(resume_path / METRICS_FILE),
        ]
    )
    if not unfinished:
        return None, None
    data = task_data.sequences

    def check() -> tuple[Estimate | None, _InitialEncoder | None]:
        found = check_memory(r, data, context, device, task_data)
        # a resumed fine-tuning has its weights; rank 0 reads init_from for everyone
        if init_from and not resuming_finetune and distributed.is_main:
            return found, check_encoder_checkpoint(init_from, r, data)
        return found, None

    return distributed.together(check)


def _build_encoder(
    r: RecipeLike,
    context: BuildContext,
    device: torch.device,
    estimate: Estimate | None,
    initial_encoder: _InitialEncoder | None,
) -> SequenceEncoder:
    """The recipe's encoder on ``device``, seeded, with the ``finetune.init_from``
    weights when there are any."""
    torch.manual_seed(derive_seed(r.seed, "init"))
    with translate_memory_errors(estimate, device, "building the model"):
        encoder = r.backbone.build(context).to(device)
        if initial_encoder is not None:  # finetune.init_from, read and checked above
            # before the run directory exists: an encoder that does not fit is refused here
            load_module_tensors(encoder, initial_encoder[1], "encoder.", initial_encoder[0])
    return encoder


def _setup_lines(
    data: SequenceData, task_stats: dict[str, Any], device: torch.device, distributed: Distributed
) -> list[str]:
    """The log lines that say what the run trains on, and where."""
    where = f"device: {device}"
    if distributed.parallel:
        where += f" (rank 0 of {distributed.world_size} processes)"
    lines = [f"data: {data.summary()}; {where}"]
    if task_stats:
        lines.append(f"task: {task_stats}")
    return lines


def _open_directory(
    request: RunRequest,
    data_identity: DataIdentity,
    setup_lines: list[str],
    opened: list[tuple[RunDirectory, Reporter]],
) -> dict[str, Any]:
    """Rank 0: open the run directory and start its log; an unfinished run's directory
    and reporter go to ``opened``. Returns what the other processes need to know."""
    directory = RunDirectory.open(
        request.recipe, request.out, request.resume, request.overwrite, data_identity
    )
    try:
        run_dir = directory.path
        if request.on_directory is not None:
            request.on_directory(run_dir)
        reporter = Reporter(request.console, directory.log_path, guard=directory.check_owned)
        if directory.restarted:
            reporter.log(
                f"{run_dir} was interrupted before it wrote anything; starting from scratch."
            )
        finished = None if directory.fresh else directory.finished_metrics()
        if finished is not None:
            reporter.log(f"{run_dir} already finished; nothing to resume.")
            directory.close()
            return _opened(directory, finished)
        reporter.log(f"run directory: {run_dir}")
        for line in setup_lines:
            reporter.log(line)
    except BaseException:
        directory.close()
        raise
    opened.append((directory, reporter))
    return _opened(directory, None)


def _follow_directory(r: RecipeLike, state: dict[str, Any]) -> tuple[RunDirectory, Reporter]:
    """Ranks other than 0: the run directory rank 0 opened (never touched here), and a
    reporter that prints nothing."""
    directory = RunDirectory.follower(
        Path(state["path"]),
        r.model_dump(mode="json"),
        RunIdentity.from_json(state["identity"]) or RunIdentity("unknown", "unknown"),
        fresh=state["fresh"],
    )
    return directory, Reporter(Console(quiet=True), None)


def _train(
    r: RecipeLike,
    task_data: TaskData,
    context: BuildContext,
    encoder: SequenceEncoder,
    device: torch.device,
    directory: RunDirectory,
    reporter: Reporter,
    distributed: Distributed,
) -> dict[str, Any]:
    """Pre-train (when the recipe does), then fine-tune; fine-tuning's metrics."""
    parallel = {"distributed": distributed} if distributed.parallel else {}
    if pretrains(r):
        run_pretrain(r, task_data, context, encoder, device, directory, reporter, **parallel)
    return run_finetune(r, task_data, context, encoder, device, directory, reporter, **parallel)


def _run_facts(
    r: RecipeLike,
    device: torch.device,
    started: float,
    data: SequenceData,
    task_stats: dict[str, Any],
) -> dict[str, Any]:
    """What ``metrics.json`` records about the run besides its metrics."""
    return {
        "recipe": r.name,
        "seed": r.seed,
        "device": str(device),
        "seconds": round(time.perf_counter() - started, 2),
        "task": task_stats,
        "data": {
            "users": data.num_users,
            "items": data.num_items,
            "interactions": data.num_interactions,
        },
        "versions": versions(),
    }


def _finish(directory: RunDirectory, reporter: Reporter, metrics: dict[str, Any]) -> dict[str, Any]:
    """Rank 0: show the metrics and write ``metrics.json``, the run's last file; the
    metrics as written."""
    reporter.metrics_table({"valid": metrics["valid"], "test": metrics["test"]})
    stamped = directory.write_metrics(metrics)  # the last file: the run has finished
    try:
        reporter.log(f"metrics written to {directory.metrics_path}")
    except RunDirectoryError:
        pass  # printed; only run.log missed the line, and the run has finished
    return stamped


def _opened(directory: RunDirectory, finished: dict[str, Any] | None) -> dict[str, Any]:
    """What rank 0 tells the other processes about the run directory it opened."""
    return {
        "path": str(directory.path),
        "identity": directory.identity.to_json(),
        "fresh": directory.fresh,
        "finished": finished,
    }


def _check_same_data(distributed: Distributed, mine: DataIdentity) -> None:
    """Refuse, on every process, data that differs from rank 0's (a multi-node run
    whose machines hold different files would otherwise train on a mixture)."""
    theirs = distributed.broadcast_json(mine.sha256)

    def compare() -> None:
        if theirs != mine.sha256:
            raise DataError(
                f"Rank {distributed.rank} prepared other data than rank 0 (data sha256 "
                f"{mine.sha256[:12]}… here, {theirs[:12]}… on rank 0; {mine.describe()} "
                "here). Every machine of a data-parallel run needs the same data files and "
                "CLUE_DATA_DIR contents."
            )

    distributed.together(compare)
