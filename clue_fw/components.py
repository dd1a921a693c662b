"""Base classes for the four component families: the plugin API.

A component has two halves:

* a **spec**: a frozen pydantic model with a ``kind`` discriminator and typed,
  documented fields. Recipes are made of specs; plugins register spec classes. The spec
  bases live in :mod:`clue_fw.specs`, which imports no torch, and are re-exported here.
* a **module**: the ``torch.nn.Module`` the spec builds; its bases are defined here.

Specs never read or write any global configuration: everything a module needs
is in its spec fields or in the :class:`BuildContext` the framework passes in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from clue_fw.specs import (
    FAMILIES,
    AugmentationSpec,
    BackboneSpec,
    BuildContext,
    ComponentSpec,
    HeadSpec,
    ObjectiveSpec,
    Ranking,
    TaskData,
    UserVector,
    describe_spec,
)

__all__ = [
    "FAMILIES",
    "Augmentation",
    "AugmentationSpec",
    "BackboneSpec",
    "BuildContext",
    "ComponentSpec",
    "DownstreamHead",
    "EncoderOutput",
    "HeadSpec",
    "LossOutput",
    "ObjectiveSpec",
    "PairingView",
    "PretrainObjective",
    "Ranking",
    "SequenceEncoder",
    "TaskData",
    "UserVector",
    "describe_spec",
    "encoder_output_problem",
    "two_view_users",
    "user_vectors",
    "view_pair",
]

# --------------------------------------------------------------------------- backbones


class EncoderOutput(NamedTuple):
    """What every backbone returns.

    ``states``: ``[B, n, d]`` per-position outputs aligned with the input items
    (padding positions are zeros; all zeros for a backbone whose spec says
    ``position_states = False``). ``user``: ``[B, d]`` user representation.
    """

    states: torch.Tensor
    user: torch.Tensor


class SequenceEncoder(nn.Module, ABC):
    """A backbone: encodes a left-padded item batch ``[B, n]`` (0 = padding)."""

    num_items: int
    dim: int
    max_len: int
    item_embedding: nn.Embedding

    @abstractmethod
    def forward(self, items: torch.Tensor) -> EncoderOutput: ...

    def __call__(self, items: torch.Tensor, *args: Any, **kwargs: Any) -> EncoderOutput:
        """``forward``, then a check of its output against the backbone contract.

        The check compares shapes only (no device sync); a backbone that breaks the
        contract, or a plugin's backbone whose ``forward`` raises, is a
        :class:`~clue_fw.errors.PluginError` naming its class and plugin.
        """
        from clue_fw.provenance import plugin_call

        with plugin_call(self, "forward"):
            output = super().__call__(items, *args, **kwargs)
        problem = encoder_output_problem(self, items, output)
        if problem:
            from clue_fw.errors import PluginError
            from clue_fw.provenance import describe_component

            raise PluginError(
                f"Backbone {describe_component(self)} broke the backbone contract: {problem}. "
                "A backbone returns EncoderOutput(states [B, n, d], user [B, d]) for items "
                "[B, n], with d its `dim`."
            )
        return output  # type: ignore[no-any-return]

    def init_vocabulary(self, num_items: int, max_len: int, dim: int) -> None:
        """Set the contract attributes; create ``item_embedding`` and the [UR] ``user_token``.

        Rows: padding (0, kept at zero), items ``1..num_items`` and ``[MASK]``.
        Subclasses choose the initialisation of both parameters.
        """
        self.num_items = num_items
        self.max_len = max_len
        self.dim = dim
        self.item_embedding = nn.Embedding(num_items + 2, dim, padding_idx=0)
        self.user_token = nn.Parameter(torch.zeros(dim))

    def check_length(self, items: torch.Tensor) -> None:
        """Refuse a batch ``[B, n]`` longer than ``max_len`` (positions would not fit)."""
        if items.shape[1] > self.max_len:
            raise ValueError(f"sequence length {items.shape[1]} exceeds max_len {self.max_len}")

    @staticmethod
    def real_positions(items: torch.Tensor) -> torch.Tensor:
        """``[B, n + 1]`` bool: real items, then ``True`` for the [UR] slot appended last."""
        user_slot = items.new_ones(items.shape[0], 1, dtype=torch.bool)
        return torch.cat([items != 0, user_slot], dim=1)

    def append_user_token(self, embedded: torch.Tensor) -> torch.Tensor:
        """``[B, n, d]`` item embeddings -> ``[B, n + 1, d]`` with [UR] in the last slot."""
        batch = embedded.shape[0]
        return torch.cat([embedded, self.user_token.expand(batch, 1, self.dim)], dim=1)


def encoder_output_problem(encoder: nn.Module, items: torch.Tensor, output: Any) -> str | None:
    """What is wrong with ``output`` as the encoding of ``items`` ``[B, n]``, or None."""
    if not isinstance(output, EncoderOutput):
        return f"it returned {type(output).__name__}, not EncoderOutput(states, user)"
    states, user = output
    if not isinstance(states, torch.Tensor) or not isinstance(user, torch.Tensor):
        kinds = f"{type(states).__name__} and {type(user).__name__}"
        return f"its states and user vector are {kinds}, not tensors"
    batch, length = items.shape[0], items.shape[-1]
    dim = getattr(encoder, "dim", None)
    width = dim if isinstance(dim, int) else (states.shape[-1] if states.dim() == 3 else None)
    if states.dim() != 3 or tuple(states.shape) != (batch, length, width):
        return (
            f"for items of shape {list(items.shape)} its states have shape "
            f"{list(states.shape)}, not [{batch}, {length}, {width}]"
        )
    if tuple(user.shape) != (batch, width):
        return (
            f"for items of shape {list(items.shape)} its user vector has shape "
            f"{list(user.shape)}, not [{batch}, {width}]"
        )
    return None


# --------------------------------------------------------------------------- augmentations


class Augmentation(nn.Module, ABC):
    """A view: ``[B, n]`` item batch and a ``torch.Generator`` to a new ``[B, n]`` batch.

    Views work on whole padded batches with tensor operations; padding (id 0)
    must never change. The [UR] slot is added by the backbone, after views run.
    """

    @abstractmethod
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


class PairingView(Augmentation):
    """A view that makes the two branches of a positive pair together (the ``split``
    view gives each a disjoint part of the sequence). It comes first in a views list;
    :class:`~clue_fw.augmentations.compose.ViewPipeline` applies the views after it to
    each branch on its own."""

    @abstractmethod
    def split(
        self, items: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two branches ``(first, second)`` of ``items`` ``[B, n]``, each ``[B, n]``."""


# --------------------------------------------------------------------------- objectives


class LossOutput(NamedTuple):
    """A scalar loss plus named, detached terms for logging."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]


class PretrainObjective(nn.Module, ABC):
    """A self-supervised objective over an encoder. Its own parameters (projector,
    predictor, ...) are dropped after pre-training."""

    @abstractmethod
    def forward(
        self,
        encoder: SequenceEncoder,
        items: torch.Tensor,
        view: Augmentation,
        generator: torch.Generator,
    ) -> LossOutput:
        """Loss on a batch ``items`` ``[B, n]``. ``view`` (all recipe views composed)
        makes one augmented copy per call; ``generator`` drives every random choice."""


def view_pair(
    view: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    items: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two branches of a positive pair of ``items``: ``view.pair`` where the view
    has one (a :class:`~clue_fw.augmentations.compose.ViewPipeline`, which knows pairing
    views), else two independent calls of ``view``."""
    pair = getattr(view, "pair", None)
    if callable(pair):
        return pair(items, generator)  # type: ignore[no-any-return]
    return view(items, generator), view(items, generator)


def two_view_users(
    encoder: SequenceEncoder,
    items: torch.Tensor,
    view: Augmentation,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The user vectors ``[B, d]`` of two views of ``items``, the positive pair of a
    contrastive objective. Each view draws its own randomness; both go through the
    encoder in one batched pass, in which every row still gets its own dropout mask."""
    first, second = view_pair(view, items, generator)
    users = encoder(torch.cat([first, second])).user
    return users[: items.shape[0]], users[items.shape[0] :]


# --------------------------------------------------------------------------- heads


def user_vectors(output: EncoderOutput, items: torch.Tensor, how: str = "ur") -> torch.Tensor:
    """``[B, d]`` user vectors from an encoder output.

    ``ur``: the backbone's user vector (the [UR] token output). ``mean``: the mean of
    the per-position states over the real (non-padding) positions of ``items``; a row
    without items gives zeros (a head that reads it says so in ``position_states_use``).
    """
    if how == "ur":
        return output.user
    if how != "mean":
        raise ValueError(f"user vector must be 'ur' or 'mean', got {how!r}")
    real = (items != 0).unsqueeze(-1).to(output.states.dtype)
    count = real.sum(dim=1).clamp(min=1.0)
    return (output.states * real).sum(dim=1) / count


class DownstreamHead(nn.Module, ABC):
    """A downstream task on top of an encoder: its loss and its metrics.

    Metrics are computed in two steps so that they stay exact when batches (or,
    later, ranks) are combined: :meth:`metric_sums` returns additive statistics
    for one batch, :meth:`finalize` turns their totals into metric values.
    """

    @abstractmethod
    def loss(self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]) -> LossOutput: ...

    @abstractmethod
    def metric_sums(
        self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def finalize(self, sums: dict[str, torch.Tensor]) -> dict[str, float]: ...
