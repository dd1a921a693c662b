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


# --------------------------------------------------------------------------- ffn, positions


def variant(ffn: str = "relu", positions: str = "learned", seed: int = 0) -> TransformerEncoder:
    torch.manual_seed(seed)
    spec = TransformerSpec(dim=DIM, blocks=2, heads=4, dropout=0.0, ffn=ffn, positions=positions)
    return spec.build(BuildContext(num_items=NUM_ITEMS, max_len=MAX_LEN)).eval()


def test_the_default_architecture_keeps_sasrecs_modules_and_recipe_dump() -> None:
    from clue_fw.backbones.transformer import SwiGLU

    default = TransformerSpec(dim=DIM, heads=4)
    assert "ffn" not in default.model_dump() and "positions" not in default.model_dump()
    assert TransformerSpec(dim=DIM, heads=4, ffn="swiglu").model_dump()["ffn"] == "swiglu"
    # old checkpoints load: the same parameter names as before the options existed
    keys = set(variant().state_dict())
    assert "position_embedding.weight" in keys and "blocks.0.ffn.3.weight" in keys
    swiglu = variant("swiglu")
    assert isinstance(swiglu.blocks[0].ffn, SwiGLU)
    assert "blocks.0.ffn.gate.weight" in swiglu.state_dict()
    assert variant(positions="rotary").position_embedding is None


def test_rotary_scores_depend_on_the_offset_alone() -> None:
    from clue_fw.backbones.transformer import rotate

    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 6, 8, generator=generator), torch.randn(1, 6, 8, generator=generator)
    positions = torch.arange(6)
    scores = rotate(q, positions) @ rotate(k, positions).transpose(-1, -2)
    shifted = rotate(q, positions + 11) @ rotate(k, positions + 11).transpose(-1, -2)
    assert torch.allclose(scores, shifted, atol=1e-5)
    assert not torch.allclose(scores, q @ k.transpose(-1, -2), atol=1e-3)  # it does turn
    assert torch.allclose(rotate(q, positions).norm(dim=-1), q.norm(dim=-1), atol=1e-5)


@pytest.mark.parametrize(("ffn", "positions"), [("swiglu", "learned"), ("gelu", "rotary")])
def test_every_variant_stays_causal_and_padding_invariant(ffn: str, positions: str) -> None:
    model = variant(ffn, positions)
    out = model(ITEMS)
    assert out.user.shape == (4, DIM) and bool(torch.isfinite(out.states).all())
    # a state never sees later items
    changed = ITEMS.clone()
    changed[0, -1] = 29
    again = model(changed)
    assert torch.allclose(out.states[0, :-1], again.states[0, :-1], atol=1e-5)
    # more left padding changes nothing
    wider = torch.cat([torch.zeros(4, 2, dtype=ITEMS.dtype), ITEMS], dim=1)
    wide_model = TransformerSpec(
        dim=DIM, blocks=2, heads=4, dropout=0.0, ffn=ffn, positions=positions
    ).build(BuildContext(num_items=NUM_ITEMS, max_len=MAX_LEN + 2))
    wide_model.load_state_dict(
        {
            key: value
            for key, value in model.state_dict().items()
            if not key.startswith("position_embedding")
        },
        strict=positions == "rotary",
    )
    if positions == "rotary":  # no position table: the wider model is the same function
        assert torch.allclose(wide_model.eval()(wider).user, out.user, atol=1e-5)


def test_rotary_with_an_odd_head_size_is_refused() -> None:
    with pytest.raises(ValueError, match="head size dim / heads must be even"):
        TransformerSpec(dim=12, heads=4, positions="rotary")
    with pytest.raises(RecipeError, match="ffn"):
        recipe: dict[str, Any] = {
            "data": {"format": "synthetic", "num_users": 20, "num_items": 10, "max_len": 5},
            "backbone": {"kind": "transformer", "dim": 8, "heads": 2, "ffn": "tanh"},
            "pretrain": {"objective": {"kind": "none"}},
            "finetune": {"head": {"kind": "next_item"}},
        }
        validate_recipe(recipe)


def test_swiglu_rotary_transformer_trains_through_the_product(
    tmp_path: Any, make_tiny_recipe: Any
) -> None:
    import io

    from rich.console import Console

    from clue_fw import run

    recipe = make_tiny_recipe()
    recipe["backbone"].update(ffn="swiglu", positions="rotary")
    result = run(recipe, out=tmp_path / "run", console=Console(file=io.StringIO()))
    stored = (result.run_dir / "recipe.yaml").read_text()
    assert "ffn: swiglu" in stored and "positions: rotary" in stored
    history = (result.run_dir / "finetune" / "history.csv").read_text().splitlines()
    assert len(history) >= 3  # header, epoch 0, at least one trained epoch
    assert all(value == value for value in result.metrics["test"].values())  # no NaN
