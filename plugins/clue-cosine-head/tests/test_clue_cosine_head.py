"""The cosine next-item head: clue_fw's head contract, and what cosine scores promise."""

from __future__ import annotations

import clue_cosine_head
import torch

from clue_fw.testing import contract_test

test_contract = contract_test(clue_cosine_head)


def test_scores_ignore_the_user_vector_length_and_are_bounded_by_the_temperature() -> None:
    generator = torch.Generator().manual_seed(0)
    user, items = torch.randn(4, 8, generator=generator), torch.randn(30, 8, generator=generator)
    scores = clue_cosine_head.cosine_scores(user, items, temperature=0.2)
    torch.testing.assert_close(scores, clue_cosine_head.cosine_scores(7.5 * user, items, 0.2))
    assert scores.shape == (4, 30)
    assert bool((scores.abs() <= 1 / 0.2 + 1e-5).all())
