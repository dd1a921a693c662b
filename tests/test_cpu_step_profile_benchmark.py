"""Tests for benchmarks/cpu_step_profile.py: the profile of a tiny run names each stage's
epoch and its mask draws, PyTorch's dropout comes back only when asked (and is restored),
and the concatenated loss it compares against is the ItemLoss value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from benchmark_scripts import load_benchmark

import clue_fw.backbones.dropout as clue_dropout
from clue_fw.item_softmax import ItemLoss


@pytest.mark.parametrize("native", [False, True])
def test_each_stage_epoch_is_profiled_with_its_mask_draws(
    tiny_recipe: dict[str, Any], write_recipe: Callable[..., Path], tmp_path: Path, native: bool
) -> None:
    module = load_benchmark("cpu_step_profile")
    own = clue_dropout.dropout
    result = module.profile_recipe(str(write_recipe(tiny_recipe)), [], 5, native, tmp_path / "r")
    assert clue_dropout.dropout is own
    assert [e["epoch"] for e in result["epochs"]] == ["pretrain epoch 1/1", "finetune epoch 1/1"]
    for epoch in result["epochs"]:
        assert epoch["seconds"] > 0 and len(epoch["top"]) == 5
        assert 0 < epoch["mask_draw_share"] < 1
        assert all(0 <= row["share"] <= 1 for row in epoch["top"])
    assert result["overrides"][:3] == [
        "device=cpu",
        "pretrain.train.epochs=1",
        "finetune.train.epochs=1",
    ]


def test_the_concatenated_loss_is_item_loss() -> None:
    module = load_benchmark("cpu_step_profile")
    torch.manual_seed(0)
    hidden, weight = torch.randn(40, 8), torch.randn(31, 8)
    targets = torch.randint(0, 31, (40,))
    loss = ItemLoss("sampled", 30, None, negatives=16, in_batch=False)
    expected = loss(hidden, targets, weight, torch.Generator().manual_seed(3))
    candidates = loss._candidates(targets, torch.Generator().manual_seed(3))
    log_q = torch.log(loss._expected_counts(candidates, targets != 0))
    value = module.concatenated_sampled_loss(hidden, targets, weight, candidates, log_q)
    assert torch.allclose(value, expected, rtol=1e-6)
