"""The one way from a recipe and its data to the :class:`BuildContext` components get.

`clue run`, `clue evaluate`, :func:`clue_fw.load_run` (so `clue embed`, `recommend`,
`probe`) and `clue analyze` build the backbone, views and head of a run from the same
context: the item count, ``max_len``, the original item ids, the data root and, where the
run's data has been read, the training item counts. A component that reads side data at
build time (item attributes keyed by the original ids) therefore builds the same way in
all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from clue_fw.components import BuildContext, TaskData

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import RecipeLike


def training_item_counts(recipe: RecipeLike, task_data: TaskData) -> torch.Tensor:
    """``[num_items + 1]`` counts of each item in the sequences training may see (the
    head's :meth:`pretrain_sequences`: valid and test targets left out), for
    components that sample items by popularity."""
    num_items = task_data.sequences.num_items
    values = recipe.finetune.head.pretrain_sequences(task_data).values
    return torch.bincount(values.reshape(-1), minlength=num_items + 1)[: num_items + 1]


def run_context(recipe: RecipeLike, task_data: TaskData, data_root: Path | None) -> BuildContext:
    """The context of a run whose data has been read (training, evaluation, a loaded run
    that read its data)."""
    data = task_data.sequences
    return BuildContext(
        num_items=data.num_items,
        max_len=recipe.data.max_len,
        item_ids=data.item_ids,
        data_root=data_root,
        item_counts=training_item_counts(recipe, task_data),
    )


def catalogue_context(
    recipe: RecipeLike, item_ids: np.ndarray, data_root: Path | None
) -> BuildContext:
    """The context of a loaded run that did not read its data: its checkpoint's item ids
    (the very ids of its data) and the data root; no training item counts, which only the
    data holds and no inference-time build reads."""
    return BuildContext(
        num_items=len(item_ids),
        max_len=recipe.data.max_len,
        item_ids=np.asarray(item_ids),
        data_root=data_root,
    )
