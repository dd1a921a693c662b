"""Evaluate frozen user representations the way the field does (``clue probe``).

- :mod:`~clue_fw.probing.linear`: multinomial logistic regression fitted to convergence
  by L-BFGS, its L2 strength chosen on validation users;
- :mod:`~clue_fw.probing.knn`: a cosine kNN classifier, ``k`` chosen on validation users;
- :mod:`~clue_fw.probing.metrics`: accuracy, macro-F1, balanced accuracy, ROC-AUC;
- :mod:`~clue_fw.probing.features`: the baselines' features (tf-idf bag of items, SVD);
- :mod:`~clue_fw.probing.next_item`: a label-free check, next item from frozen vectors;
- :mod:`~clue_fw.probing.probe`: :func:`probe_run`, all of it on a finished run.

Importing this package imports torch; nothing here reads a recipe YAML.
"""

from __future__ import annotations

from clue_fw.probing.knn import knn_predict, select_k
from clue_fw.probing.linear import LogisticFit, Standardizer, fit_logistic, select_l2
from clue_fw.probing.metrics import (
    accuracy,
    balanced_accuracy,
    classification_metrics,
    macro_f1,
    roc_auc,
)
from clue_fw.probing.probe import (
    ProbeReport,
    ProbeRow,
    RankerRow,
    UserSplit,
    probe_features,
    probe_run,
    user_split,
)

__all__ = [
    "LogisticFit",
    "ProbeReport",
    "ProbeRow",
    "RankerRow",
    "Standardizer",
    "UserSplit",
    "accuracy",
    "balanced_accuracy",
    "classification_metrics",
    "fit_logistic",
    "knn_predict",
    "macro_f1",
    "probe_features",
    "probe_run",
    "roc_auc",
    "select_k",
    "select_l2",
    "user_split",
]
