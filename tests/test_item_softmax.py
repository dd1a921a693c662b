"""The item softmax losses: full equals cross-entropy, sampled is a corrected estimate."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from rich.console import Console

from clue_fw import run
from clue_fw.heads.next_item import NextItemSpec
from clue_fw.item_softmax import ItemLoss, ItemSoftmaxOptions, popularity

NUM_ITEMS = 50


def weights_and_hidden(rows: int = 8, dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(NUM_ITEMS + 2, dim, generator=generator)  # padding, items, [MASK]
    hidden = torch.randn(rows, dim, generator=generator, requires_grad=True)
    targets = torch.randint(1, NUM_ITEMS + 1, (rows,), generator=generator)
    return weight, hidden, targets


def test_full_loss_is_cross_entropy_over_real_items_ignoring_padding_targets() -> None:
    weight, hidden, targets = weights_and_hidden()
    targets[2] = 0  # a padding position
    loss = ItemLoss("full", NUM_ITEMS, None)(hidden, targets, weight)
    keep = targets != 0
    logits = hidden[keep] @ weight[1 : NUM_ITEMS + 1].T
    expected = F.cross_entropy(logits, targets[keep] - 1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_full_loss_temperature_divides_scores() -> None:
    weight, hidden, targets = weights_and_hidden()
    hot = ItemLoss("full", NUM_ITEMS, None, temperature=0.5)(hidden, targets, weight)
    plain = ItemLoss("full", NUM_ITEMS, None)(hidden * 2.0, targets, weight)
    assert hot.item() == pytest.approx(plain.item(), rel=1e-6)


def test_sampled_loss_ignores_padding_rows() -> None:
    weight, hidden, targets = weights_and_hidden()
    targets[3] = 0
    loss = ItemLoss("sampled", NUM_ITEMS, None, negatives=16)
    first = loss(hidden, targets, weight, torch.Generator().manual_seed(1))
    changed = hidden.detach().clone()
    changed[3] += 100.0
    second = loss(changed, targets, weight, torch.Generator().manual_seed(1))
    assert first.item() == pytest.approx(second.item(), rel=1e-6)


def test_accidental_hits_are_never_negatives() -> None:
    """Every row has the same target and only in-batch negatives: each candidate is the
    row's own target, so nothing is left to score against and the loss is exactly 0."""
    weight, hidden, _ = weights_and_hidden()
    targets = torch.full((hidden.shape[0],), 7)
    loss = ItemLoss("sampled", NUM_ITEMS, None, negatives=0, in_batch=True)
    assert loss(hidden, targets, weight).item() == 0.0


def test_sampled_gradient_points_where_the_full_gradient_does() -> None:
    """Many uniform negatives with the logQ correction: the gradient on the hidden states
    is close to the full softmax's."""
    weight, hidden, targets = weights_and_hidden(rows=4)
    weight = weight * 0.3  # no target dominates its row's softmax
    full = ItemLoss("full", NUM_ITEMS, None)(hidden, targets, weight)
    (full_grad,) = torch.autograd.grad(full, hidden)
    sampled = ItemLoss("sampled", NUM_ITEMS, None, negatives=200_000, in_batch=False)
    estimate = sampled(hidden, targets, weight, torch.Generator().manual_seed(0))
    (sampled_grad,) = torch.autograd.grad(estimate, hidden)
    cosine = F.cosine_similarity(full_grad.flatten(), sampled_grad.flatten(), dim=0)
    assert cosine.item() > 0.95


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampled_loss_and_gradients_equal_the_written_out_definition(temperature: float) -> None:
    """Regression test of the fused form (logQ as the addmm bias, logaddexp for the
    positive): the loss and both gradients equal -log softmax over [positive, corrected
    negatives without accidental hits], computed row by row in float64."""
    weight, hidden, targets = weights_and_hidden(rows=12)
    targets[4] = 0  # padding
    weight = weight.clone().requires_grad_()
    loss = ItemLoss("sampled", NUM_ITEMS, None, negatives=20, temperature=temperature)
    value = loss(hidden, targets, weight, torch.Generator().manual_seed(2))
    got = torch.autograd.grad(value, (hidden, weight))

    candidates = loss._candidates(targets, torch.Generator().manual_seed(2))
    log_q = torch.log(loss._expected_counts(candidates, targets != 0)).double()
    h, w = hidden.double(), weight.double()
    rows = []
    for i in range(len(targets)):
        if targets[i] == 0:
            continue
        keep = (candidates != targets[i]) & (candidates != 0)
        positive = h[i] @ w[targets[i]] / temperature
        negatives = h[i] @ w[candidates[keep]].T / temperature - log_q[keep]
        rows.append(torch.logsumexp(torch.cat([positive[None], negatives]), 0) - positive)
    expected = torch.stack(rows).mean()
    wanted = torch.autograd.grad(expected, (hidden, weight))
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    for a, b in zip(got, wanted, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_popularity_correction_uses_expected_counts() -> None:
    counts = torch.zeros(NUM_ITEMS + 1, dtype=torch.long)
    counts[1] = 1000  # one very popular item
    p = popularity(counts, NUM_ITEMS)
    assert p[0] == 0.0 and p.sum().item() == pytest.approx(1.0)
    assert p[1] > 0.9 and (p[2:] > 0).all()
    loss = ItemLoss("sampled", NUM_ITEMS, counts, negatives=64, sampler="popularity")
    drawn = loss._candidates(torch.tensor([3, 4]), torch.Generator().manual_seed(0))[2:]
    assert (drawn == 1).float().mean() > 0.8  # drawn by popularity


def test_sampled_is_reproducible_under_a_seeded_generator() -> None:
    weight, hidden, targets = weights_and_hidden()
    loss = ItemLoss("sampled", NUM_ITEMS, None, negatives=8)
    a = loss(hidden, targets, weight, torch.Generator().manual_seed(5))
    b = loss(hidden, targets, weight, torch.Generator().manual_seed(5))
    assert a.item() == b.item()


def test_no_negatives_at_all_is_refused_in_words() -> None:
    with pytest.raises(ValidationError, match="no negative to score the target against"):
        ItemSoftmaxOptions(loss="sampled", in_batch=False, negatives=0)


def test_next_item_spec_takes_the_softmax_fields() -> None:
    spec = NextItemSpec(loss="sampled", negatives=32, sampler="popularity", temperature=0.1)
    assert spec.loss == "sampled" and spec.negatives == 32
    with pytest.raises(ValidationError):
        NextItemSpec(loss="approximate")


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_a_run_trains_with_sampled_softmax_in_both_stages(
    tiny_recipe: dict[str, Any], tmp_path: Path, sampler: str
) -> None:
    """Masked-item pre-training and next-item fine-tuning, both sampled: the run learns
    (test NDCG@10 above what any random ranking can score)."""
    softmax = {"loss": "sampled", "negatives": 16, "sampler": sampler}
    tiny_recipe["pretrain"] = {
        "objective": {"kind": "masked_item", **softmax},
        "views": [{"kind": "dropout"}],
        "train": {"epochs": 1, "batch_size": 64},
    }
    tiny_recipe["finetune"]["head"].update(softmax)
    result = run(tiny_recipe, out=tmp_path / "run", console=Console(file=io.StringIO()))
    # A random ranking of N candidates scores sum(1/log2(r + 1), r <= 10) / N = 4.54 / N;
    # the tiny data has 50 items and at most 15 seen, so N >= 35 and random <= 0.13.
    assert result.metrics["test"]["ndcg@10"] > 0.14


def test_a_run_gives_components_the_training_item_counts(
    tiny_recipe: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The popularity sampler draws by the counts of the training part (valid and test
    targets left out), which the runner puts in the build context."""
    from clue_fw.data.dataset import leave_one_out

    seen: list[Any] = []
    build = NextItemSpec.build

    def watching(self: NextItemSpec, context: Any, encoder: Any, task_data: Any) -> Any:
        seen.append((context.item_counts, task_data))
        return build(self, context, encoder, task_data)

    monkeypatch.setattr(NextItemSpec, "build", watching)
    tiny_recipe["pretrain"] = None
    tiny_recipe["finetune"]["train"]["epochs"] = 1
    run(tiny_recipe, out=tmp_path / "run", console=Console(file=io.StringIO()))
    counts, task_data = seen[-1]
    train = leave_one_out(task_data.sequences).train
    expected = torch.bincount(train.values, minlength=task_data.sequences.num_items + 1)
    assert counts is not None and torch.equal(counts, expected)
