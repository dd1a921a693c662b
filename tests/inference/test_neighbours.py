"""clue_fw.inference.neighbours: exact cosine nearest users, computed in blocks."""

from __future__ import annotations

import doctest

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clue_fw.errors import ClueError
from clue_fw.inference import neighbours
from clue_fw.inference.neighbours import nearest_users


def brute_force(vectors: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole [N, N] cosine matrix, the diagonal masked: what the blocks must equal."""
    unit = torch.nn.functional.normalize(vectors.double(), dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(float("-inf"))
    scores, indices = similarity.topk(k, dim=1)
    return scores.float(), indices


def test_blocks_give_exactly_the_brute_force_answer() -> None:
    vectors = torch.randn(257, 8, generator=torch.Generator().manual_seed(0))
    found = nearest_users(vectors, 5, query_batch=7, candidate_block=10)
    scores, indices = brute_force(vectors, 5)
    assert torch.equal(found.indices, indices)
    assert torch.allclose(found.scores, scores, atol=1e-6)
    assert torch.equal(found.queries, torch.arange(257))
    assert not bool((found.indices == torch.arange(257)[:, None]).any())  # never itself


@settings(max_examples=40, deadline=None)
@given(
    users=st.integers(2, 40),
    k=st.integers(1, 6),
    batch=st.integers(1, 50),
    block=st.integers(1, 50),
    seed=st.integers(0, 2**16),
)
def test_the_answer_does_not_depend_on_the_block_sizes(
    users: int, k: int, batch: int, block: int, seed: int
) -> None:
    vectors = torch.randn(users, 4, generator=torch.Generator().manual_seed(seed))
    blocked = nearest_users(vectors, k, query_batch=batch, candidate_block=block)
    whole = nearest_users(vectors, k, query_batch=users, candidate_block=users)
    kept = min(k, users - 1)
    assert torch.allclose(blocked.scores, whole.scores, atol=1e-6)
    # random vectors have no ties: the same neighbours, in the same order
    assert torch.equal(blocked.indices, whole.indices)
    assert bool((blocked.indices[:, kept:] == -1).all())


def test_a_twin_is_a_neighbour_at_one_and_the_user_itself_never() -> None:
    vectors = torch.tensor([[1.0, 2.0], [1.0, 2.0], [-1.0, 0.5], [2.0, 4.1]])
    found = nearest_users(vectors, 2, candidate_block=1)
    assert found.indices[0].tolist() == [1, 3] and found.indices[1].tolist() == [0, 3]
    assert found.scores[0, 0].item() == pytest.approx(1.0)


def test_fewer_other_users_than_k_leave_empty_slots() -> None:
    found = nearest_users(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), 4)
    assert found.indices[:, 2:].eq(-1).all() and torch.isinf(found.scores[:, 2:]).all()
    assert found.indices[0].tolist()[:2] == [2, 1]
    alone = nearest_users(torch.ones(1, 3), 3)
    assert alone.indices.tolist() == [[-1, -1, -1]]


def test_queries_are_a_subset_in_the_order_given_and_progress_counts_them() -> None:
    vectors = torch.randn(30, 6, generator=torch.Generator().manual_seed(1))
    seen: list[int] = []
    found = nearest_users(
        vectors, 3, queries=torch.tensor([7, 2, 29]), query_batch=2, progress=seen.append
    )
    whole = nearest_users(vectors, 3)
    assert torch.equal(found.indices, whole.indices[[7, 2, 29]])
    assert seen == [2, 1]


@pytest.mark.parametrize(
    ("vectors", "k", "fragment"),
    [
        (torch.zeros(0, 4), 1, "non-empty [users, dim]"),
        (torch.ones(3), 1, "non-empty [users, dim]"),
        (torch.ones(3, 2, dtype=torch.int64), 1, "floating point"),
        (torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]), 1, "first at row 1"),
        (torch.ones(3, 2), 0, "at least 1"),
    ],
)
def test_bad_input_is_named(vectors: torch.Tensor, k: int, fragment: str) -> None:
    with pytest.raises(ClueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        nearest_users(vectors, k)
    with pytest.raises(ClueError, match=r"0\.\.2"):
        nearest_users(torch.ones(3, 2), 1, queries=torch.tensor([3]))


def test_the_docstring_example_holds() -> None:
    assert doctest.testmod(neighbours, raise_on_error=True).attempted == 4
