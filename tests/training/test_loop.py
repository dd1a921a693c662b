"""Tests for clue_fw.training.loop: seeds, epochs, non-finite losses and evaluation."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console
from torch import nn

from clue_fw.components import LossOutput
from clue_fw.data.examples import ExampleSet
from clue_fw.errors import TrainingError
from clue_fw.training.loop import derive_seed, evaluate, train_epoch
from clue_fw.training.report import Reporter


def reporter() -> Reporter:
    return Reporter(Console(file=io.StringIO()))


def test_derive_seed() -> None:
    assert derive_seed(0, "pretrain", 1) == derive_seed(0, "pretrain", 1)
    seeds = {
        derive_seed(s, stage, e)
        for s in (0, 1)
        for stage in ("pretrain", "finetune")
        for e in (1, 2)
    }
    assert len(seeds) == 8
    assert all(0 <= s < 2**63 for s in seeds)


def test_train_epoch_updates_and_averages() -> None:
    weight = nn.Parameter(torch.tensor([2.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    examples = ExampleSet({"x": torch.ones(5, 1)})

    def step(batch: dict[str, torch.Tensor]) -> LossOutput:
        loss = ((batch["x"] * weight) ** 2).mean()
        return LossOutput(loss, {"w": weight.detach().clone()})

    stats = train_epoch(step, [weight], optimizer, examples.batches(2), 3, None, reporter(), "t")
    assert stats.examples == 5
    assert weight.item() < 2.0
    # losses 4.0 (w=2), then w=1.6 -> 2.56, then w=1.28 -> 1.6384; weighted by batch sizes 2, 2, 1
    assert stats.loss == pytest.approx((4.0 * 2 + 2.56 * 2 + 1.6384) / 5)
    assert stats.terms["w"] == pytest.approx((2.0 * 2 + 1.6 * 2 + 1.28) / 5)


def test_non_finite_loss_stops_training() -> None:
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    examples = ExampleSet({"x": torch.tensor([[1.0], [float("nan")]])})

    def step(batch: dict[str, torch.Tensor]) -> LossOutput:
        return LossOutput((batch["x"] * weight).sum(), {"z_std": torch.tensor(0.5)})

    with pytest.raises(TrainingError, match=r"loss became nan at batch 2 \(terms: z_std=0.5\)"):
        train_epoch(
            step, [weight], optimizer, examples.batches(1), 2, None, reporter(), "pretrain 1/1"
        )


def test_batches_shuffle_and_min_size() -> None:
    examples = ExampleSet({"a": torch.arange(10), "b": torch.arange(10) * 2})
    batches = list(examples.batches(4, torch.Generator().manual_seed(0), min_size=3))
    assert [len(b["a"]) for b in batches] == [4, 4]  # the last batch of 2 is skipped
    assert examples.num_batches(4, min_size=3) == 2
    for b in batches:
        assert torch.equal(b["b"], b["a"] * 2)  # fields stay aligned
    seen = torch.cat([b["a"] for b in batches])
    assert not torch.equal(seen, torch.arange(8))
    assert examples.num_batches(4) == 3 and len(list(examples.batches(4))) == 3


def test_evaluate_restores_training_mode() -> None:
    class Head(nn.Module):
        def metric_sums(
            self, encoder: nn.Module, batch: dict[str, torch.Tensor]
        ) -> dict[str, torch.Tensor]:
            assert not encoder.training and not self.training
            return {"count": torch.tensor(float(len(batch["x"]))), "hits": batch["x"].sum()}

        def finalize(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
            return {"hits": float(sums["hits"] / sums["count"])}

    encoder, head = nn.Linear(1, 1).train(), Head().train()
    examples = ExampleSet({"x": torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])})
    assert evaluate(head, encoder, examples, batch_size=2) == {"hits": pytest.approx(0.6)}  # type: ignore[arg-type]
    assert encoder.training and head.training
