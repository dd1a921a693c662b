"""Tests for clue_fw.training.loop: seeds, epochs, non-finite losses and evaluation."""

from __future__ import annotations

import io
import math

import pytest
import torch
from rich.console import Console
from torch import nn

from clue_fw.components import LossOutput
from clue_fw.data.examples import ExampleSet
from clue_fw.errors import TrainingError
from clue_fw.training.loop import EpochStats, derive_seed, evaluate, train_epoch
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

    with pytest.raises(TrainingError) as info:
        train_epoch(
            step,
            [weight],
            optimizer,
            examples.batches(1),
            2,
            None,
            reporter(),
            "pretrain epoch 3/4",
            first_step=4,
            loss_name="clue objective",
        )
    assert str(info.value) == (
        "Non-finite loss in pretrain epoch 3/4, batch 2/2 (global step 6): the clue objective "
        "loss is nan; its logged terms are finite (z_std=0.5)."
    )
    assert weight.item() == pytest.approx(0.9)  # the bad batch made no optimiser step


def test_non_finite_terms_are_named() -> None:
    weight = nn.Parameter(torch.tensor([1.0]))

    def step(batch: dict[str, torch.Tensor]) -> LossOutput:
        bad = torch.tensor(float("inf"))
        return LossOutput(weight.sum() * bad, {"z_std": bad, "acc": torch.tensor(1.0)})

    examples = ExampleSet({"x": torch.ones(1)})
    optimizer = torch.optim.SGD([weight], lr=0.1)
    with pytest.raises(TrainingError, match=r"loss is inf; non-finite terms: z_std=inf\.$"):
        train_epoch(step, [weight], optimizer, examples.batches(1), 1, None, reporter(), "e")


def test_non_finite_gradient_stops_before_the_step() -> None:
    weight = nn.Parameter(torch.tensor([1.0]))

    def step(batch: dict[str, torch.Tensor]) -> LossOutput:
        # a finite loss with an infinite gradient: d/dw sqrt(w - 1) at w = 1
        return LossOutput(torch.sqrt(weight - 1.0).sum(), {})

    examples = ExampleSet({"x": torch.ones(1)})
    optimizer = torch.optim.SGD([weight], lr=0.1)
    with pytest.raises(
        TrainingError, match=r"Non-finite gradient in t, batch 1/1 \(global step 1\)"
    ):
        train_epoch(step, [weight], optimizer, examples.batches(1), 1, None, reporter(), "t")
    assert weight.item() == 1.0


def test_non_finite_parameters_after_the_epoch() -> None:
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=1e38)  # finite loss and gradient, overflowing step

    def step(batch: dict[str, torch.Tensor]) -> LossOutput:
        return LossOutput(weight.sum() * -100.0, {})

    examples = ExampleSet({"x": torch.ones(1)})
    with pytest.raises(TrainingError, match="Non-finite parameters after pretrain epoch 1/1"):
        train_epoch(
            step,
            [weight],
            optimizer,
            examples.batches(1),
            1,
            None,
            reporter(),
            "pretrain epoch 1/1",
        )


@pytest.mark.parametrize("clip", [None, 0.5])
def test_grad_clip_bounds_the_update(clip: float | None) -> None:
    weight = nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.SGD([weight], lr=1.0)  # update == -gradient

    def step(batch: dict[str, torch.Tensor]) -> LossOutput:
        return LossOutput((weight * torch.tensor([3.0, 4.0, 0.0, 0.0])).sum(), {})

    examples = ExampleSet({"x": torch.ones(1)})
    train_epoch(step, [weight], optimizer, examples.batches(1), 1, clip, reporter(), "t")
    norm = float(torch.linalg.vector_norm(weight.detach()))
    assert norm == pytest.approx(5.0 if clip is None else clip, rel=1e-5)


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


@pytest.mark.parametrize(("count", "batch_size", "min_size"), [(1, 64, 2), (0, 4, 1)])
def test_a_stage_without_batches_is_an_error(count: int, batch_size: int, min_size: int) -> None:
    """Zero optimiser steps must not be logged as a trained epoch with loss 0.0."""
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    examples = ExampleSet({"x": torch.ones(count, 1)})
    batches = examples.batches(batch_size, min_size=min_size)
    assert len(batches) == examples.num_batches(batch_size, min_size) == 0

    def step(batch: dict[str, torch.Tensor]) -> LossOutput:
        return LossOutput((batch["x"] * weight).sum(), {})

    with pytest.raises(TrainingError) as info:
        train_epoch(step, [weight], optimizer, batches, 0, None, reporter(), "pretrain epoch 1/2")
    message = str(info.value)
    assert "pretrain epoch 1/2 has no batch to train on" in message
    assert f"batch_size {batch_size}" in message and f"{count} training example" in message
    # a caller that miscounts (num_batches > 0 but nothing comes) is caught too
    with pytest.raises(TrainingError, match="has no batch to train on"):
        train_epoch(step, [weight], optimizer, iter([]), 1, None, reporter(), "finetune epoch 1/1")


@pytest.mark.parametrize("optimizer_kind", ["fused_adam", "fused_sgd"])
def test_deferred_check_names_the_batch_and_skips_every_step_from_it(optimizer_kind: str) -> None:
    """With host reads every 4 steps (an accelerator's default), a NaN in batch 2 is still
    named exactly, and a fused optimiser made no step from batch 2 on."""
    weight = nn.Parameter(torch.tensor([1.0, 2.0]))
    optimizer: torch.optim.Optimizer
    if optimizer_kind == "fused_adam":
        optimizer = torch.optim.Adam([weight], lr=0.1, fused=True)
    else:
        optimizer = torch.optim.SGD([weight], lr=0.1, fused=True)
    x = torch.tensor([[1.0], [float("nan")], [1.0], [1.0], [1.0]])
    examples = ExampleSet({"x": x})
    after_first: list[torch.Tensor] = []

    def step(batch: dict[str, torch.Tensor]) -> LossOutput:
        if not after_first and len(step.calls) == 1:  # type: ignore[attr-defined]
            after_first.append(weight.detach().clone())
        step.calls.append(1)  # type: ignore[attr-defined]
        return LossOutput((batch["x"] * weight).sum(), {})

    step.calls = []  # type: ignore[attr-defined]
    with pytest.raises(TrainingError, match=r"batch 2/5 \(global step 2\)"):
        train_epoch(
            step,
            [weight],
            optimizer,
            examples.batches(1),
            5,
            None,
            reporter(),
            "t",
            check_every=4,
        )
    assert len(step.calls) == 4  # the read came after step 4
    assert torch.equal(weight.detach(), after_first[0])  # steps 2, 3 and 4 were skipped
    assert not hasattr(optimizer, "found_inf") or optimizer.found_inf is not None


def test_deferred_check_gives_the_same_epoch_as_immediate_checks() -> None:
    def run(check_every: int) -> tuple[EpochStats, torch.Tensor]:
        torch.manual_seed(0)
        weight = nn.Parameter(torch.randn(3))
        optimizer = torch.optim.Adam([weight], lr=0.1, fused=True)
        examples = ExampleSet({"x": torch.randn(7, 3)})

        def step(batch: dict[str, torch.Tensor]) -> LossOutput:
            loss = ((batch["x"] @ weight) ** 2).mean()
            return LossOutput(loss, {"half": loss.detach() / 2})

        stats = train_epoch(
            step,
            [weight],
            optimizer,
            examples.batches(2),
            4,
            None,
            reporter(),
            "t",
            check_every=check_every,
        )
        return stats, weight.detach().clone()

    (immediate, w1), (deferred, w3) = run(1), run(3)
    assert torch.equal(w1, w3)
    assert deferred.loss == immediate.loss
    assert deferred.terms == immediate.terms


def test_autocast_runs_the_step_in_bfloat16_and_keeps_weights_float32() -> None:
    weight = nn.Parameter(torch.randn(4, 4))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    examples = ExampleSet({"x": torch.randn(6, 4)})
    seen: list[torch.dtype] = []

    def step(batch: dict[str, torch.Tensor]) -> LossOutput:
        product = batch["x"] @ weight
        seen.append(product.dtype)
        return LossOutput(product.float().pow(2).mean(), {})

    stats = train_epoch(
        step,
        [weight],
        optimizer,
        examples.batches(3),
        2,
        None,
        reporter(),
        "t",
        autocast=torch.bfloat16,
    )
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert weight.dtype == torch.float32 and weight.grad is not None
    assert math.isfinite(stats.loss)
