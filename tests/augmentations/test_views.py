"""Hand-made examples for the explicit views (CLUE Sec. IV-B)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from clue_fw.augmentations.crop import CropView, CropViewSpec
from clue_fw.augmentations.mask import MaskView, MaskViewSpec
from clue_fw.augmentations.permute import PermuteView, PermuteViewSpec
from clue_fw.components import BuildContext
from clue_fw.registry import build_registry

CONTEXT = BuildContext(num_items=9, max_len=8)
MASK = CONTEXT.mask_id  # 10


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


BATCH = torch.tensor(
    [
        [0, 0, 1, 2, 3, 4, 5, 6],
        [0, 0, 0, 0, 0, 0, 0, 7],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [9, 8, 7, 6, 5, 4, 3, 2],
    ]
)


def test_views_are_registered_after_dropout() -> None:
    kinds = list(build_registry().entries["augmentation"])
    assert kinds[:4] == ["dropout", "mask", "crop", "permute"]
    for spec in (MaskViewSpec, CropViewSpec, PermuteViewSpec):
        assert spec.summary()
        for name, field in spec.model_fields.items():
            assert name == "kind" or field.description, f"{spec.__name__}.{name} has no description"


def test_mask_rho_one_masks_every_real_item() -> None:
    # the module at its limit (a recipe refuses rho = 1: both views would be all [MASK])
    out = MaskView(1.0, CONTEXT.mask_id)(BATCH, generator())
    assert torch.equal(out, torch.where(BATCH != 0, MASK, 0))


def test_mask_rho_half_masks_about_half() -> None:
    items = torch.arange(1, 10).repeat(200, 1)
    out = MaskView(0.5, MASK)(items, generator())
    assert set(out.unique().tolist()) <= set(range(1, 10)) | {MASK}
    assert abs((out == MASK).float().mean().item() - 0.5) < 0.03


def test_crop_drop_removes_one_contiguous_span() -> None:
    # L = 6, rho = 0.5: floor(3.0) = 3 items removed as one span; L = 1 keeps its item.
    out = CropView(0.5, "drop")(BATCH, generator())
    row = [x for x in out[0].tolist() if x]
    assert len(row) == 3
    assert row in ([4, 5, 6], [1, 5, 6], [1, 2, 6], [1, 2, 3])
    assert out[0, :5].eq(0).all()
    assert out[1].tolist() == BATCH[1].tolist()
    assert out[2].tolist() == [0] * 8
    assert out[3].eq(0).sum().item() == 4  # L = 8: 4 removed


def test_crop_keep_keeps_one_contiguous_span() -> None:
    # L = 6, rho = 0.5: L - floor(3.0) = 3 items kept, contiguous (CL4SRec eta = 0.5).
    out = CropView(0.5, "keep")(BATCH, generator())
    row = [x for x in out[0].tolist() if x]
    assert row in ([1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6])
    assert out[0, :5].eq(0).all()
    assert out[1].tolist() == BATCH[1].tolist()


@pytest.mark.parametrize("mode", ["drop", "keep"])
def test_crop_rho_one_keeps_exactly_one_item(mode: str) -> None:
    out = CropView(1.0, mode)(BATCH, generator())
    assert (out != 0).sum(dim=1).tolist() == [1, 1, 0, 1]
    assert out[:, :-1].eq(0).all()


def test_crop_length_rule_is_exact_floor() -> None:
    # 0.3 * 10 is 3.0000000000000004 and 0.7 * 10 is 7.000000000000001 in floats.
    items = torch.arange(1, 11).unsqueeze(0)
    assert (CropView(0.3, "drop")(items, generator()) != 0).sum().item() == 7
    assert (CropView(0.7, "drop")(items, generator()) != 0).sum().item() == 3
    assert (CropView(0.29, "drop")(items, generator()) != 0).sum().item() == 8


def test_permute_shuffles_only_a_span_of_floor_rho_l() -> None:
    items = torch.arange(1, 11).repeat(300, 1)  # L = 10, rho = 0.4: span of 4
    out = PermuteView(0.4)(items, generator())
    moved = out != items
    assert moved.sum(dim=1).max().item() <= 4
    first = torch.where(moved.any(dim=1), moved.float().argmax(dim=1), 0)
    last = torch.where(moved.any(dim=1), 9 - moved.flip(1).float().argmax(dim=1), 0)
    assert (last - first).max().item() <= 3
    assert moved.any(dim=1).float().mean().item() > 0.9  # 1 - 1/4! of rows change
    assert torch.equal(out.sort(dim=1).values, items)


def test_permute_by_hand() -> None:
    out = PermuteView(1.0)(BATCH, generator())
    assert out[:3, :2].eq(0).all() and out[1:3].tolist() == BATCH[1:3].tolist()
    assert sorted(out[0, 2:].tolist()) == [1, 2, 3, 4, 5, 6]
    assert sorted(out[3].tolist()) == sorted(BATCH[3].tolist())


@pytest.mark.parametrize("spec", [MaskViewSpec, CropViewSpec, PermuteViewSpec])
def test_rho_out_of_range_is_rejected(spec: type) -> None:
    with pytest.raises(ValidationError):
        spec(rho=1.5)


def test_crop_rejects_unknown_mode() -> None:
    with pytest.raises(ValidationError):
        CropViewSpec(mode="middle")
    with pytest.raises(ValueError, match="mode"):
        CropView(0.3, "middle")


def test_views_run_on_an_empty_batch_and_length_zero_rows() -> None:
    empty = torch.zeros(3, 5, dtype=torch.long)
    for view in (MaskView(0.5, MASK), CropView(0.5), CropView(0.5, "keep"), PermuteView(0.5)):
        assert torch.equal(view(empty, generator()), empty)
        assert view(torch.zeros(0, 5, dtype=torch.long), generator()).shape == (0, 5)
