"""Classification metrics of a probe: accuracy, macro-F1, balanced accuracy, ROC-AUC.

Plain torch, no scikit-learn; the definitions are scikit-learn's defaults, so numbers
compare with papers that use it.

>>> import torch
>>> truth, predicted = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
>>> accuracy(truth, predicted), balanced_accuracy(truth, predicted)
(0.75, 0.75)
>>> round(macro_f1(truth, predicted), 4)
0.7333
>>> roc_auc(truth, torch.tensor([0.1, 0.4, 0.35, 0.8]))
0.75

* **accuracy**: the share of correct predictions.
* **macro-F1**: the unweighted mean of per-class F1 over the classes that occur in the
  labels or the predictions (as the ``profile`` head's ``macro_f1``); a class that is
  predicted but never true has F1 0.
* **balanced accuracy**: the mean per-class recall over the classes that occur in the
  labels (scikit-learn's ``balanced_accuracy_score``); always predicting one class
  scores ``1 / classes``.
* **ROC-AUC** (two classes): the probability that a random positive scores above a
  random negative, ties counting one half: the Mann-Whitney statistic from average
  ranks, ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``. A constant score gives 0.5.
"""

from __future__ import annotations

import torch


def _pair(truth: torch.Tensor, predicted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if truth.dim() != 1 or truth.shape != predicted.shape:
        raise ValueError(
            f"truth and predicted must be [N] class indices of one length, got shapes "
            f"{tuple(truth.shape)} and {tuple(predicted.shape)}"
        )
    if truth.numel() == 0:
        raise ValueError("no examples: a metric of an empty split is undefined")
    return truth.long(), predicted.long()


def accuracy(truth: torch.Tensor, predicted: torch.Tensor) -> float:
    """The share of ``predicted`` (``[N]`` class indices) equal to ``truth`` (``[N]``)."""
    truth, predicted = _pair(truth, predicted)
    return float((truth == predicted).double().mean())


def _counts(
    truth: torch.Tensor, predicted: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class (true, predicted, true positive) counts, float64."""
    classes = int(max(truth.max(), predicted.max())) + 1
    true = torch.bincount(truth, minlength=classes).double()
    guessed = torch.bincount(predicted, minlength=classes).double()
    hits = torch.bincount(truth[truth == predicted], minlength=classes).double()
    return true, guessed, hits


def macro_f1(truth: torch.Tensor, predicted: torch.Tensor) -> float:
    """Mean F1 over the classes present in ``truth`` or ``predicted``."""
    truth, predicted = _pair(truth, predicted)
    true, guessed, hits = _counts(truth, predicted)
    present = (true > 0) | (guessed > 0)
    f1 = 2 * hits[present] / (true[present] + guessed[present])
    return float(f1.mean())


def balanced_accuracy(truth: torch.Tensor, predicted: torch.Tensor) -> float:
    """Mean recall over the classes present in ``truth``."""
    truth, predicted = _pair(truth, predicted)
    true, _, hits = _counts(truth, predicted)
    present = true > 0
    return float((hits[present] / true[present]).mean())


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """``[N]`` float64 1-based ranks of ``values`` (ascending), tied values sharing the
    mean of their ranks.

    >>> average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    values = values.double().reshape(-1)
    order = torch.argsort(values, stable=True)
    ordered = values[order]
    # first position of each run of equal values, and its length
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    group = torch.cumsum(starts.long(), 0) - 1
    first = torch.nonzero(starts).reshape(-1).double()
    size = torch.bincount(group).double()
    mean_rank = first + (size + 1) / 2  # 1-based mean of first+1 .. first+size
    ranks = torch.empty_like(values)
    ranks[order] = mean_rank[group]
    return ranks


def roc_auc(truth: torch.Tensor, score: torch.Tensor) -> float:
    """ROC-AUC of ``score`` (``[N]``, higher means class 1) for binary ``truth`` (``[N]``,
    0 or 1), ties counting one half. Needs both classes in ``truth``."""
    truth = truth.long().reshape(-1)
    score = score.reshape(-1)
    if truth.shape != score.shape:
        raise ValueError(f"truth {tuple(truth.shape)} and score {tuple(score.shape)} differ")
    if bool(((truth != 0) & (truth != 1)).any()):
        raise ValueError("roc_auc needs binary labels 0 and 1")
    positives = int(truth.sum())
    negatives = truth.numel() - positives
    if positives == 0 or negatives == 0:
        raise ValueError("roc_auc needs both classes among the labels")
    if bool(torch.isnan(score.double()).any()):
        raise ValueError("roc_auc: a score is NaN")
    ranks = average_ranks(score)
    rank_sum = float(ranks[truth == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def classification_metrics(
    truth: torch.Tensor, predicted: torch.Tensor, score: torch.Tensor | None = None
) -> dict[str, float]:
    """``acc``, ``macro_f1``, ``balanced_acc`` and, when ``score`` (the probability or
    vote share of class 1) is given and ``truth`` holds both of two classes, ``roc_auc``."""
    result = {
        "acc": accuracy(truth, predicted),
        "macro_f1": macro_f1(truth, predicted),
        "balanced_acc": balanced_accuracy(truth, predicted),
    }
    if score is not None and bool(((truth == 0) | (truth == 1)).all()):
        if 0 < int(truth.sum()) < truth.numel():
            result["roc_auc"] = roc_auc(truth, score)
    return result


__all__ = [
    "accuracy",
    "average_ranks",
    "balanced_accuracy",
    "classification_metrics",
    "macro_f1",
    "roc_auc",
]
