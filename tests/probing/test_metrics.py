"""Probe metrics against values computed by hand on tiny examples (and, where installed,
against scikit-learn)."""

from __future__ import annotations

import pytest
import torch

from clue_fw.probing.metrics import (
    accuracy,
    average_ranks,
    balanced_accuracy,
    classification_metrics,
    macro_f1,
    roc_auc,
)

# Three classes; class 2 is predicted once but never true.
TRUTH = torch.tensor([0, 0, 0, 1, 1, 0])
PREDICTED = torch.tensor([0, 0, 1, 1, 2, 0])


def test_accuracy_counts_matches() -> None:
    assert accuracy(TRUTH, PREDICTED) == pytest.approx(4 / 6)


def test_macro_f1_by_hand() -> None:
    # class 0: tp 3, true 4, predicted 3 -> F1 = 6/7; class 1: tp 1, true 2, predicted 2
    # -> 1/2; class 2: tp 0, true 0, predicted 1 -> 0 (present because predicted)
    assert macro_f1(TRUTH, PREDICTED) == pytest.approx((6 / 7 + 1 / 2 + 0) / 3)


def test_balanced_accuracy_averages_recall_over_true_classes() -> None:
    # recall of class 0: 3/4, of class 1: 1/2; class 2 never true, so not averaged
    assert balanced_accuracy(TRUTH, PREDICTED) == pytest.approx((3 / 4 + 1 / 2) / 2)


def test_one_class_predictor() -> None:
    truth = torch.tensor([0, 0, 0, 1])
    always = torch.zeros(4, dtype=torch.long)
    assert balanced_accuracy(truth, always) == 0.5
    assert macro_f1(truth, always) == pytest.approx((2 * 3 / (3 + 4) + 0) / 2)


def test_average_ranks_share_ties() -> None:
    ranks = average_ranks(torch.tensor([0.5, 0.2, 0.5, 0.5, 0.9]))
    assert ranks.tolist() == [3.0, 1.0, 3.0, 3.0, 5.0]


def test_roc_auc_by_pair_counting() -> None:
    truth = torch.tensor([1, 0, 1, 0, 1, 0])
    score = torch.tensor([0.9, 0.9, 0.4, 0.3, 0.3, 0.1])
    # positive/negative pairs: 9; (0.9 vs 0.9) tie 1/2, (0.9 vs 0.3, 0.1) 2, (0.4 vs 0.3,
    # 0.1) 2, (0.4 vs 0.9) 0, (0.3 vs 0.3) tie 1/2, (0.3 vs 0.1) 1, (0.3 vs 0.9) 0
    assert roc_auc(truth, score) == pytest.approx((0.5 + 2 + 2 + 0.5 + 1) / 9)


def test_roc_auc_extremes_and_constant() -> None:
    truth = torch.tensor([0, 0, 1, 1])
    assert roc_auc(truth, torch.tensor([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(truth, torch.tensor([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert roc_auc(truth, torch.zeros(4)) == 0.5


def test_roc_auc_refuses_one_class_and_nan() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(torch.tensor([1, 1]), torch.tensor([0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        roc_auc(torch.tensor([0, 1]), torch.tensor([float("nan"), 0.3]))


def test_classification_metrics_adds_auc_for_two_classes_only() -> None:
    binary = classification_metrics(
        torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), torch.tensor([0.1, 0.8, 0.4])
    )
    assert binary["roc_auc"] == 1.0 and binary["acc"] == pytest.approx(2 / 3)
    assert "roc_auc" not in classification_metrics(TRUTH, PREDICTED, None)


def test_empty_and_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        accuracy(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="one length"):
        macro_f1(torch.tensor([0, 1]), torch.tensor([0]))


def test_against_scikit_learn_on_random_labels() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 5, (300,), generator=generator)
    predicted = torch.randint(0, 6, (300,), generator=generator)
    assert macro_f1(truth, predicted) == pytest.approx(
        metrics.f1_score(truth.numpy(), predicted.numpy(), average="macro")
    )
    assert balanced_accuracy(truth, predicted) == pytest.approx(
        metrics.balanced_accuracy_score(truth.numpy(), predicted.numpy())
    )
    binary = torch.randint(0, 2, (300,), generator=generator)
    score = torch.randint(0, 20, (300,), generator=generator).double()  # many ties
    assert roc_auc(binary, score) == pytest.approx(
        metrics.roc_auc_score(binary.numpy(), score.numpy())
    )
