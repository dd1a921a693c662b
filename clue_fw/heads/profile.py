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
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from clue_fw.components import (
    BuildContext,
    DownstreamHead,
    LossOutput,
    SequenceEncoder,
    TaskData,
    user_vectors,
)
from clue_fw.data.dataset import SequenceData
from clue_fw.data.examples import ExampleSet, Task
from clue_fw.data.labels import align_labels, read_label_file
from clue_fw.data.root import resolve_data_path
from clue_fw.errors import DataError
from clue_fw.heads.user_level import UserLevelHeadSpec, split_rows
from clue_fw.metrics.ranking import NAN_ROWS


class LabelSource(BaseModel):
    """Where the labels come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="Label file, relative to the data root (CLUE_DATA_DIR).")
    format: Literal["auto", "csv", "users_dat", "u_user"] = Field(
        "auto",
        description="csv (user,label), users_dat (ML-1M users.dat), u_user (ML-100K u.user); "
        "auto detects them.",
    )
    column: Literal["gender", "age", "occupation"] = Field(
        "gender", description="The label column of users.dat / u.user (ignored for csv)."
    )
    missing: Literal["error", "skip"] = Field(
        "error",
        description="Users of the data without a label: 'error', or 'skip' them (they still "
        "take part in pre-training).",
    )


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


class ProfileSpec(UserLevelHeadSpec):
    """User profiling: softmax classification of the user vector; acc, macro-F1."""

    kind: Literal["profile"] = "profile"
    labels: LabelSource = Field(description="The label file and column.")

    @classmethod
    def contract_example(cls, data: SequenceData, root: Path) -> dict[str, Any]:
        """Fields for clue_fw.testing: a ``user,label`` file of three classes under ``root``."""
        lines = ["user,label"] + [f"{u},c{int(u) % 3}" for u in data.user_ids]
        (root / "contract_labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return {"labels": {"path": "contract_labels.csv"}}

    @property
    def monitor_default(self) -> str:
        return "acc"

    def prepare(self, data: SequenceData, root: Path | None) -> ProfileData:
        path = resolve_data_path(self.labels.path, root, "finetune.head.labels.path")
        raw = read_label_file(path, self.labels.column, self.labels.format)
        if self.labels.missing == "skip":
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
            splits=split_rows(labelled, self.split_seed),
        )

    def make_task(self, task_data: TaskData, context: BuildContext, history: str) -> Task:
        assert isinstance(task_data, ProfileData), "profile needs ProfileSpec.prepare's data"
        items = task_data.sequences.sequences.recent_windows(context.max_len)

        def examples(users: torch.Tensor) -> ExampleSet:
            return ExampleSet({"items": items[users], "label": task_data.labels[users]})

        train, valid, test = task_data.splits
        return Task(examples(self.labelled_train(train)), examples(valid), examples(test))

    def build(
        self, context: BuildContext, encoder: SequenceEncoder, task_data: TaskData
    ) -> ProfileHead:
        assert isinstance(task_data, ProfileData), "profile needs ProfileSpec.prepare's data"
        train = self.labelled_train(task_data.splits[0])  # the majority the head can know
        counts = torch.bincount(task_data.labels[train], minlength=len(task_data.classes))
        return ProfileHead(encoder, len(task_data.classes), int(counts.argmax()), self.user_vector)
