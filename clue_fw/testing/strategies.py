"""Hypothesis strategies for view tests: left-padded item batches and spec fields.

Importing this module needs ``hypothesis`` (``pip install 'clue_fw[testing]'``).
A plugin's own property tests can use them too::

    from hypothesis import given
    from clue_fw.testing.strategies import item_batches, seeds

    @given(items=item_batches(), seed=seeds)
    def test_my_view_keeps_the_multiset(items, seed): ...
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any

import annotated_types
import torch
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from clue_fw.components import ComponentSpec
from clue_fw.testing._require import require
from clue_fw.testing.data import NUM_ITEMS, VIEW_CONTEXT

require("hypothesis")
from hypothesis import strategies as st  # noqa: E402

#: Seeds of a ``torch.Generator``.
seeds = st.integers(0, 2**32 - 1)

#: Fields never drawn: the discriminator, and ``probability``, which the framework
#: applies around the view (:class:`~clue_fw.augmentations.compose.ViewPipeline`).
NOT_DRAWN = frozenset({"kind", "probability"})


@st.composite
def item_batches(
    draw: st.DrawFn,
    min_len: int = 0,
    max_n: int = VIEW_CONTEXT.max_len,
    num_items: int = NUM_ITEMS,
    max_rows: int = 8,
) -> torch.Tensor:
    """A left-padded LongTensor ``[B, n]``: B in 1..max_rows, n in 1..max_n, each row
    ``min_len..n`` real items in ``1..num_items`` after its padding (zeros)."""
    rows = draw(st.integers(1, max_rows))
    n = draw(st.integers(max(1, min_len), max_n))
    lengths = draw(st.lists(st.integers(min(min_len, n), n), min_size=rows, max_size=rows))
    batch = []
    for length in lengths:
        real = draw(st.lists(st.integers(1, num_items), min_size=length, max_size=length))
        batch.append([0] * (n - length) + real)
    return torch.tensor(batch, dtype=torch.long)


def field_strategy(field: FieldInfo) -> st.SearchStrategy[Any] | None:
    """Values across a field's declared range: a bool, a ``Literal`` choice, or an int or
    float between two bounds (``ge``/``gt`` and ``le``/``lt``); None for anything else."""
    annotation = field.annotation
    if annotation is bool:
        return st.booleans()
    if typing.get_origin(annotation) is typing.Literal:
        return st.sampled_from(typing.get_args(annotation))
    if annotation not in (int, float):
        return None
    low = high = None
    exclude_low = exclude_high = False
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            low = bound.ge
        elif isinstance(bound, annotated_types.Gt):
            low, exclude_low = bound.gt, True
        elif isinstance(bound, annotated_types.Le):
            high = bound.le
        elif isinstance(bound, annotated_types.Lt):
            high, exclude_high = bound.lt, True
    if low is None or high is None:
        return None
    if annotation is int:
        return st.integers(int(low) + exclude_low, int(high) - exclude_high)
    return st.floats(
        float(low), float(high), exclude_min=exclude_low, exclude_max=exclude_high
    ).filter(math.isfinite)


def spec_instances(
    spec_class: type[ComponentSpec], fixed: Mapping[str, Any]
) -> st.SearchStrategy[ComponentSpec]:
    """Valid specs of ``spec_class``: ``fixed`` fields as given, every other bool,
    ``Literal`` or bounded number field drawn across its range, the rest defaults.

    Combinations the spec's own validators refuse are skipped.
    """
    drawn = {
        name: strategy
        for name, field in spec_class.model_fields.items()
        if name not in NOT_DRAWN and name not in fixed
        for strategy in [field_strategy(field)]
        if strategy is not None
    }

    def validated(values: dict[str, Any]) -> ComponentSpec | None:
        try:
            return spec_class.model_validate({**fixed, **values})
        except ValidationError:
            return None

    return st.fixed_dictionaries(drawn).map(validated).filter(lambda spec: spec is not None)
