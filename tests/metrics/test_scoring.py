"""clue_fw.metrics.scoring: float32 scores unchanged, bf16 scores within their rounding.

bf16 keeps 8 significant bits, so each factor is rounded by at most a relative 2**-9; a
product of two rounded factors is off by at most about 2**-8 of its size, and a score,
a sum of ``d`` products, by at most 2**-8 of the sum of their sizes (plus float32
summation, 2**-24 per term). A rank can move only past items whose float32 scores lie
within those bounds of the target's: that is the tolerance the tests state.
"""

from __future__ import annotations

import pytest
import torch

from clue_fw.metrics.ranking import target_ranks
from clue_fw.metrics.scoring import ItemScorer, check_precision, item_products


def vectors(seed: int, users: int = 64, items: int = 5000) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(users, 32, generator=generator), torch.randn(items, 32, generator=generator)


def error_bound(users: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``[B, N]``: the most a bf16 score can differ from the float32 one (see above)."""
    magnitude = users.abs() @ weight.abs().T
    relative = 2 * 2.0**-9 + 2.0**-18 + 2 * users.shape[1] * 2.0**-24
    return magnitude * relative


def test_float32_scores_are_the_plain_product_with_padding_at_minus_infinity() -> None:
    users, weight = vectors(0)
    scorer = ItemScorer(users, weight, padding=0)
    expected = users @ weight.T
    expected[:, 0] = float("-inf")
    assert torch.equal(scorer.scores(slice(None)), expected)  # the heads' own product
    # Another product shape may sum a few scores in another order (last bits only).
    close = {"rtol": 1e-6, "atol": 1e-6}
    assert torch.allclose(scorer.scores(slice(100, 300)), expected[:, 100:300], **close)
    ids = torch.tensor([7, 0, 4999, 7])
    found = scorer.scores(ids)
    assert torch.equal(found[:, 1], expected[:, 0])  # padding, from a list of ids too
    assert torch.allclose(found, expected[:, ids], **close)


def test_bf16_scores_round_the_factors_and_sum_in_float32() -> None:
    users, weight = vectors(1)
    found = item_products(users, weight, "bf16")
    assert found.dtype == torch.float32
    rounded = users.bfloat16().float() @ weight.bfloat16().float().T
    assert torch.allclose(found, rounded, rtol=0, atol=1e-5)
    exact = users @ weight.T
    assert bool(((found - exact).abs() <= error_bound(users, weight)).all())
    # ... and it is not the float32 product: the rounding is real
    assert not torch.equal(found, exact)


def test_bf16_ranks_move_only_past_items_within_the_rounding() -> None:
    """Each user's rank of a target under bf16 stays within the number of items whose
    float32 score is within the rounding bounds of the target's."""
    users, weight = vectors(2)
    target = torch.randint(1, 5000, (64,), generator=torch.Generator().manual_seed(3))
    exact = ItemScorer(users, weight, padding=0).scores(slice(None))
    rounded = ItemScorer(users, weight, padding=0, precision="bf16").scores(slice(None))
    bound = error_bound(users, weight)
    own = bound.gather(1, target.unsqueeze(1))
    close = ((exact - exact.gather(1, target.unsqueeze(1))).abs() <= bound + own).sum(dim=1) - 1
    moved = (target_ranks(rounded, target) - target_ranks(exact, target)).abs()
    assert bool((moved <= close).all())
    assert float(moved.float().mean()) < 0.01 * 5000  # on average well within 1% of the items


def test_an_unknown_precision_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="finetune.head.score_precision"):
        check_precision("fp16")
    with pytest.raises(ValueError, match="score_precision"):
        item_products(torch.ones(1, 2), torch.ones(3, 2), "fp16")  # type: ignore[arg-type]
