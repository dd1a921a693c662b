"""What a recipe says about ranking metrics: how ties are broken, the cut-offs ``k``, and
how the item scores are computed (:class:`RankingScoreOptions`).

Free of torch, so that head specs can declare these fields without importing it; the
metrics themselves are :mod:`clue_fw.metrics.ranking`, which re-exports every name here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

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


#: The precision of the user x item score products (:mod:`clue_fw.metrics.scoring`).
ScorePrecision = Literal["float32", "bf16"]


class RankingScoreOptions(BaseModel):
    """How a ranking head computes its item scores in evaluation and ``clue recommend``
    (a mixin of head specs). Neither field changes what is ranked: ``item_block`` gives
    the same ranks and metrics as scoring every item at once, ``score_precision: bf16``
    rounds the two factors of each score (see docs/scale.md)."""

    item_block: int | None = Field(
        None,
        ge=1,
        description="Score this many items at a time when ranking (evaluation and `clue "
        "recommend`): a running count of the items above the held-out one (and a running "
        "top-k) is kept, so no users x catalogue score matrix is made; ranks and metrics are "
        "the same as without it. null: every item at once (one matrix per batch of users).",
    )
    score_precision: ScorePrecision = Field(
        "float32",
        description="'bf16': round the user vectors and item vectors to bfloat16 for the "
        "score product, which sums in float32 (on CUDA: a bf16 matmul with float32 output; "
        "on the CPU the same rounding, no speed-up); ranks and top-k stay float32. Ranks can "
        "move where scores differ by less than the rounding. 'float32': exact.",
    )

    def without_default_scoring(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` (a dump of the spec) without these fields while they hold their
        defaults, so a recipe that does not set them keeps the recipe sha256 it had before
        they existed."""
        if self.item_block is None:
            data.pop("item_block", None)
        if self.score_precision == "float32":
            data.pop("score_precision", None)
        return data
