"""Evaluate one checkpoint of a run again: the head's exact metrics on its splits.

>>> found = evaluate_run("runs/quickstart/20261130-120000-ab12")   # doctest: +SKIP
>>> found["test"]["ndcg@10"]                                        # doctest: +SKIP
0.4012

:func:`evaluate_run` loads a run's recipe and one fine-tuning checkpoint with the
checks ``--resume`` makes (run identity, checkpoint role, data fingerprint), rebuilds
the encoder and head as the run built them and scores the splits with the same
function the run used (:func:`~clue_fw.training.loop.evaluate`). Started by
``torchrun``, the processes score their parts of the users and add up the metric sums
(:mod:`clue_fw.distributed`): rank 0 alone reads the run directory and hands the
recipe and the weights to the others. The metrics of the same weights are then the
same, to the bit, for any number of processes (``docs/distributed.md``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from clue_fw.devices import process_device
from clue_fw.distributed import Distributed, launch_from_environment, session
from clue_fw.errors import CheckpointError, ClueError, RunDirectoryError, quote
from clue_fw.inference.run_files import checked_task_data, read_recipe, run_reader
from clue_fw.recipe import validate_recipe
from clue_fw.running.assembly import run_context
from clue_fw.running.finetune import BEST_FILE
from clue_fw.running.identity import RunIdentity
from clue_fw.running.layout import FINETUNE, recipe_path, stage_file
from clue_fw.running.os_errors import exists
from clue_fw.running.stage import LAST_FILE
from clue_fw.training.checkpoint import load_module_tensors

Checkpoint = Literal["best", "last"]
CHECKPOINTS: dict[str, str] = {"best": BEST_FILE, "last": LAST_FILE}
SPLITS = ("valid", "test")


def check_evaluation_arguments(checkpoint: Any, splits: Any) -> tuple[Checkpoint, list[str]]:
    """``checkpoint`` and ``splits`` if they name a checkpoint and splits; a
    :class:`ClueError` saying the choices otherwise."""
    if checkpoint not in CHECKPOINTS:
        raise ClueError(
            f"checkpoint must be 'best' (finetune/{BEST_FILE}: the weights with the best "
            f"validation metric, of a finished run) or 'last' (finetune/{LAST_FILE}: the "
            f"last finished epoch), not {quote(checkpoint)}."
        )
    chosen = list(splits)
    bad = [s for s in chosen if s not in SPLITS]
    if not chosen or bad:
        shown = ", ".join(quote(s) for s in bad) or "none"
        raise ClueError(
            f"splits must be some of 'valid' and 'test' (got {shown}); e.g. --split valid "
            "--split test."
        )
    return checkpoint, list(dict.fromkeys(chosen))


def evaluate_run(
    run_dir: str | os.PathLike[str],
    checkpoint: Checkpoint = "best",
    splits: list[str] | tuple[str, ...] = SPLITS,
    *,
    device: str | None = None,
    data_root: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The metrics of one fine-tuning checkpoint of ``run_dir`` on ``splits``.

    ``checkpoint``: ``best`` (``finetune/best.safetensors`` of a finished run) or
    ``last`` (``finetune/last.safetensors``, the last finished epoch). ``device``: the
    run's own recipe device when None (``auto``, ``cpu``, ``cuda``...). ``data_root``:
    where the run's data lives (default ``$CLUE_DATA_DIR``); data that changed since the
    run is refused.

    Returns ``{"run_dir", "run_id", "checkpoint", "epoch", "processes", "device",
    "seconds", <split>: {metric: value}}``; every process of a torchrun launch returns
    the same mapping. A bad run directory or checkpoint is a :class:`ClueError` on every
    process (exit code 2 from the CLI).
    """
    chosen, wanted = check_evaluation_arguments(checkpoint, splits)
    path = Path(run_dir)
    if not str(run_dir).strip():
        raise RunDirectoryError(
            "The run directory is empty; give the directory that `clue run` printed."
        )
    root = Path(data_root) if data_root is not None else None
    launch = launch_from_environment()
    # Every process reads the recipe's device before the processes meet (they must agree
    # on CUDA or the CPU); a bad run directory is refused here, by each, with exit code 2.
    # A process on a machine without the run directory (several machines) uses --device,
    # or auto.
    if device is None and (launch is None or launch.rank == 0 or recipe_path(path).is_file()):
        device = str(read_recipe(path)[0].device)
    torch_device = process_device(device if device is not None else "auto", launch)
    with session(launch, torch_device) as distributed:
        return _evaluate(path, chosen, wanted, torch_device, root, distributed)


def _evaluate(
    run_dir: Path,
    checkpoint: Checkpoint,
    splits: list[str],
    device: torch.device,
    data_root: Path | None,
    distributed: Distributed,
) -> dict[str, Any]:
    started = time.perf_counter()
    loaded: dict[str, Any] = {}

    def read() -> dict[str, Any]:  # rank 0: the run's recipe, identity and checkpoint
        recipe, identity, tensors, epoch, file = _read_checkpoint(run_dir, checkpoint)
        loaded.update(tensors=tensors, file=file)
        return {
            "recipe": recipe.model_dump(mode="json"),
            "identity": identity.to_json(),
            "epoch": epoch,
        }

    found = distributed.on_main(read)
    recipe = validate_recipe(found["recipe"], str(recipe_path(run_dir)))
    identity = RunIdentity.from_json(found["identity"])
    if identity is None:
        raise RunDirectoryError(f"The identity of the run in {run_dir} could not be read back.")
    task_data = distributed.together(
        lambda: checked_task_data(run_dir, recipe, identity, data_root)
    )
    context = run_context(recipe, task_data, data_root)
    spec = recipe.finetune
    with torch.random.fork_rng(devices=[]):  # building must not move the caller's RNG
        encoder = recipe.backbone.build(context)
        head = spec.head.build(context, encoder, task_data)
    module = nn.ModuleDict({"encoder": encoder, "head": head}).to(device)
    if distributed.is_main:
        load_module_tensors(module, loaded["tensors"], "model.", loaded["file"])
    distributed.broadcast_module(module)  # rank 0's weights on every process
    module.eval()
    task = spec.head.make_task(task_data, context, spec.train.history)
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "run_id": identity.run_id,
        "checkpoint": checkpoint,
        "epoch": found["epoch"],
        "processes": distributed.world_size,
        "device": str(device),
    }
    for split in splits:
        examples = task.split(split).to(device)
        result[split] = distributed.evaluate(head, encoder, examples, spec.eval.batch_size, split)
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def _read_checkpoint(
    run_dir: Path, checkpoint: Checkpoint
) -> tuple[Any, RunIdentity, dict[str, torch.Tensor], int | None, Path]:
    """(recipe, identity, tensors, epoch, file) of a checkpoint, with ``--resume``'s checks
    (the run's identity on the file, the file's role)."""
    recipe, identity = read_recipe(run_dir)
    reader = run_reader(run_dir, identity)
    file = stage_file(run_dir, FINETUNE, CHECKPOINTS[checkpoint])
    if checkpoint == "best" and reader.finished_metrics() is None:
        raise RunDirectoryError(
            f"The run in {run_dir} has not finished (it has no metrics.json), so its "
            f"finetune/{BEST_FILE} is not the run's final choice. Let it finish (`clue run "
            f"--resume {run_dir}`), or evaluate its last finished epoch (--checkpoint last)."
        )
    if not exists(file):
        what = (
            "no fine-tuning epoch has finished yet"
            if checkpoint == "last"
            else "the file was removed"
        )
        raise CheckpointError(
            f"The run in {run_dir} has no finetune/{CHECKPOINTS[checkpoint]} ({what}), so "
            "there are no fine-tuned weights to evaluate. Let the run go on (`clue run "
            f"--resume {run_dir}`), or give another run."
        )
    tensors, metadata = reader.load_checkpoint(file, role=checkpoint)
    return recipe, identity, tensors, _epoch(metadata.get("epoch")), file


def _epoch(value: Any) -> int | None:
    return value if type(value) is int else None


__all__ = ["CHECKPOINTS", "SPLITS", "check_evaluation_arguments", "evaluate_run"]
