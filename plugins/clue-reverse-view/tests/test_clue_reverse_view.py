"""The reverse view: clue_fw's view contract, and what reversing promises."""

from __future__ import annotations

import clue_reverse_view
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clue_fw.components import BuildContext
from clue_fw.testing import contract_test
from clue_fw.testing.strategies import item_batches, seeds

test_contract = contract_test(clue_reverse_view)

CONTEXT = BuildContext(num_items=30, max_len=20)


@settings(max_examples=60, deadline=None)
@given(items=item_batches(), seed=seeds, rho=st.floats(0.0, 1.0))
def test_one_span_of_each_row_is_reversed(items: torch.Tensor, seed: int, rho: float) -> None:
    view = clue_reverse_view.ReverseViewSpec(rho=rho).build(CONTEXT)
    out = view(items, torch.Generator().manual_seed(seed))
    for row_in, row_out in zip(items.tolist(), out.tolist(), strict=True):
        real = [x for x in row_in if x]
        k = len(real) * round(rho * 1_000_000) // 1_000_000
        assert any(
            row_out[len(row_in) - len(real) :] == real[:s] + real[s : s + k][::-1] + real[s + k :]
            for s in range(len(real) - k + 1)
        )


def test_rho_one_reverses_every_sequence() -> None:
    items = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8], [0, 0, 0, 0, 0]])
    view = clue_reverse_view.ReverseViewSpec(rho=1.0).build(CONTEXT)
    out = view(items, torch.Generator().manual_seed(0))
    assert out.tolist() == [[0, 0, 3, 2, 1], [8, 7, 6, 5, 4], [0, 0, 0, 0, 0]]
