"""Contract checks of a view (family ``augmentation``), as Hypothesis properties.

A view maps a left-padded ``[B, n]`` batch and a ``torch.Generator`` to a batch of
the same shape and dtype; padding stays padding and rows stay left-padded (so a view
may drop items, never add them), ids stay in ``0..mask_id``, the input is not changed
in place, and the output depends only on the batch and the generator (not on the
global RNG). Each property is drawn over many batches, seeds and spec settings: every
bool, ``Literal`` and bounded number field of the spec is drawn across its range.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from clue_fw.augmentations.compose import ViewPipeline, view_output_problem
from clue_fw.components import Augmentation, AugmentationSpec, ComponentSpec
from clue_fw.registry import ComponentEntry
from clue_fw.testing._require import require
from clue_fw.testing.data import VIEW_CONTEXT, sequence_data
from clue_fw.testing.specs import ContractError, example_fields, example_spec
from clue_fw.testing.state import assert_state_roundtrips

if TYPE_CHECKING:
    from clue_fw.testing.cases import ContractCase

#: Examples per property: enough to hit empty rows, full rows and the field bounds.
MAX_EXAMPLES = 60


def build_view(spec: ComponentSpec) -> Augmentation:
    assert isinstance(spec, AugmentationSpec)
    view = spec.build(VIEW_CONTEXT)
    if not isinstance(view, Augmentation):
        raise ContractError(
            f"{type(spec).__qualname__}.build returned {type(view).__name__}; a view spec builds "
            "a clue_fw.components.Augmentation."
        )
    return view


def _fixed_fields(entry: ComponentEntry, folder: Path) -> dict[str, Any]:
    fields = {"kind": entry.kind, **example_fields(entry, sequence_data(), folder)}
    example_spec(entry, root=folder)  # the defaults and example must validate on their own
    return fields


Property = Callable[[ComponentSpec, Augmentation, torch.Tensor, int], None]


def _property(case: ContractCase, folder: Path, test: Property) -> None:
    """Run ``test(spec, view, items, seed)`` over drawn specs, batches and generator seeds."""
    require("hypothesis")
    from hypothesis import given, settings

    from clue_fw.testing.strategies import item_batches, seeds, spec_instances

    specs = spec_instances(case.entry.spec, _fixed_fields(case.entry, folder))

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None)
    @given(spec=specs, items=item_batches(), seed=seeds)
    def run(spec: ComponentSpec, items: torch.Tensor, seed: int) -> None:
        test(spec, build_view(spec), items, seed)

    run()


def check_contract(case: ContractCase, folder: Path) -> None:
    """Shape, dtype, padding, left-padding and id range kept; the input left alone."""

    def test(spec: ComponentSpec, view: Augmentation, items: torch.Tensor, seed: int) -> None:
        before = items.clone()
        out = view(items, torch.Generator().manual_seed(seed))
        assert torch.equal(items, before), f"{spec!r} changed its input batch in place"
        problem = view_output_problem(items, out, VIEW_CONTEXT.mask_id)
        assert problem is None, f"{spec!r} broke the view contract: {problem}"
        assert bool(((out != 0).sum(dim=1) <= (items != 0).sum(dim=1)).all())

    _property(case, folder, test)


def check_seeded(case: ContractCase, folder: Path) -> None:
    """The same generator seed gives the same output, whatever the global RNG holds."""

    def test(spec: ComponentSpec, view: Augmentation, items: torch.Tensor, seed: int) -> None:
        torch.manual_seed(1)
        first = view(items, torch.Generator().manual_seed(seed))
        torch.manual_seed(2)
        second = view(items, torch.Generator().manual_seed(seed))
        assert torch.equal(first, second), (
            f"{spec!r} gave two outputs for one generator seed: draw every random number "
            "from the `generator` argument, never from torch's global RNG"
        )

    _property(case, folder, test)


def check_probability(case: ContractCase, folder: Path) -> None:
    """In the framework's pipeline, probability 0 is the identity and 1 is the view."""

    def test(spec: ComponentSpec, view: Augmentation, items: torch.Tensor, seed: int) -> None:
        kind = [case.entry.kind]
        never = ViewPipeline([view], [0.0], kind, VIEW_CONTEXT.mask_id)
        assert torch.equal(never(items, torch.Generator().manual_seed(seed)), items)
        always = ViewPipeline([view], [1.0], kind, VIEW_CONTEXT.mask_id)
        expected = view(items, torch.Generator().manual_seed(seed))
        assert torch.equal(always(items, torch.Generator().manual_seed(seed)), expected)

    _property(case, folder, test)


def check_state_roundtrip(case: ContractCase, folder: Path) -> None:
    """The view's state (often none) is seeded and survives a safetensors round trip."""
    spec = example_spec(case.entry, root=folder)

    def make(seed: int) -> Augmentation:
        torch.manual_seed(seed)
        return build_view(spec)

    assert_state_roundtrips(make, folder, f"view {case.entry.kind}")


CHECKS = {
    "contract": check_contract,
    "seeded": check_seeded,
    "probability": check_probability,
    "state_roundtrip": check_state_roundtrip,
}
