"""Tests for clue_fw.backbones.bag: shapes, order invariance, Bi-Interaction, empty rows,
a single-row BatchNorm batch, and a tiny bag -> label training run."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from clue_fw.backbones.bag import BagEncoder, DeepFMSpec, ItemMeanSpec, NFMSpec, bi_interaction
from clue_fw.components import BackboneSpec, BuildContext

NUM_ITEMS, MAX_LEN, DIM = 30, 8, 16
CONTEXT = BuildContext(num_items=NUM_ITEMS, max_len=MAX_LEN)
SPECS: dict[str, BackboneSpec] = {
    "deepfm": DeepFMSpec(dim=DIM, hidden=[32, 32]),
    "nfm": NFMSpec(dim=DIM, hidden=[32]),
    "item_mean": ItemMeanSpec(dim=DIM),
}
KINDS = list(SPECS)


def encoder(kind: str, seed: int = 0) -> BagEncoder:
    torch.manual_seed(seed)
    model = SPECS[kind].build(CONTEXT)
    assert isinstance(model, BagEncoder)
    return model.eval()


def left_pad(rows: list[list[int]], width: int = MAX_LEN) -> torch.Tensor:
    return torch.tensor([[0] * (width - len(r)) + r for r in rows])


ROWS = [[1, 2, 3, 4, 5, 6], [9, 10, 11], [12], [13, 14, 13, 31]]  # 31 is [MASK]
ITEMS = left_pad(ROWS)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_states_are_input_embeddings(kind: str) -> None:
    model = encoder(kind)
    out = model(ITEMS)
    assert out.states.shape == (4, MAX_LEN, DIM) and out.user.shape == (4, DIM)
    torch.testing.assert_close(out.states, model.item_embedding(ITEMS))
    assert not hasattr(model, "user_token")  # no [UR] read-out in a bag model
    with pytest.raises(ValueError, match="exceeds max_len"):
        model(torch.ones(1, MAX_LEN + 1, dtype=torch.long))


@pytest.mark.parametrize("kind", KINDS)
def test_user_vector_ignores_order_and_padding(kind: str) -> None:
    model = encoder(kind)
    base = model(ITEMS).user
    generator = torch.Generator().manual_seed(0)
    for width in (6, 7, MAX_LEN):
        shuffled = [[r[i] for i in torch.randperm(len(r), generator=generator)] for r in ROWS]
        out = model(left_pad(shuffled, width)).user
        torch.testing.assert_close(out, base, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_user_vector_sees_every_item(kind: str) -> None:
    model = encoder(kind)
    changed = ITEMS.clone()
    changed[1, -1] = 20
    user = model(changed).user
    base = model(ITEMS).user
    assert not torch.allclose(user[1], base[1])
    torch.testing.assert_close(user[[0, 2, 3]], base[[0, 2, 3]])


def explicit_pairwise(ids: list[int], table: torch.Tensor) -> torch.Tensor:
    """``sum_{a<b} x_a x_b v_a * v_b`` over the distinct ids of one bag, ``x_a = count/len``."""
    values = {a: ids.count(a) / len(ids) for a in set(ids)}
    total = torch.zeros(table.shape[1])
    for a, b in itertools.combinations(sorted(values), 2):
        total += values[a] * values[b] * table[a] * table[b]
    return total


@pytest.mark.parametrize("ids", [[1, 2, 3], [2, 5], [4], [1, 1, 2], [3, 1, 3, 3, 2]])
def test_bi_interaction_equals_explicit_pairwise_sum(ids: list[int]) -> None:
    table = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0], [0.5, 4.0], [2.0, 2.0], [-1, 1]])
    items = left_pad([ids], 6)
    got = bi_interaction(items, table[items])[0]
    torch.testing.assert_close(got, explicit_pairwise(ids, table))
    if ids == [1, 2, 3]:  # by hand: (1/9)(v1*v2 + v1*v3 + v2*v3)
        torch.testing.assert_close(got, torch.tensor([3 + 0.5 + 1.5, -2 + 8 - 4]) / 9)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_empty_rows_give_zero_user_and_finite_gradients(kind: str, train: bool) -> None:
    model = encoder(kind).train(train)
    items = torch.cat([ITEMS[:2], torch.zeros(2, MAX_LEN, dtype=torch.long)])
    out = model(items)
    assert torch.equal(out.user[2:], torch.zeros(2, DIM))
    assert torch.equal(out.states[2:], torch.zeros(2, MAX_LEN, DIM))
    (out.user.square().sum() + out.states.sum()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    only_empty = model(torch.zeros(3, MAX_LEN, dtype=torch.long))
    assert torch.equal(only_empty.user, torch.zeros(3, DIM))
    only_empty.user.sum().backward()


def test_nfm_single_row_training_batch_uses_running_batchnorm_statistics() -> None:
    model = encoder("nfm").train()
    out = model(ITEMS[:1])  # plain BatchNorm1d raises on one row in training mode
    assert torch.isfinite(out.user).all()
    torch.manual_seed(0)
    eval_user = encoder("nfm").eval()(ITEMS[:1]).user
    model.eval()
    torch.testing.assert_close(model(ITEMS[:1]).user, eval_user)


def test_hidden_sizes_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="hidden size must be positive"):
        NFMSpec(hidden=[64, 0])
    with pytest.raises(ValidationError, match="hidden size must be positive"):
        DeepFMSpec(hidden=[-1])


@pytest.mark.parametrize("kind", KINDS)
def test_learns_a_bag_label_task(kind: str) -> None:
    """Label = which of 4 item groups holds most of a random bag: clearly above 25%."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (512,), generator=generator)
    group_items = torch.randint(0, 7, (512, MAX_LEN), generator=generator) + 1 + 7 * labels[:, None]
    noise = torch.randint(1, NUM_ITEMS + 1, (512, MAX_LEN), generator=generator)
    from_group = torch.rand(512, MAX_LEN, generator=generator) < 0.6
    items = torch.where(from_group, group_items, noise)
    lengths = torch.randint(2, MAX_LEN + 1, (512, 1), generator=generator)
    items = items * (torch.arange(MAX_LEN) >= MAX_LEN - lengths)  # left padding
    train, test = slice(0, 384), slice(384, 512)

    torch.manual_seed(0)
    model = SPECS[kind].model_copy(update={"dropout": 0.1}).build(CONTEXT)
    output = torch.nn.Linear(DIM, 4)
    optimiser = torch.optim.Adam([*model.parameters(), *output.parameters()], lr=1e-2)
    model.train()
    for step in range(40):
        rows = torch.arange(step * 64, step * 64 + 64) % 384
        loss = F.cross_entropy(output(model(items[train][rows]).user), labels[train][rows])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = (output(model(items[test]).user).argmax(1) == labels[test]).float().mean()
    assert accuracy > 0.6, f"{kind}: test accuracy {accuracy:.2f} (chance 0.25)"


def test_item_mean_is_the_mean_of_the_item_embeddings_by_hand() -> None:
    model = encoder("item_mean")
    table = model.item_embedding.weight
    user = model(ITEMS).user
    for row, items in zip(user, ROWS, strict=True):
        torch.testing.assert_close(row, table[items].mean(dim=0))
    assert torch.equal(model(torch.zeros(1, MAX_LEN, dtype=torch.long)).user, torch.zeros(1, DIM))
    # the default initialisation is the Transformer's std 0.02
    assert 0.015 < table[1:].std().item() < 0.025
    with pytest.raises(ValidationError):
        ItemMeanSpec(init_std=0.0)
