"""What a component tells the memory guard about its own largest tensors.

Every component spec can report the tensors it adds to a training step or an
evaluation batch (:class:`Part`: what it is, its size in bytes, and the recipe fields
that shrink it) through hooks on the spec base classes in :mod:`clue_fw.components`:

* ``BackboneSpec.activation_parts(sizes)``: activations kept for backward (attention
  weights, padded convolution inputs);
* ``ObjectiveSpec.encoder_batch(batch)`` (how many sequences one step encodes: CLUE
  encodes two views) and ``ObjectiveSpec.step_parts(sizes)`` (its own logits);
* ``HeadSpec.step_parts(sizes)``, ``HeadSpec.eval_parts(sizes)`` and
  ``HeadSpec.training_examples(...)`` (how many training examples of what width).

:mod:`clue_fw.resources` adds them up; a plugin component is counted the same way as
a built-in one. Every hook has a default that adds nothing, so a plugin that does not
implement them is still counted by its parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FLOAT_BYTES = 4
INDEX_BYTES = 8  # an int64 item id


@dataclass(frozen=True)
class Part:
    """One counted tensor group: what it is, its size and the recipe fields that shrink it."""

    what: str
    bytes: int
    lower: tuple[str, ...]


@dataclass(frozen=True)
class StepSizes:
    """The sizes a component's estimate depends on, for one step or evaluation batch.

    ``batch``: sequences in the step (the encoder's batch for backbones);
    ``batch_field``: the recipe field that sets it (named in advice); ``training``:
    a training step (activations kept for backward) or an evaluation batch.
    """

    num_items: int
    max_len: int
    batch: int
    device: torch.device
    batch_field: str
    training: bool = True


def logits_part(
    what: str, rows: int, columns: int, fields: tuple[str, ...], unit: str = "items"
) -> Part:
    """A ``[rows, columns]`` float logit matrix and its gradient (``unit`` names a column)."""
    return Part(
        f"{what} ({rows:,} rows x {columns:,} {unit} x 4 B x 2 for the logits and their gradient)",
        rows * columns * FLOAT_BYTES * 2,
        fields,
    )


def window_count(
    history: str, stride: int, num_users: int, num_interactions: int, min_items: int
) -> int:
    """About how many windows a stage cuts from the leave-one-out training sequences.

    ``recent``: one per user. ``all``: a user with ``L`` items (``L - 2`` after leave-one-
    out) gives ``floor((L - 2 - min_items) / stride) + 1`` windows, at least
    ``(L - 1 - min_items) / stride``; summed, ``(interactions - users (1 + min_items)) /
    stride``.
    """
    if history == "recent":
        return max(1, num_users)
    spare = max(num_interactions - num_users * (1 + min_items), 0)
    return max(1, math.ceil(spare / max(stride, 1)))
