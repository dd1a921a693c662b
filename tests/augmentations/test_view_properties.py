"""Property tests of the built-in views' strength ``rho`` and of each view's own promise.

The properties every view must have (shape, dtype and padding kept, ids in range,
determinism under a seeded generator, pipeline probability) are the view contract of
:mod:`clue_fw.testing`, which ``tests/test_component_smoke.py`` runs on every built-in
view and plugin packages run on theirs. Here: the views with a ``rho`` field (found
in the registry, so a later one is checked too) are the identity at ``rho = 0``,
random above it, and change about ``probability`` of the rows in a pipeline; then the
promises of ``permute``, ``crop`` and ``mask``.
"""

from __future__ import annotations

import math
from typing import Any

import annotated_types
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.components import AugmentationSpec, BuildContext
from clue_fw.registry import build_registry
from clue_fw.testing.strategies import item_batches

NUM_ITEMS = 30
CONTEXT = BuildContext(num_items=NUM_ITEMS, max_len=20)
FAST = settings(max_examples=60, deadline=None)

SPECS: dict[str, type[AugmentationSpec]] = {
    kind: entry.spec  # type: ignore[misc]
    for kind, entry in build_registry().entries["augmentation"].items()
}
WITH_RHO = pytest.mark.parametrize(
    "kind", sorted(kind for kind, spec in SPECS.items() if "rho" in spec.model_fields)
)


def has_rho(kind: str) -> bool:
    return "rho" in SPECS[kind].model_fields


def make_view(kind: str, **fields: Any) -> Any:
    return SPECS[kind](**fields).build(CONTEXT)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


batches = item_batches
seeds = st.integers(0, 2**32 - 1)
rhos = st.floats(0.0, 1.0)


def largest_rho(kind: str) -> float:
    """The largest ``rho`` the view's spec accepts (``mask`` refuses 1: both views would
    be all [MASK])."""
    for bound in SPECS[kind].model_fields["rho"].metadata:
        if isinstance(bound, annotated_types.Lt):
            return math.nextafter(float(bound.lt), 0.0)
        if isinstance(bound, annotated_types.Le):
            return float(bound.le)
    return 1.0


def fields_for(kind: str, rho: float) -> dict[str, float]:
    """The view's fields for a drawn ``rho`` in [0, 1], kept within the spec's bound."""
    return {"rho": min(rho, largest_rho(kind))} if has_rho(kind) else {}


def is_left_padded(items: torch.Tensor) -> bool:
    """Every row is ``0 ... 0 x ... x``: no padding after the first real item."""
    real = (items != 0).long()
    return bool((real[:, 1:] >= real[:, :-1]).all())


# ----------------------------------------------------------------------------- views with rho


@WITH_RHO
@FAST
@given(items=batches(), seed=seeds)
def test_rho_zero_is_identity(kind: str, items: torch.Tensor, seed: int) -> None:
    view = SPECS[kind](rho=0.0).build(CONTEXT)  # type: ignore[call-arg]
    assert torch.equal(view(items, generator(seed)), items)


@WITH_RHO
@FAST
@given(items=batches(min_len=10), seed=st.integers(0, 2**31))
def test_different_seeds_differ(kind: str, items: torch.Tensor, seed: int) -> None:
    # One pair of seeds may coincide by chance; over ten seeds some output must differ.
    # Rows hold distinct items so that a shuffle of the span is visible.
    rows, n = items.shape
    items = torch.where(items != 0, torch.arange(1, n + 1).expand(rows, n), items)
    view = make_view(kind, rho=0.5)
    first = view(items, generator(seed))
    assert any(not torch.equal(first, view(items, generator(seed + k))) for k in range(1, 10))


# ----------------------------------------------------------------------------- per view


@FAST
@given(items=batches(), seed=seeds, rho=rhos)
def test_permute_keeps_each_rows_multiset(items: torch.Tensor, seed: int, rho: float) -> None:
    out = make_view("permute", **fields_for("permute", rho))(items, generator(seed))
    assert torch.equal(out.sort(dim=1).values, items.sort(dim=1).values)
    assert torch.equal(out == 0, items == 0)


@pytest.mark.parametrize("mode", ["drop", "keep"])
@FAST
@given(items=batches(), seed=seeds, rho=rhos)
def test_crop_keeps_an_ordered_subsequence(
    mode: str, items: torch.Tensor, seed: int, rho: float
) -> None:
    out = make_view("crop", mode=mode, **fields_for("crop", rho))(items, generator(seed))
    assert is_left_padded(out)
    for row_in, row_out in zip(items.tolist(), out.tolist(), strict=True):
        kept = [x for x in row_out if x]
        real = [x for x in row_in if x]
        assert len(kept) <= len(real)
        assert bool(kept) == bool(real), "a non-empty row must stay non-empty"
        # Contiguous removal: what is kept is real minus one span (drop) or one span (keep).
        if mode == "drop":
            assert any(
                real[:s] + real[s + len(real) - len(kept) :] == kept for s in range(len(real) + 1)
            )
        else:
            assert any(real[s : s + len(kept)] == kept for s in range(len(real) + 1))


@FAST
@given(items=batches(), seed=seeds)
def test_crop_keep_mode_rho_zero_is_identity(items: torch.Tensor, seed: int) -> None:
    assert torch.equal(make_view("crop", rho=0.0, mode="keep")(items, generator(seed)), items)


@FAST
@given(items=batches(), seed=seeds, rho=rhos)
def test_mask_changes_only_real_items_and_only_to_mask(
    items: torch.Tensor, seed: int, rho: float
) -> None:
    out = make_view("mask", **fields_for("mask", rho))(items, generator(seed))
    changed = out != items
    assert bool((items[changed] != 0).all())
    assert bool((out[changed] == CONTEXT.mask_id).all())


# ----------------------------------------------------------------------------- composition


def long_rows(rows: int = 2000, n: int = 20) -> torch.Tensor:
    return torch.arange(1, n + 1).expand(rows, n).clone()


@WITH_RHO
def test_pipeline_calls_with_one_generator_are_independent(kind: str) -> None:
    items = long_rows(rows=8)
    pipeline = ViewPipeline([make_view(kind, rho=0.5)], [1.0])
    shared = generator(0)
    assert not torch.equal(pipeline(items, shared), pipeline(items, shared))


@WITH_RHO
@pytest.mark.parametrize("probability", [0.2, 0.5, 0.8])
def test_pipeline_changes_about_p_of_rows(kind: str, probability: float) -> None:
    items = long_rows()
    out = ViewPipeline([make_view(kind, rho=0.5)], [probability])(items, generator(1))
    changed = (out != items).any(dim=1).float().mean().item()
    assert abs(changed - probability) < 0.05  # binomial sd <= 0.012 at 2000 rows
