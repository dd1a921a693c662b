"""The small, fixed inputs every contract check feeds a component.

Item ids follow :class:`~clue_fw.components.BuildContext`: ``0`` is padding,
``1..NUM_ITEMS`` are real items and ``NUM_ITEMS + 1`` is ``[MASK]``. Batches are
left-padded (the most recent item is in the last column).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from clue_fw.components import BuildContext
from clue_fw.data.dataset import SequenceData, build_sequence_data
from clue_fw.data.synthetic import generate_sequences

NUM_ITEMS = 30
MAX_LEN = 12
#: Specs with a ``dim`` field are built with this width, to keep the checks fast.
DIM = 16
CONTEXT = BuildContext(num_items=NUM_ITEMS, max_len=MAX_LEN)
#: Views are drawn wider batches (up to 20 positions) than the backbones read.
VIEW_CONTEXT = BuildContext(num_items=NUM_ITEMS, max_len=20)

#: Four users: a full row, two short ones and a middling one (distinct items).
SEQUENCES = [list(range(1, MAX_LEN + 1)), [13, 14, 15], [16], [17, 18, 19, 20, 21, 22, 23]]


def left_pad(rows: list[list[int]], width: int = MAX_LEN) -> torch.Tensor:
    """``[len(rows), width]`` LongTensor: each row right-aligned after zeros (padding)."""
    for row in rows:
        if len(row) > width:
            raise ValueError(f"a row of {len(row)} items does not fit in width {width}")
    return torch.tensor([[0] * (width - len(r)) + r for r in rows], dtype=torch.long)


ITEMS = left_pad(SEQUENCES)
"""``[4, MAX_LEN]``: the batch the backbone, objective and view checks encode."""


@lru_cache(maxsize=1)
def sequence_data() -> SequenceData:
    """40 synthetic users over ``NUM_ITEMS`` items (lengths 4..16) for the head checks.

    A head's ``contract_example`` may write files keyed by its ``user_ids``.
    """
    raw = generate_sequences(
        num_users=40, num_items=NUM_ITEMS, min_length=4, max_length=16, num_clusters=3, seed=0
    )
    return build_sequence_data(raw)
