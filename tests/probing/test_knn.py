"""The kNN probe against neighbours and votes worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from clue_fw.probing.knn import knn_predict, neighbours, select_k, vote

# Reference points on the unit circle at 0, 30, 60, 180 and 200 degrees.
ANGLES = [0.0, 30.0, 60.0, 180.0, 200.0]
REFERENCE = torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in ANGLES])
CLASSES = torch.tensor([0, 0, 1, 1, 1])


def at(degrees: float, length: float = 1.0) -> torch.Tensor:
    radians = math.radians(degrees)
    return torch.tensor([[length * math.cos(radians), length * math.sin(radians)]])


def test_neighbours_by_cosine_ignore_length() -> None:
    index, similarity = neighbours(REFERENCE, at(10.0, length=7.0), 3)
    assert index.tolist() == [[0, 1, 2]]  # 10 degrees from 0, 20 from 30, 50 from 60
    expected = [math.cos(math.radians(a)) for a in (10.0, 20.0, 50.0)]
    assert similarity[0].tolist() == pytest.approx(expected)


def test_majority_vote() -> None:
    predicted, shares = knn_predict(REFERENCE, CLASSES, at(10.0), k=3, num_classes=2)
    assert predicted.tolist() == [0] and shares.tolist() == [pytest.approx([2 / 3, 1 / 3])]
    predicted, _ = knn_predict(REFERENCE, CLASSES, at(100.0), k=3, num_classes=2)
    # 100 degrees: 60 (40 away, class 1), 30 (70, class 0), 180 (80, class 1): class 1
    assert predicted.tolist() == [1]


def test_a_tied_vote_goes_to_the_more_similar_voters() -> None:
    # two voters each; class 1's are closer in sum
    index = torch.tensor([[0, 1, 2, 3]])
    similarity = torch.tensor([[0.9, 0.1, 0.8, 0.7]])
    predicted, shares = vote(index, similarity, torch.tensor([0, 0, 1, 1]), 2)
    assert predicted.tolist() == [1] and shares.tolist() == [[0.5, 0.5]]
    # an exact tie of counts and similarity: the lower class index
    predicted, _ = vote(torch.tensor([[0, 1]]), torch.tensor([[0.5, 0.5]]), torch.tensor([1, 0]), 2)
    assert predicted.tolist() == [0]


def test_select_k_picks_the_best_validation_k() -> None:
    queries = torch.cat([at(10.0), at(45.0), at(190.0)])
    truth = torch.tensor([0, 0, 1])
    k, scores = select_k(REFERENCE, CLASSES, queries, truth, 2, [1, 3, 5, 50])
    # k=1 is not checked: 45 degrees is as close to 30 as to 60
    # k=3: 10->{0,30,60}=0, 45->{30,60,0}=0, 190->{180,200,60}=1: all right
    # k=5 (50 capped at 5): every query -> class 1 (three of five): 1 of 3 right
    assert scores[3] == 1.0 and scores[5] == pytest.approx(1 / 3)
    assert set(scores) == {1, 3, 5} and k == min(kk for kk, s in scores.items() if s == 1.0)


def test_bad_k() -> None:
    with pytest.raises(ValueError, match="k must be in 1..5"):
        neighbours(REFERENCE, at(0.0), 6)
    with pytest.raises(ValueError, match="no k >= 1"):
        select_k(REFERENCE, CLASSES, at(0.0), torch.tensor([0]), 2, [0])
