"""Read what a finished run left: its recipe, identity, a stage's checkpoint and data.

Nothing here is new validation: the recipe is validated by
:func:`~clue_fw.recipe.validate_recipe`, checkpoints are read and checked (run
identity, role) by :meth:`RunReader.load_checkpoint
<clue_fw.running.run_reader.RunReader.load_checkpoint>`, ``metrics.json`` by
:meth:`~clue_fw.running.run_reader.RunReader.finished_metrics` (a plain reader: no lock,
no writes) and the data by its
fingerprint (:class:`~clue_fw.running.identity.DataIdentity`). This module only says
which file a stage means and what to do when it is missing.

Stages: ``finetune`` is ``finetune/best.safetensors`` (the weights with the best
validation metric) of a finished run (one with ``metrics.json``); ``pretrain`` is
``pretrain/encoder.safetensors``, written when pre-training finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from clue_fw.components import TaskData
from clue_fw.data.loading import load_data
from clue_fw.errors import CheckpointError, ClueError, DataError, RunDirectoryError, quote
from clue_fw.recipe import pretrains, read_recipe_file, validate_recipe
from clue_fw.running.finetune import BEST_FILE
from clue_fw.running.identity import (
    RECIPE_FILE,
    DataIdentity,
    RunIdentity,
    directory_identity,
    recipe_sha256,
)
from clue_fw.running.layout import FINETUNE, PRETRAIN, stage_file
from clue_fw.running.os_errors import exists, is_dir, is_file, kind_of
from clue_fw.running.pretrain import ENCODER_FILE, ITEM_IDS_KEY
from clue_fw.running.run_reader import RunReader

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import RecipeLike

Stage = Literal["finetune", "pretrain"]
STAGES: tuple[Stage, ...] = (FINETUNE, PRETRAIN)
#: The checkpoint of each stage: (folder, file, role recorded in its metadata, key prefix
#: of the encoder's tensors).
STAGE_FILES: dict[str, tuple[str, str, str, str]] = {
    FINETUNE: (FINETUNE, BEST_FILE, "best", "model.encoder."),
    PRETRAIN: (PRETRAIN, ENCODER_FILE, "encoder", "encoder."),
}
HEAD_PREFIX = "model.head."
"""Key prefix of the fine-tuned head's tensors in ``finetune/best.safetensors``."""


def check_stage(stage: Any) -> Stage:
    """``stage`` if it names a stage; a :class:`ClueError` saying the choices otherwise."""
    if stage not in STAGES:
        raise ClueError(
            f"stage must be 'finetune' or 'pretrain', not {quote(stage)}: 'finetune' loads the "
            "fine-tuned best weights (finetune/best.safetensors), 'pretrain' the pre-trained "
            "encoder (pretrain/encoder.safetensors)."
        )
    return stage  # type: ignore[no-any-return]


@dataclass(frozen=True)
class RunFiles:
    """A finished run's recipe, identity and the checkpoint of one stage, all checked."""

    run_dir: Path
    stage: Stage
    recipe: RecipeLike
    identity: RunIdentity
    checkpoint: Path
    tensors: dict[str, torch.Tensor]
    metrics: dict[str, Any] | None

    @property
    def encoder_prefix(self) -> str:
        return STAGE_FILES[self.stage][3]


def read_run(run_dir: Path, stage: Stage) -> RunFiles:
    """Check that ``run_dir`` is a run that finished ``stage`` and read that checkpoint."""
    recipe, identity = read_recipe(run_dir)
    reader = run_reader(run_dir, identity)
    metrics = reader.finished_metrics()
    folder, name, role, _ = STAGE_FILES[stage]
    path = stage_file(run_dir, folder, name)
    resume = f"`clue run {run_dir / RECIPE_FILE} --resume {run_dir}`"
    if stage == "pretrain" and not pretrains(recipe):
        elsewhere = recipe.finetune.init_from
        hint = (
            f" it fine-tuned the encoder pre-trained in {elsewhere}: load that run's pretrain "
            "stage, or"
            if elsewhere
            else ""
        )
        raise RunDirectoryError(
            f"The run in {run_dir} did not pre-train (its pretrain objective is none), so it "
            f"has no pre-trained encoder;{hint} load its stage 'finetune' (--stage "
            "finetune)."
        )
    if stage == "finetune" and metrics is None:
        raise RunDirectoryError(
            f"The run in {run_dir} has not finished (it has no metrics.json), so its "
            f"finetune/{BEST_FILE} is not the run's final choice. Let it finish ({resume})"
            + (
                ", or load its pre-trained encoder (stage 'pretrain')."
                if pretrains(recipe)
                else "."
            )
        )
    if not exists(path):
        what = "pre-training has not finished" if stage == "pretrain" else "the file was removed"
        raise CheckpointError(
            f"The run in {run_dir} has no {folder}/{name} ({what}). "
            + (
                f"Let the run finish ({resume})."
                if stage == "pretrain"
                else "Put the run's own file back, or run the recipe again."
            )
        )
    tensors, _ = reader.load_checkpoint(path, role=role)
    return RunFiles(run_dir, stage, recipe, identity, path, tensors, metrics)


def read_recipe(run_dir: Path) -> tuple[Any, RunIdentity]:
    """The validated recipe of ``run_dir`` and the identity on its first line."""
    if not is_dir(run_dir):
        found = kind_of(run_dir)
        if found == "missing":
            raise RunDirectoryError(
                f"Run directory not found: {run_dir}. Give the directory that `clue run` "
                "printed (runs/<name>/<time> by default)."
            )
        raise RunDirectoryError(
            f"{run_dir} is {found}, not a run directory. Give the directory that `clue run` "
            "printed."
        )
    if not is_file(run_dir / RECIPE_FILE):
        raise RunDirectoryError(
            f"{run_dir} holds no {RECIPE_FILE}, so it is not a clue_fw run directory (or its "
            "run was killed before it started). Give the directory that `clue run` printed."
        )
    identity = directory_identity(run_dir)
    if identity is None:
        raise RunDirectoryError(
            f"{run_dir / RECIPE_FILE} does not start with the run identity line (# clue_fw run "
            "<id>, recipe sha256 <hash>): an older clue_fw wrote it, or it was edited, so the "
            "run's checkpoints cannot be checked against it. Refusing to load the run."
        )
    data = read_recipe_file(run_dir / RECIPE_FILE)
    if recipe_sha256(data) != identity.recipe_sha256:
        raise RunDirectoryError(
            f"{run_dir / RECIPE_FILE} was edited after the run started (the recipe no longer "
            "hashes to the recipe sha256 on its first line). Restore the run's own recipe.yaml."
        )
    return validate_recipe(data, str(run_dir / RECIPE_FILE)), identity


def run_reader(run_dir: Path, identity: RunIdentity) -> RunReader:
    """The finished run in ``run_dir``, for reading: every file it reads must carry
    ``identity``; no lock is taken (a finished run is only read)."""
    return RunReader(run_dir, identity)


def stored_item_ids(files: RunFiles) -> np.ndarray | None:
    """The item catalogue the run's pre-trained encoder recorded (:data:`ITEM_IDS_KEY`),
    or None when the run did not pre-train (its catalogue is then in its data only)."""
    if files.stage == "pretrain":
        tensors = files.tensors
    elif pretrains(files.recipe) and exists(stage_file(files.run_dir, PRETRAIN, ENCODER_FILE)):
        reader = run_reader(files.run_dir, files.identity)
        tensors, _ = reader.load_checkpoint(
            stage_file(files.run_dir, PRETRAIN, ENCODER_FILE), "encoder"
        )
    else:
        return None
    ids = tensors.get(ITEM_IDS_KEY)
    if ids is None or ids.dim() != 1 or ids.dtype != torch.int64:
        raise CheckpointError(
            f"{files.run_dir / 'pretrain' / ENCODER_FILE} has no valid item catalogue "
            f"({ITEM_IDS_KEY}); it was not written by this version of clue_fw."
        )
    return ids.numpy()


def load_task_data(files: RunFiles, data_root: Path | None) -> TaskData:
    """The run's data, read again as its recipe says and checked against the fingerprint
    the run recorded: data that changed since the run is refused."""
    return checked_task_data(files.run_dir, files.recipe, files.identity, data_root)


def checked_task_data(
    run_dir: Path, recipe: RecipeLike, identity: RunIdentity, data_root: Path | None
) -> TaskData:
    """:func:`load_task_data` for a run known by its recipe and identity."""
    expected = identity.data
    if expected is None:
        raise RunDirectoryError(
            f"The run in {run_dir} was started by an older clue_fw that did not record a "
            "fingerprint of its data (recipe.yaml's first line has no data sha256), so its data "
            "cannot be checked to be the same. Run the recipe again."
        )
    try:
        task_data = recipe.finetune.head.prepare(load_data(recipe.data, data_root), data_root)
    except DataError as exc:
        raise DataError(
            f"Reading the data of the run in {run_dir} (its item ids and users come from it): {exc}"
        ) from None
    found = DataIdentity.of(task_data)
    if found != expected:
        raise DataError(
            f"The data that the recipe of {run_dir} names is not the data the run used (then: "
            f"{expected.describe()}; now: {found.describe()}; data sha256 "
            f"{expected.sha256[:12]}… then, {found.sha256[:12]}… now): its users and item ids "
            "would not match the run's. Point the data root ($CLUE_DATA_DIR, or --data-root) "
            "at the data the run used."
        )
    return task_data  # type: ignore[no-any-return]
