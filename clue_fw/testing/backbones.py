"""Contract checks of a backbone (family ``backbone``).

A backbone built for ``BuildContext(num_items, max_len)`` encodes a left-padded
``[B, n]`` batch (``n <= max_len``) into ``EncoderOutput(states [B, n, d], user
[B, d])``: states are zero at padding and causal (position ``t`` reads items up to
``t``, which next-item training with every position relies on), the output does not
depend on how much left padding there is, every parameter learns, and the module
state survives a safetensors checkpoint.

A backbone whose spec says ``position_states = False`` (Caser: the whole window becomes
one user vector) returns all-zero states; its checks hold the states to that and check
causality and row independence on the user vector alone. The objectives and heads that
read per-position states are not run on it (recipes refuse those pairs).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from clue_fw.components import BackboneSpec, BuildContext, SequenceEncoder
from clue_fw.registry import ComponentEntry
from clue_fw.testing.data import CONTEXT, ITEMS, MAX_LEN, NUM_ITEMS, left_pad
from clue_fw.testing.specs import ContractError, example_spec
from clue_fw.testing.state import assert_same_state, assert_state_roundtrips

if TYPE_CHECKING:
    from clue_fw.testing.cases import ContractCase


def make_backbone(
    entry: ComponentEntry, folder: Path, seed: int = 0, context: BuildContext = CONTEXT
) -> SequenceEncoder:
    """The backbone of ``entry`` (its example spec), built under ``torch.manual_seed(seed)``."""
    spec = example_spec(entry, root=folder)
    assert isinstance(spec, BackboneSpec)
    torch.manual_seed(seed)
    model = spec.build(context)
    if not isinstance(model, SequenceEncoder):
        raise ContractError(
            f"{type(spec).__qualname__}.build returned {type(model).__name__}; a backbone spec "
            "builds a clue_fw.components.SequenceEncoder."
        )
    return model


def has_position_states(entry: ComponentEntry) -> bool:
    """Whether the backbone of ``entry`` has per-position states
    (``BackboneSpec.position_states``)."""
    return bool(getattr(entry.spec, "position_states", True))


def check_attributes(case: ContractCase, folder: Path) -> None:
    """``num_items``, ``max_len``, ``dim`` and an ``item_embedding`` with every id's row."""
    model = make_backbone(case.entry, folder)
    spec = example_spec(case.entry, root=folder)
    assert (model.num_items, model.max_len) == (NUM_ITEMS, MAX_LEN)
    assert isinstance(model.dim, int) and model.dim > 0
    if "dim" in type(spec).model_fields:
        assert model.dim == spec.dim  # type: ignore[attr-defined]
    assert model.item_embedding.num_embeddings == CONTEXT.vocab_size, "rows: 0, items, [MASK]"
    assert model.item_embedding.embedding_dim == model.dim
    assert model.item_embedding.padding_idx == 0


def check_shapes(case: ContractCase, folder: Path) -> None:
    """Output shapes for full and short batches, zero states at padding, finite values."""
    for train in (False, True):
        model = make_backbone(case.entry, folder).train(train)
        for items in (ITEMS, ITEMS[:, -5:]):
            out = model(items)
            assert out.states.shape == (*items.shape, model.dim)
            assert out.user.shape == (items.shape[0], model.dim)
            padding = items == 0
            assert torch.equal(out.states[padding], torch.zeros(int(padding.sum()), model.dim)), (
                f"states at padding positions must be zero (train={train})"
            )
            assert torch.isfinite(out.states).all() and torch.isfinite(out.user).all()
            if not has_position_states(case.entry):
                assert not out.states.any(), (
                    "the spec says position_states = False, so every state must be zero"
                )


def check_empty_row(case: ContractCase, folder: Path) -> None:
    """A row of padding only gives zero states and a finite user vector."""
    model = make_backbone(case.entry, folder).eval()
    out = model(torch.zeros(2, MAX_LEN, dtype=torch.long))
    largest = float(out.states.detach().abs().max())
    assert torch.equal(out.states, torch.zeros(2, MAX_LEN, model.dim)), (
        f"for a row of padding only (items all 0) every state must be exactly zero, but "
        f"states up to {largest:.3g} in absolute value came back; multiply the states by "
        "the mask `items != 0` before returning them"
    )
    assert torch.isfinite(out.user).all(), (
        "for a row of padding only the user vector must be finite (a mean over zero items "
        "divides by zero: clamp the count to at least 1)"
    )


def check_backward(case: ContractCase, folder: Path) -> None:
    """Gradients reach the embeddings of the items used (never padding) and every parameter."""
    model = make_backbone(case.entry, folder).train()
    out = model(ITEMS)
    weights = torch.randn(model.dim, generator=torch.Generator().manual_seed(0))
    ((out.states * weights).sum() + (out.user * weights).sum()).backward()
    grad = model.item_embedding.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    used = ITEMS.unique()
    used = used[used != 0]
    assert (grad[used].abs().sum(dim=1) > 0).all(), "an item used in the batch gets no gradient"
    assert grad[0].abs().sum() == 0, "the padding row (padding_idx 0) must get no gradient"
    for name, parameter in model.named_parameters():
        hint = (
            " (init_vocabulary creates a [UR] `user_token` parameter; a backbone without a "
            "[UR] read-out removes it with `del self.user_token` after init_vocabulary, as "
            "clue_fw.backbones.bag does)"
            if name == "user_token"
            else ""
        )
        assert parameter.grad is not None, f"{name} gets no gradient{hint}"


def check_causal(case: ContractCase, folder: Path) -> None:
    """Changing the item at ``t`` changes nothing before ``t``, the state at ``t`` and the
    user vector, and no other row."""
    model = make_backbone(case.entry, folder).eval()
    base = model(ITEMS)
    states = has_position_states(case.entry)
    for position in (MAX_LEN - 1, MAX_LEN // 2):
        changed = ITEMS.clone()
        changed[0, position] = NUM_ITEMS if ITEMS[0, position] != NUM_ITEMS else 1
        out = model(changed)
        torch.testing.assert_close(
            out.states[0, :position], base.states[0, :position], rtol=0, atol=1e-6
        )
        if states:
            assert not torch.allclose(out.states[0, position], base.states[0, position])
        assert not torch.allclose(out.user[0], base.user[0])
        torch.testing.assert_close(out.states[1:], base.states[1:])  # other rows untouched
        if not states:  # only the user vector carries the rows
            torch.testing.assert_close(out.user[1:], base.user[1:])


def check_state_roundtrip(case: ContractCase, folder: Path) -> None:
    """Seeded construction, and the same outputs after a safetensors round trip."""
    model, restored = assert_state_roundtrips(
        lambda seed: make_backbone(case.entry, folder, seed), folder, f"backbone {case.entry.kind}"
    )
    other = make_backbone(case.entry, folder, seed=4).eval()
    model.eval()
    restored.eval()
    assert not torch.equal(other(ITEMS).user, model(ITEMS).user), "seeds 3 and 4 agree"
    expected, actual = model(ITEMS), restored(ITEMS)
    assert torch.equal(actual.states, expected.states)
    assert torch.equal(actual.user, expected.user)


def check_seeded(case: ContractCase, folder: Path) -> None:
    """The same ``torch.manual_seed`` gives the same weights, and the same dropout masks."""
    first = make_backbone(case.entry, folder, seed=3)
    second = make_backbone(case.entry, folder, seed=3)
    assert_same_state(first, second, f"backbone {case.entry.kind} under the same seed")
    assert torch.equal(first.eval()(ITEMS).user, second.eval()(ITEMS).user)
    outputs = []
    for model in (first, second):
        torch.manual_seed(7)  # same dropout masks in training mode
        outputs.append(model.train()(ITEMS).user)
    assert torch.equal(outputs[0], outputs[1])


def check_left_padding(case: ContractCase, folder: Path) -> None:
    """More left padding changes neither the user vector nor the states of real items."""
    model = make_backbone(case.entry, folder).eval()
    sequences = [[3, 4, 5, 6], [7], [8, 9, 10, 11, 12, 13, 14]]
    short = model(left_pad(sequences, 7))
    for width in (8, 10, MAX_LEN):
        longer = model(left_pad(sequences, width))
        torch.testing.assert_close(longer.user, short.user, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(longer.states[:, -7:], short.states, rtol=1e-5, atol=1e-5)


CHECKS = {
    "attributes": check_attributes,
    "shapes": check_shapes,
    "empty_row": check_empty_row,
    "backward": check_backward,
    "causal": check_causal,
    "state_roundtrip": check_state_roundtrip,
    "seeded": check_seeded,
    "left_padding": check_left_padding,
}
