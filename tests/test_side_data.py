"""Objectives that need side data: the runner's BuildContext carries the data's original
item ids and the data root, so an objective can read a file keyed by item (docs/plugins.md,
"Objectives that need side data")."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import pytest
import torch
from torch import nn

from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import (
    Augmentation,
    BuildContext,
    LossOutput,
    ObjectiveSpec,
    PretrainObjective,
    SequenceEncoder,
)
from clue_fw.data.root import resolve_data_path
from clue_fw.errors import DataError
from clue_fw.hookspecs import hookimpl
from clue_fw.registry import build_registry, reset_registry
from clue_fw.runner import run

#: What each built objective read: internal item id -> weight from the side file.
SEEN: list[dict[int, float]] = []


class WeightedItems(PretrainObjective):
    """Pulls each item's embedding norm towards the weight the side file gives it."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights, persistent=False)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(
        self,
        encoder: SequenceEncoder,
        items: torch.Tensor,
        view: Augmentation,
        generator: torch.Generator,
    ) -> LossOutput:
        norms = self.scale * encoder(items).states.norm(dim=-1)
        loss = ((norms - self.weights[items]) ** 2 * (items != 0)).mean()
        return LossOutput(loss, {})


class SideFileSpec(ObjectiveSpec):
    """Test objective that reads a JSON of item weights (original item id -> weight)."""

    kind: Literal["side_file"] = "side_file"
    weights: str = "weights.json"

    def build(self, context: BuildContext, encoder: SequenceEncoder) -> WeightedItems:
        assert context.item_ids is not None
        path = resolve_data_path(self.weights, context.data_root, "pretrain.objective.weights")
        table = json.loads(path.read_text())
        weights = torch.zeros(context.vocab_size)
        for row, item in enumerate(context.item_ids.tolist(), start=1):
            weights[row] = float(table.get(str(item), 0.0))
        SEEN.append({row: float(weights[row]) for row in range(1, context.num_items + 1)})
        return WeightedItems(weights)


PLUGIN = SimpleNamespace(clue_register_objectives=hookimpl(lambda: [SideFileSpec]))


def recipe(path: str) -> dict[str, Any]:
    return {
        "device": "cpu",
        "data": {"format": "sequences", "path": path, "max_len": 5},
        "backbone": {"kind": "transformer", "dim": 8, "blocks": 1, "heads": 2},
        "pretrain": {"objective": {"kind": "side_file"}, "train": {"epochs": 1, "batch_size": 4}},
        "finetune": {
            "head": {"kind": "next_item", "exclude_seen": "none"},
            "train": {"epochs": 1, "batch_size": 4},
        },
    }


def test_runner_passes_item_ids_and_data_root(tmp_path: Path) -> None:
    # original ids 30, 10, 20 become internal items 3, 1, 2 (sorted by original id)
    (tmp_path / "seq.txt").write_text("1 30 10 20 30\n2 10 20 30 10\n3 20 30 10 20\n")
    (tmp_path / "weights.json").write_text(json.dumps({"10": 1.0, "20": 2.0, "99": 9.0}))
    SEEN.clear()
    reset_registry(build_registry(extra_plugins=[(PLUGIN, "side-file (test)")]))
    try:
        run(recipe("seq.txt"), out=tmp_path / "run", console=None, data_root=tmp_path)
        (tmp_path / "weights.json").unlink()
        with pytest.raises(DataError, match="weights.json"):
            run(recipe("seq.txt"), out=tmp_path / "run2", console=None, data_root=tmp_path)
    finally:
        reset_registry(None)
    # item 30 has no weight; id 99 is not in the data: ignored
    assert SEEN and all(seen == {1: 1.0, 2: 2.0, 3: 0.0} for seen in SEEN)


def test_side_data_fields_do_not_change_context_equality() -> None:
    plain = BuildContext(3, 5)
    rich = BuildContext(3, 5, item_ids=np.array([10, 20, 30]), data_root=Path("/data"))
    assert plain == rich and hash(plain) == hash(rich)
    assert plain.item_ids is None and plain.data_root is None


# ------------------------------------------------------- a backbone that reads side data

#: Every context a SideBackbone was built with (what `run`, `evaluate` and `load_run` gave).
CONTEXTS: list[BuildContext] = []


class SideBackboneSpec(TransformerSpec):
    """The Transformer, but its build reads a side file by the data's original item ids,
    as a backbone with item-attribute embeddings would."""

    kind: Literal["side_transformer"] = "side_transformer"  # type: ignore[assignment]

    def build(self, context: BuildContext) -> Any:
        if context.item_ids is None:
            raise AssertionError("the backbone was built without the data's item ids")
        resolve_data_path("weights.json", context.data_root, "backbone")  # it must be found
        CONTEXTS.append(context)
        return super().build(context)


BACKBONE_PLUGIN = SimpleNamespace(clue_register_backbones=hookimpl(lambda: [SideBackboneSpec]))


def test_a_backbone_reading_side_data_gets_the_same_context_everywhere(tmp_path: Path) -> None:
    from clue_fw.inference import load_run
    from clue_fw.inference.evaluation import evaluate_run

    (tmp_path / "seq.txt").write_text("1 30 10 20 30\n2 10 20 30 10\n3 20 30 10 20\n")
    (tmp_path / "weights.json").write_text("{}")
    side = recipe("seq.txt")
    side["backbone"]["kind"] = "side_transformer"
    side["pretrain"] = {"objective": {"kind": "none"}}
    CONTEXTS.clear()
    reset_registry(build_registry(extra_plugins=[(BACKBONE_PLUGIN, "side-backbone (test)")]))
    try:
        run_dir = run(side, out=tmp_path / "run", console=None, data_root=tmp_path).run_dir
        trained = CONTEXTS[-1]
        loaded = load_run(run_dir, device="cpu", data_root=tmp_path)  # clue embed, recommend
        evaluate_run(run_dir, data_root=tmp_path, device="cpu")  # clue evaluate
        loaded.untrained()  # clue probe's random encoder
    finally:
        reset_registry(None)
    assert len(CONTEXTS) >= 4
    for context in CONTEXTS:
        assert (context.num_items, context.max_len) == (trained.num_items, trained.max_len)
        assert np.array_equal(context.item_ids, trained.item_ids)
        assert context.data_root == trained.data_root == tmp_path
    assert loaded.context.item_ids is not None
