"""What a recipe says about ranking metrics: how ties are broken and the cut-offs ``k``.

Free of torch, so that head specs can declare these fields without importing it; the
metrics themselves are :mod:`clue_fw.metrics.ranking`, which re-exports every name here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

#: How a tie between the target and other items is broken (see the module docstring).
Ties = Literal["pessimistic", "average"]

#: Recipe description of a head's ``ties`` field.
TIES_DESCRIPTION = (
    "Items that score the same as the held-out item: 'pessimistic' ranks them all above it; "
    "'average' reports each metric's expected value under a random tie-break."
)

#: Key of the per-batch number of rows with a NaN score in a head's ``metric_sums``;
#: :func:`clue_fw.training.loop.evaluate` removes it and refuses the split when it is not 0.
NAN_ROWS = "nan_rows"


def check_cutoffs(ks: list[int]) -> list[int]:
    """Cut-offs for ``@k`` metrics: positive, sorted, without repeats."""
    if any(k <= 0 for k in ks):
        raise ValueError(f"every k must be positive, got {ks}")
    return sorted(set(ks))


#: The type of a head's ``ks`` field: at least one positive cut-off.
Cutoffs = Annotated[list[int], Field(min_length=1), AfterValidator(check_cutoffs)]
