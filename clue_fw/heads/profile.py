"""User-profile prediction: classify the user vector (gender, age bracket, occupation...).

A linear softmax classifier on the user vector, trained with cross-entropy (CLUE
Sec. IV-D). Users are split 80/5/15 at random (:mod:`clue_fw.heads.user_level`).
Metrics: ``acc``, ``macro_f1`` (the unweighted mean of per-class F1 over the classes
that occur in the split's labels or predictions, as scikit-learn's default) and
``majority_acc``, the accuracy of always predicting the most frequent training label:
the floor every result must be read against.

With ``label_fraction`` below 1 only the first part of the training users keeps its
labels; a class none of them has still has its output (never a training target), and
``majority_acc`` is the majority of the labelled training users.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clue_fw.components import (
    DownstreamHead,
    LossOutput,
    SequenceEncoder,
    TaskData,
    user_vectors,
)
from clue_fw.data.dataset import SequenceData
from clue_fw.data.labels import align_labels, read_label_file
from clue_fw.data.root import resolve_data_path
from clue_fw.errors import DataError
from clue_fw.heads.specs import LabelSource as LabelSource
from clue_fw.heads.specs import ProfileSpec as ProfileSpec
from clue_fw.heads.user_level import split_rows
from clue_fw.metrics.ranking import NAN_ROWS


@dataclass(frozen=True)
class ProfileData(TaskData):
    """Sequences, one class index per user (``-1``: no label, skipped) and the user split
    (train, valid, test rows of labelled users), drawn once with ``split_seed``."""

    labels: torch.Tensor  # [U] int64
    classes: tuple[str, ...]
    splits: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # labelled user rows

    def stats(self) -> dict[str, Any]:
        labelled = self.labels[self.labels >= 0]
        counts = torch.bincount(labelled, minlength=len(self.classes)).tolist()
        return {
            "labelled users": int(labelled.numel()),
            "unlabelled users (skipped)": int((self.labels < 0).sum()),
            "classes": dict(zip(self.classes, counts, strict=True)),
        }


_NUMERIC_LABEL = re.compile(r"-?[0-9]{1,18}")
"""A label read as a number: ASCII digits, at most 18 (not ``²``, ``--5`` or 5000 digits)."""


def class_order(values: set[str]) -> list[str]:
    """Numeric labels in numeric order (age brackets 1 < 18 < 25), others alphabetically."""
    if all(_NUMERIC_LABEL.fullmatch(v) for v in values):
        return sorted(values, key=int)
    return sorted(values)


class ProfileHead(DownstreamHead):
    def __init__(
        self, encoder: SequenceEncoder, num_classes: int, majority: int, user_vector: str
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.user_vector = user_vector
        self.classifier = nn.Linear(encoder.dim, num_classes)
        self.register_buffer("majority", torch.tensor(majority), persistent=False)

    def logits(self, encoder: SequenceEncoder, items: torch.Tensor) -> torch.Tensor:
        return self.classifier(user_vectors(encoder(items), items, self.user_vector))

    def loss(self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]) -> LossOutput:
        return LossOutput(F.cross_entropy(self.logits(encoder, batch["items"]), batch["label"]), {})

    @torch.no_grad()
    def metric_sums(
        self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        label = batch["label"]
        logits = self.logits(encoder, batch["items"])
        predicted = logits.argmax(dim=1)
        classes = self.num_classes

        def per_class(values: torch.Tensor) -> torch.Tensor:
            return torch.bincount(values, minlength=classes).to(torch.float64)

        return {
            "count": torch.tensor(float(label.numel()), dtype=torch.float64, device=label.device),
            "correct": (predicted == label).sum().to(torch.float64),
            "majority_correct": (label == self.majority).sum().to(torch.float64),
            "true": per_class(label),
            "predicted": per_class(predicted),
            "true_positive": per_class(label[predicted == label]),
            # argmax of a NaN row is meaningless: evaluate() refuses the split.
            NAN_ROWS: torch.isnan(logits).any(dim=1).sum().to(torch.float64),
        }

    def finalize(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        return profile_metrics(sums)


def profile_metrics(sums: dict[str, torch.Tensor]) -> dict[str, float]:
    """``acc``, ``macro_f1`` and ``majority_acc`` from summed counts."""
    count = float(sums["count"])
    if count == 0:
        return {}
    true, predicted, hits = sums["true"], sums["predicted"], sums["true_positive"]
    present = (true > 0) | (predicted > 0)
    f1 = torch.where(present, 2 * hits / (true + predicted).clamp(min=1), 0.0)
    return {
        "acc": float(sums["correct"]) / count,
        "macro_f1": float(f1[present].mean()) if bool(present.any()) else 0.0,
        "majority_acc": float(sums["majority_correct"]) / count,
    }


def profile_task_data(spec: ProfileSpec, data: SequenceData, root: Path | None) -> ProfileData:
    """:meth:`ProfileSpec.prepare`: read ``spec.labels`` under ``root``, align them with the
    users of ``data`` and split the labelled users."""
    path = resolve_data_path(spec.labels.path, root, "finetune.head.labels.path")
    raw = read_label_file(path, spec.labels.column, spec.labels.format)
    if spec.labels.missing == "skip":
        known = {u: raw[u] for u in map(int, data.user_ids) if u in raw}
        if not known:
            raise DataError(
                f"No user of the data has a label in {path}: was the label file made "
                "for this dataset?"
            )
        per_user = [known.get(int(u)) for u in data.user_ids]
    else:
        per_user = list(align_labels(raw, data.user_ids, source=str(path)))
    classes = class_order({label for label in per_user if label is not None})
    if len(classes) < 2:
        raise DataError(
            f"{path} gives the users a single class ({classes[0]!r}); a profile task "
            "needs at least two."
        )
    labelled = sum(label is not None for label in per_user)
    if labelled < 3:
        raise DataError(
            f"Only {labelled} users of the data have a label in {path}; a profile task "
            "needs at least 3 (train, valid, test)."
        )
    index = {label: i for i, label in enumerate(classes)}
    labels = torch.tensor([index[x] if x is not None else -1 for x in per_user])
    labelled = torch.nonzero(labels >= 0).reshape(-1)
    return ProfileData(
        sequences=data,
        labels=labels,
        classes=tuple(classes),
        splits=split_rows(labelled, spec.split_seed),
    )
