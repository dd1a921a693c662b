"""The tiny synthetic recipe the data-parallel tests run in one and in two processes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# CLUE pre-training with dropout (and mask) views, then next-item fine-tuning. The
# backbone's dropout is 0: each process draws its own dropout masks, so only a run
# without dropout can follow one process's run to the float.
RECIPE: dict[str, Any] = {
    "seed": 3,
    "device": "cpu",
    "data": {
        "format": "synthetic",
        "num_users": 240,
        "num_items": 50,
        "min_length": 5,
        "max_length": 15,
        "num_clusters": 5,
        "max_len": 10,
    },
    "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2, "dropout": 0.0},
    "pretrain": {
        "objective": {"kind": "clue", "projector_dim": 16, "predictor_dim": 8},
        "views": [{"kind": "dropout"}, {"kind": "mask", "probability": 0.5}],
        # batches of 64 rows: 32 per process; the last global batch may split unevenly
        "train": {"epochs": 3, "batch_size": 64},
    },
    "finetune": {
        # every row one target: the loss is a mean over rows, shared exactly by processes
        "head": {"kind": "next_item", "loss_positions": "ur", "exclude_seen": "none"},
        "train": {"epochs": 4, "batch_size": 64},
        "patience": 10,
    },
}


def write_recipe(folder: Path, **changes: Any) -> Path:
    recipe = copy.deepcopy(RECIPE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = recipe
        for key in parents:
            node = node[key]
        node[last] = value
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path
