"""Tests for clue_fw.backbones.transformer: shapes, masking, causality, padding invariance."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from clue_fw.backbones.transformer import TransformerEncoder, TransformerSpec
from clue_fw.components import BuildContext
from clue_fw.errors import RecipeError
from clue_fw.recipe import validate_recipe

NUM_ITEMS, MAX_LEN, DIM = 30, 8, 16


def encoder(seed: int = 0, dropout: float = 0.3, blocks: int = 2) -> TransformerEncoder:
    torch.manual_seed(seed)
    spec = TransformerSpec(dim=DIM, blocks=blocks, heads=4, dropout=dropout)
    model = spec.build(BuildContext(num_items=NUM_ITEMS, max_len=MAX_LEN))
    return model.eval()


def left_pad(rows: list[list[int]], width: int = MAX_LEN) -> torch.Tensor:
    return torch.tensor([[0] * (width - len(r)) + r for r in rows])


ITEMS = left_pad([[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11], [12], [13, 14, 15, 16, 17]])


def test_output_shapes_and_padding_zero() -> None:
    model = encoder()
    out = model(ITEMS)
    assert out.states.shape == (4, MAX_LEN, DIM)
    assert out.user.shape == (4, DIM)
    padding = ITEMS == 0
    assert padding.any()
    assert torch.equal(out.states[padding], torch.zeros(int(padding.sum()), DIM))
    assert (out.states[~padding].abs().sum(dim=-1) > 0).all()
    assert torch.isfinite(out.states).all() and torch.isfinite(out.user).all()


def test_padding_zero_in_training_mode_too() -> None:
    model = encoder().train()
    out = model(ITEMS)
    assert torch.equal(out.states[ITEMS == 0], torch.zeros(int((ITEMS == 0).sum()), DIM))


def test_shorter_input_than_max_len() -> None:
    out = encoder()(ITEMS[:, -3:])
    assert out.states.shape == (4, 3, DIM)
    with pytest.raises(ValueError, match="exceeds max_len"):
        encoder()(torch.ones(1, MAX_LEN + 1, dtype=torch.long))


def test_causal_later_items_do_not_change_earlier_states() -> None:
    model = encoder()
    base = model(ITEMS).states
    for position in range(1, MAX_LEN):
        changed = ITEMS.clone()
        changed[0, position] = 29 if ITEMS[0, position] != 29 else 28
        states = model(changed).states
        torch.testing.assert_close(states[0, :position], base[0, :position], rtol=0, atol=1e-6)
        assert not torch.allclose(states[0, position], base[0, position])
        torch.testing.assert_close(states[1:], base[1:])  # other rows untouched


def test_user_vector_changes_when_any_real_item_changes() -> None:
    model = encoder()
    base = model(ITEMS).user
    for row in range(ITEMS.shape[0]):
        for position in range(MAX_LEN):
            if ITEMS[row, position] == 0:
                continue
            changed = ITEMS.clone()
            changed[row, position] = 30 if ITEMS[row, position] != 30 else 1
            user = model(changed).user
            assert not torch.allclose(user[row], base[row], atol=1e-6), (row, position)


def test_padding_embedding_is_zero() -> None:
    assert torch.equal(encoder().item_embedding.weight[0], torch.zeros(DIM))


@pytest.mark.parametrize("width", [5, 6, MAX_LEN])
def test_left_padding_invariance(width: int) -> None:
    model = encoder()
    sequences = [[3, 4, 5, 6], [7], [8, 9, 10, 11, 12]]
    short = model(left_pad(sequences, 5))
    longer = model(left_pad(sequences, width))
    torch.testing.assert_close(longer.user, short.user, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(longer.states[:, -5:], short.states, rtol=1e-5, atol=1e-5)


def test_batch_composition_does_not_matter() -> None:
    model = encoder()
    together = model(ITEMS).user
    alone = torch.cat([model(ITEMS[i : i + 1]).user for i in range(ITEMS.shape[0])])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_dropout_only_in_training() -> None:
    model = encoder(dropout=0.5)
    torch.testing.assert_close(model(ITEMS).user, model(ITEMS).user)
    model.train()
    assert not torch.allclose(model(ITEMS).user, model(ITEMS).user)


def test_gradients_reach_embeddings() -> None:
    model = encoder().train()
    # (a plain sum of LayerNorm outputs is constant; weight them)
    weights = torch.randn(DIM, generator=torch.Generator().manual_seed(0))
    (model(ITEMS).user * weights).sum().backward()
    grad = model.item_embedding.weight.grad
    assert grad is not None
    used = ITEMS.unique()
    used = used[used != 0]
    assert (grad[used].abs().sum(dim=1) > 0).all()
    assert grad[0].abs().sum() == 0  # padding_idx
    assert model.user_token.grad is not None and model.user_token.grad.abs().sum() > 0


def test_spec_defaults_and_ffn() -> None:
    spec = TransformerSpec()
    assert (spec.dim, spec.blocks, spec.heads, spec.dropout) == (64, 2, 4, 0.5)
    model = TransformerSpec(dim=8, heads=2, ffn_dim=24).build(BuildContext(5, 4))
    assert model.blocks[0].ffn[0].out_features == 24
    assert model.item_embedding.num_embeddings == 5 + 2  # padding, items, [MASK]
    assert model.position_embedding.num_embeddings == 4 + 1  # positions and [UR]


def test_heads_must_divide_dim_is_a_recipe_error(tiny_recipe: dict[str, Any]) -> None:
    data = copy.deepcopy(tiny_recipe)
    data["backbone"].update(dim=16, heads=3)
    with pytest.raises(RecipeError) as info:
        validate_recipe(data, "tiny.yaml")
    message = str(info.value)
    assert "backbone" in message
    assert "heads (3) must divide dim (16)" in message
    assert "try heads=2" in message
    data["backbone"]["heads"] = 4
    assert validate_recipe(data).backbone.heads == 4
