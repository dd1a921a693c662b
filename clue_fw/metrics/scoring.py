"""User x item scores, any block of items at a time, in float32 or with bf16 factors.

An :class:`ItemScorer` holds a batch of user vectors ``[B, d]`` and the item vectors
``[N, d]`` (row ``i`` scores column ``i``); :meth:`ItemScorer.scores` gives the float32
scores of any columns, a range or a list of ids. Ranking over blocks of items
(:mod:`clue_fw.metrics.blockwise`) asks it for one block at a time, so the ``[B, N]``
matrix never exists.

``precision``:

* ``float32``: ``users @ weight.T``, the very product the heads compute in one piece.
  The product of a block of columns is, to the bit, those columns of the whole product
  for the shapes checked on the CPU (tens of users or more, blocks of hundreds of items
  or more); a BLAS library may sum a small product in another order, which moves a score
  by one unit in the last place (docs/scale.md, "Ranking a large catalogue").
* ``bf16``: both factors are rounded to bfloat16 and the products are summed in float32.
  On CUDA this is one bf16 matmul with a float32 output (``torch.mm(..., out_dtype=
  torch.float32)``), which uses the tensor cores; elsewhere (the CPU) the rounded
  factors are multiplied in float32: the same rounding, summed in another order, and no
  faster than ``float32``. Scores, ranks and top-k stay float32.

>>> users = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
>>> items = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, -1.0]])
>>> scorer = ItemScorer(users, items, padding=0)
>>> scorer.scores(slice(0, 3)).tolist()
[[-inf, 1.0, 3.0], [-inf, 2.0, -2.0]]
>>> scorer.scores(torch.tensor([2, 0])).tolist()
[[3.0, -inf], [-2.0, -inf]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from clue_fw.metrics.options import ScorePrecision

PRECISIONS: tuple[ScorePrecision, ...] = ("float32", "bf16")


def check_precision(precision: str) -> ScorePrecision:
    """``precision`` if it is one of :data:`PRECISIONS`; a ValueError naming them otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"score_precision must be 'float32' or 'bf16', got {precision!r}; set "
            "finetune.head.score_precision to one of them."
        )
    return precision  # type: ignore[return-value]


def item_products(
    users: torch.Tensor, weight: torch.Tensor, precision: ScorePrecision = "float32"
) -> torch.Tensor:
    """``[B, n]`` float32 scores ``users [B, d] @ weight [n, d].T`` in ``precision``."""
    if precision == "float32":
        return users @ weight.T
    check_precision(precision)
    left, right = users.to(torch.bfloat16), weight.to(torch.bfloat16)
    if left.is_cuda:
        try:  # bf16 tensor-core matmul, float32 accumulation and output
            return torch.mm(left, right.T, out_dtype=torch.float32)
        except torch.OutOfMemoryError:
            raise
        except (NotImplementedError, RuntimeError, TypeError):
            pass  # a build or GPU without it: the same rounding, multiplied in float32
    return left.float() @ right.float().T


class ItemScores(Protocol):
    """What blocked ranking reads: ``rows`` users, ``num_columns`` items, the ``device``,
    and the ``[rows, n]`` float32 scores of any columns (a ``slice`` or int64 ids).
    :class:`ItemScorer` is the built-in one; a head with another score (a bias, say)
    can pass its own."""

    @property
    def rows(self) -> int: ...

    @property
    def num_columns(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def scores(self, columns: slice | torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class ItemScorer:
    """Scores of the ``[N, d]`` item vectors ``weight`` for the ``[B, d]`` ``users``.

    ``padding``: a column that is never ranked (``next_item``'s id 0): it scores
    ``-inf`` in every block that holds it.
    """

    users: torch.Tensor
    weight: torch.Tensor
    padding: int | None = None
    precision: ScorePrecision = "float32"

    @property
    def rows(self) -> int:
        return int(self.users.shape[0])

    @property
    def num_columns(self) -> int:
        return int(self.weight.shape[0])

    @property
    def device(self) -> torch.device:
        return self.users.device

    def scores(self, columns: slice | torch.Tensor) -> torch.Tensor:
        """``[B, n]`` float32 scores of ``columns``: a ``slice`` of column ids (a view of the
        item vectors, no copy) or an int64 ``[n]`` tensor of column ids."""
        block = item_products(self.users, self.weight[columns], self.precision)
        if self.padding is None:
            return block
        if isinstance(columns, slice):
            start, stop, _ = columns.indices(self.num_columns)
            if start <= self.padding < stop:
                block[:, self.padding - start] = float("-inf")
        else:
            block.masked_fill_((columns == self.padding).unsqueeze(0), float("-inf"))
        return block
