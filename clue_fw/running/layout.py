"""The layout of a run directory: every file name and stage path, in one place.

::

    .lock                         the lock file: a run holds an exclusive lock on it
    recipe.yaml                   the resolved recipe; its first line is the run identity
    run.log                       everything the run printed, time-stamped
    pretrain/last.safetensors     pre-training state after the last finished epoch
    pretrain/encoder.safetensors  the pre-trained encoder handed to fine-tuning
    pretrain/history.csv          one row per pre-training epoch
    finetune/last.safetensors     fine-tuning state after the last finished epoch
    finetune/best.safetensors     weights with the best validation metric
    finetune/history.csv          one row per fine-tuning epoch
    metrics.json                  final validation and test metrics (written last)

The writers (:mod:`clue_fw.running.run_directory`, the stages) and the readers
(inference, analysis, the CLI) take the names from here and join stage paths with
:func:`stage_file`. Plain strings and paths only: this module imports nothing, so the
lowest layers (:mod:`clue_fw.file_safety`) may read it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

RECIPE_FILE = "recipe.yaml"
LOCK_FILE = ".lock"
LOG_FILE = "run.log"
METRICS_FILE = "metrics.json"

PRETRAIN: Literal["pretrain"] = "pretrain"
FINETUNE: Literal["finetune"] = "finetune"
STAGES = (PRETRAIN, FINETUNE)
"""The stage folders, in the order a run trains them."""

LAST_FILE = "last.safetensors"
"""A stage's state after its last finished epoch (what ``--resume`` continues from)."""
BEST_FILE = "best.safetensors"
"""Fine-tuning's weights with the best validation metric."""
ENCODER_FILE = "encoder.safetensors"
"""The encoder pre-training hands to fine-tuning."""
HISTORY_FILE = "history.csv"
"""One row per epoch of a stage."""

RUN_OWN_FILES = (RECIPE_FILE, LOCK_FILE, LOG_FILE, METRICS_FILE)
"""The files at the top of a run directory that the run writes."""
RUN_OWN_FOLDERS = STAGES
"""The folders of a run directory that the run writes."""


def recipe_path(run_dir: Path) -> Path:
    return Path(run_dir) / RECIPE_FILE


def metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / METRICS_FILE


def stage_dir(run_dir: Path, stage: str) -> Path:
    """The folder of ``stage`` (``pretrain`` or ``finetune``) in ``run_dir``."""
    return Path(run_dir) / stage


def stage_file(run_dir: Path, stage: str, name: str) -> Path:
    """The file ``name`` of ``stage`` in ``run_dir`` (``finetune/last.safetensors``...)."""
    return stage_dir(run_dir, stage) / name
