"""Tests for clue_fw.backbones.dropout: the CPU dropout keeps each element with
probability 1 - p and scales it by 1 / (1 - p), back-propagates through the same mask,
draws from the seeded global generator, is the identity where dropout is off, and its
attention equals PyTorch's scaled_dot_product_attention without dropout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clue_fw.backbones.dropout import Dropout, attention, dropout


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_keeps_each_element_with_probability_one_minus_p_and_scales_it(p: float) -> None:
    torch.manual_seed(0)
    n = 400_000
    out = dropout(torch.ones(n), p, training=True)
    kept = out != 0
    # four standard deviations of a binomial share
    assert abs(kept.float().mean().item() - (1 - p)) < 4 * math.sqrt(p * (1 - p) / n)
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    # the expectation is kept: mean of the output ~ 1
    assert abs(out.mean().item() - 1.0) < 4 * math.sqrt(p / (1 - p) / n)


def test_gradient_flows_through_the_same_mask() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    out = dropout(x, 0.4, training=True)
    out.sum().backward()
    assert x.grad is not None
    kept = out.detach() != 0
    assert torch.equal(x.grad != 0, kept)
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.6))


def test_seeded_draws_repeat_and_differ_between_calls() -> None:
    x = torch.ones(1000)
    torch.manual_seed(7)
    first, second = dropout(x, 0.5, True), dropout(x, 0.5, True)
    torch.manual_seed(7)
    assert torch.equal(dropout(x, 0.5, True), first)
    assert not torch.equal(first, second)


@pytest.mark.parametrize(("p", "training"), [(0.0, True), (0.5, False)])
def test_identity_where_dropout_is_off(p: float, training: bool) -> None:
    x = torch.randn(10, 5)
    assert torch.equal(dropout(x, p, training), x)


def test_keeps_the_dtype_of_its_input() -> None:
    x = torch.randn(100, 8, dtype=torch.bfloat16)
    assert dropout(x, 0.5, True).dtype == torch.bfloat16


def test_bad_probability_is_refused_with_its_value() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\), got 1.0"):
        dropout(torch.ones(3), 1.0, True)


def test_module_follows_train_and_eval_modes() -> None:
    layer = Dropout(0.5)
    x = torch.ones(2000)
    assert torch.equal(layer.eval()(x), x)
    out = layer.train()(x)
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert repr(layer) == "Dropout(p=0.5, inplace=False)"


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    q, k, v = (torch.randn(4, 2, 6, 8) for _ in range(3))
    allowed = torch.ones(6, 6, dtype=torch.bool).tril().expand(4, 1, 6, 6).clone()
    allowed[0, 0, 3, :3] = False  # a row that may attend only to itself
    return q, k, v, allowed


def test_attention_without_dropout_is_pytorchs() -> None:
    q, k, v, allowed = _inputs()
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    assert torch.allclose(attention(q, k, v, allowed, 0.0), expected)


def test_attention_with_dropout_drops_weights_of_allowed_keys_only() -> None:
    q, k, v, allowed = _inputs()
    # v = identity rows: the output row is the (dropped, rescaled) attention weights
    eye = torch.eye(6).expand(4, 2, 6, 6)
    torch.manual_seed(5)
    weights = attention(q, k, eye, allowed, 0.5)
    assert torch.all(weights[~allowed.expand(4, 2, 6, 6)] == 0)
    plain = F.scaled_dot_product_attention(q, k, eye, attn_mask=allowed)
    kept = weights != 0
    assert torch.allclose(weights[kept], 2 * plain[kept], atol=1e-6)
    assert 0 < kept.sum() < allowed.expand(4, 2, 6, 6).sum()
