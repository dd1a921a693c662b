"""Tests for clue_fw.backbones.caser: the convolutions against a loop over the paper's
formulas, filter heights 1..L, padding and short sequences, the spec's checks, the
refusal of recipes that read per-position states, and tiny runs that learn."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from rich.console import Console

from clue_fw.backbones.caser import MAX_LENGTH, CaserEncoder, CaserSpec
from clue_fw.components import BuildContext
from clue_fw.errors import RecipeError
from clue_fw.recipe import validate_recipe
from clue_fw.runner import run

NUM_ITEMS, MAX_LEN, DIM = 30, 8, 12
CONTEXT = BuildContext(num_items=NUM_ITEMS, max_len=MAX_LEN)


def encoder(seed: int = 0, **fields: Any) -> CaserEncoder:
    torch.manual_seed(seed)
    spec = CaserSpec(**{"dim": DIM, "n_h": 3, "n_v": 2, **fields})
    return spec.build(CONTEXT).eval()


def left_pad(rows: list[list[int]], width: int = MAX_LEN) -> torch.Tensor:
    return torch.tensor([[0] * (width - len(r)) + r for r in rows])


ROWS = [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11], [12], [13, 14, 13, 31]]  # 31 is [MASK]


def reference_user(model: CaserEncoder, row: list[int]) -> torch.Tensor:
    """Caser's user vector ``z`` for one row, written out window by window (eval mode)."""
    length = model.length
    window = ([0] * length + row)[-length:]
    rows = model.item_embedding.weight[torch.tensor(window)]  # [L, d]
    act = model.conv_activation
    parts = []
    if model.vertical is not None:  # n_v filters of L x 1: weighted sums of the rows
        weight = model.vertical.weight[:, :, 0]  # [n_v, L]
        parts.append((weight @ rows + model.vertical.bias[:, None]).flatten())
    for height, conv in enumerate(model.horizontal, start=1):
        values = []
        for start in range(length - height + 1):
            if not any(window[start : start + height]):
                continue  # a window of padding only is not pooled
            patch = rows[start : start + height]  # [h, d]
            out = torch.einsum("ndh,hd->n", conv.weight, patch) + conv.bias
            values.append(act(out))
        pooled = torch.stack(values).max(dim=0).values if values else torch.zeros(conv.out_channels)
        parts.append(pooled)
    return model.fc_activation(model.fc(torch.cat(parts)))


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"length": 5},
        {"n_v": 0},
        {"n_h": 0},
        {"conv_activation": "tanh", "fc_activation": "identity"},
        {"conv_activation": "identity", "fc_activation": "sigmoid", "length": 1},
    ],
    ids=["default", "L5", "horizontal-only", "vertical-only", "tanh", "identity-L1"],
)
def test_user_vector_is_the_papers_formula(fields: dict[str, Any]) -> None:
    model = encoder(**fields)
    with torch.no_grad():
        out = model(left_pad(ROWS))
        expected = torch.stack([reference_user(model, row) for row in ROWS])
    torch.testing.assert_close(out.user, expected, rtol=1e-5, atol=1e-6)


def test_shapes_states_and_no_user_token() -> None:
    model = encoder()
    out = model(left_pad(ROWS))
    assert out.user.shape == (4, DIM)
    assert out.states.shape == (4, MAX_LEN, DIM) and not out.states.any()  # no states
    assert not hasattr(model, "user_token")  # no [UR] read-out
    assert CaserSpec.position_states is False
    with pytest.raises(ValueError, match="exceeds max_len"):
        model(torch.ones(1, MAX_LEN + 1, dtype=torch.long))


@pytest.mark.parametrize("length", [1, 3, MAX_LEN])
def test_horizontal_filters_have_every_height_from_1_to_L(length: int) -> None:
    model = encoder(length=length, n_h=4, n_v=3)
    heights = [conv.kernel_size[0] for conv in model.horizontal]
    assert heights == list(range(1, length + 1))
    for conv in model.horizontal:
        assert (conv.in_channels, conv.out_channels) == (DIM, 4)  # h x d filters, n_h each
    assert model.vertical is not None
    assert tuple(model.vertical.weight.shape) == (3, length, 1)  # n_v filters of L x 1
    assert model.fc.in_features == 4 * length + 3 * DIM


def only_bank(height: int, length: int = 4) -> CaserEncoder:
    """An encoder whose only live filters are the horizontal bank of ``height``."""
    model = encoder(length=length, n_v=0, conv_activation="identity", fc_activation="identity")
    with torch.no_grad():
        for bank, conv in enumerate(model.horizontal, start=1):
            if bank != height:
                conv.weight.zero_()
                conv.bias.zero_()
    return model


def test_a_filter_of_height_h_reads_h_consecutive_items() -> None:
    """Height 1 pools single items, so the order does not matter; height 2 pools adjacent
    pairs, so reversing the sequence changes them; height L reads the whole window."""
    forward, backward = left_pad([[1, 2, 3, 4]], 4), left_pad([[4, 3, 2, 1]], 4)
    single = only_bank(1)
    torch.testing.assert_close(single(forward).user, single(backward).user)
    for height in (2, 4):
        model = only_bank(height)
        assert not torch.allclose(model(forward).user, model(backward).user)
    whole = only_bank(4)  # one window: the output is linear in all four rows
    swapped = left_pad([[1, 2, 4, 3]], 4)
    assert not torch.allclose(whole(forward).user, whole(swapped).user)


def test_left_padding_and_batch_width_do_not_matter() -> None:
    model = encoder()
    base = model(left_pad(ROWS)).user
    short = [row[-3:] for row in ROWS]
    for width in (3, 5):
        narrower = model(left_pad(short, width)).user
        torch.testing.assert_close(narrower, model(left_pad(short)).user, rtol=0, atol=1e-6)
    torch.testing.assert_close(model(left_pad(ROWS)).user, base)


def test_only_the_last_L_items_are_read() -> None:
    model = encoder(length=3)
    base = model(left_pad([[1, 2, 3, 4, 5, 6]])).user
    older = model(left_pad([[9, 9, 9, 4, 5, 6]])).user
    recent = model(left_pad([[1, 2, 3, 4, 5, 7]])).user
    torch.testing.assert_close(older, base, rtol=0, atol=0)
    assert not torch.allclose(recent, base)


def test_short_and_empty_rows() -> None:
    model = encoder(n_v=0, conv_activation="identity")
    out = model(left_pad([[], [5]]))
    assert torch.isfinite(out.user).all()
    # an empty row: every horizontal window is padding, so each bank pools to 0
    torch.testing.assert_close(out.user[0], model.fc_activation(model.fc.bias))
    # one item: a window of height h holds it for every h, windows of padding are skipped
    torch.testing.assert_close(out.user[1], reference_user(model, [5]))


def test_gradients_reach_every_item_of_the_window_and_never_padding() -> None:
    model = encoder().train()
    items = left_pad([[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11]])
    model(items).user.square().sum().backward()
    grad = model.item_embedding.weight.grad
    assert grad is not None and grad[0].abs().sum() == 0
    assert (grad[1:12].abs().sum(dim=1) > 0).all()


def test_dropout_makes_two_passes_differ_in_training() -> None:
    """CLUE's dropout views differ only through the encoder's dropout."""
    model = encoder(dropout=0.5).train()
    items = left_pad(ROWS)
    assert not torch.allclose(model(items).user, model(items).user)
    model.eval()
    torch.testing.assert_close(model(items).user, model(items).user)


# ------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"n_h": 0, "n_v": 0}, "n_h and n_v are both 0"),
        ({"dim": 0}, "greater than 0"),
        ({"n_h": -1}, "greater than or equal to 0"),
        ({"n_v": 5000}, "less than or equal to 4096"),
        ({"length": 0}, "greater than 0"),
        ({"length": MAX_LENGTH + 1}, f"less than or equal to {MAX_LENGTH}"),
        ({"dropout": 1.0}, "less than 1"),
        ({"conv_activation": "gelu"}, "'relu', 'tanh', 'sigmoid' or 'identity'"),
        ({"length": "5"}, "valid integer"),
        ({"windows": 5}, "Extra inputs are not permitted"),
    ],
)
def test_bad_spec_fields_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CaserSpec(**fields)


def test_length_defaults_to_max_len() -> None:
    assert encoder().length == MAX_LEN
    assert CaserSpec().window_length(30) == 30 and CaserSpec(length=5).window_length(30) == 5


# ------------------------------------------------------------------------- in recipes

RECIPE: dict[str, Any] = {
    "seed": 0,
    "device": "cpu",
    "data": {
        "format": "synthetic",
        "num_users": 200,
        "num_items": 40,
        "min_length": 8,
        "max_length": 20,
        "num_clusters": 4,
        "stickiness": 0.9,
        "max_len": 8,
    },
    "backbone": {"kind": "caser", "dim": 16, "n_h": 4, "n_v": 2, "dropout": 0.2},
    "finetune": {
        "head": {"kind": "next_item", "loss_positions": "ur", "exclude_seen": "none"},
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.005, "history": "all"},
        "patience": 3,
    },
}


def recipe(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(RECIPE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data


LABELS = {"path": "labels.csv"}
CLUE_PRETRAIN = {
    "objective": {"kind": "clue", "projector_dim": 32, "predictor_dim": 8},
    "views": [{"kind": "dropout"}],
    "train": {"epochs": 2, "batch_size": 64},
}


@pytest.mark.parametrize(
    "changes, fragments",
    [
        (
            {"pretrain": {"objective": {"kind": "masked_item"}, "train": {"epochs": 1}}},
            (
                "backbone 'caser' has no per-position states",
                "pretrain.objective 'masked_item' predicts each masked item from the state "
                "at its position; use an objective that reads user vectors there",
            ),
        ),
        (
            {"finetune__head__loss_positions": "all"},
            (
                "finetune.head.loss_positions: all trains every position's state",
                "set finetune.head.loss_positions: ur",
                "or use a backbone with per-position states (cnn, deepfm, gru, item_mean, nfm, "
                "transformer)",
            ),
        ),
        (
            {
                "finetune__head": {"kind": "profile", "user_vector": "mean", "labels": LABELS},
                "finetune__train__history": "recent",
            },
            ("finetune.head.user_vector: mean averages the per-position states",),
        ),
        (
            {
                "finetune__auxiliary": [
                    {"objective": {"kind": "masked_item"}, "views": [{"kind": "dropout"}]}
                ]
            },
            ("finetune.auxiliary.0.objective 'masked_item' predicts each masked item",),
        ),
        (
            {"backbone__length": 9},
            ("backbone.length (9) is longer than data.max_len (8)", "at most 8"),
        ),
        (
            {"data__max_len": 300},
            ("L defaults to data.max_len (300), more than the 256", "backbone.length"),
        ),
    ],
    ids=["masked-item", "loss-positions-all", "user-vector-mean", "auxiliary", "L", "L-default"],
)
def test_recipes_that_cannot_work_are_refused_at_validation(
    changes: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(RecipeError) as caught:
        validate_recipe(recipe(**changes))
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message  # one paragraph


def test_the_same_recipes_validate_with_states_readers_switched_off() -> None:
    validate_recipe(recipe())
    validate_recipe(recipe(pretrain=CLUE_PRETRAIN))
    profile = {"kind": "profile", "labels": LABELS}
    validate_recipe(recipe(finetune__head=profile, finetune__train__history="recent"))
    # no pre-training at all ('none') reads nothing
    validate_recipe(recipe(pretrain={"objective": {"kind": "none"}}))
    # masked-item pre-training with a backbone that has states is still fine
    validate_recipe(
        recipe(
            backbone={"kind": "gru", "dim": 16},
            pretrain={"objective": {"kind": "masked_item"}, "train": {"epochs": 1}},
            finetune__head__loss_positions="all",
        )
    )


def test_clue_validate_exits_2_with_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml
    from cli_main import main_exit

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(finetune__head__loss_positions="all")))
    code, out, err = main_exit(["validate", str(path)], capsys)
    assert code == 2
    assert "Traceback" not in out + err
    assert "backbone 'caser' has no per-position states" in err
    assert "finetune.head.loss_positions: ur" in err


def quiet() -> Console:
    return Console(file=io.StringIO())


def test_next_item_on_the_user_vector_learns(tmp_path: Path) -> None:
    result = run(recipe(), out=tmp_path / "run", console=quiet())
    random_recall = 10 / RECIPE["data"]["num_items"]
    for split in ("valid", "test"):
        assert result.metrics[split]["recall@10"] > 3 * random_recall, result.metrics


def test_clue_pre_training_then_fine_tuning_runs_and_learns(tmp_path: Path) -> None:
    result = run(recipe(pretrain=CLUE_PRETRAIN), out=tmp_path / "run", console=quiet())
    assert (tmp_path / "run" / "pretrain" / "encoder.safetensors").is_file()
    assert result.metrics["test"]["recall@10"] > 3 * 10 / RECIPE["data"]["num_items"]


def test_infonce_pre_training_lowers_its_loss(tmp_path: Path) -> None:
    pretrain = {
        "objective": {"kind": "infonce", "similarity": "cosine", "temperature": 0.2},
        "views": [{"kind": "mask", "rho": 0.3}],
        "train": {"epochs": 3, "batch_size": 64},
    }
    run(recipe(pretrain=pretrain, finetune__train__epochs=1), out=tmp_path / "run", console=quiet())
    import csv

    with open(tmp_path / "run" / "pretrain" / "history.csv") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == 3 and losses[-1] < losses[0], losses


def test_clue_show_and_list_tell_what_caser_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    from cli_main import main_exit

    code, out, _ = main_exit(["show", "caser"], capsys)
    assert code == 0
    assert "no per-position states" in out and "loss_positions: ur" in out
    assert "no user-id embedding" in out and "length: int or None = None" in out
    code, out, _ = main_exit(["list", "backbone"], capsys)
    assert code == 0 and "caser" in out
