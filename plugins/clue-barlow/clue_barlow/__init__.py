"""Example third-party plugin: a Barlow Twins objective, registered through clue_fw's hooks.

Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
ICML 2021, Eq. 1. Two views of each sequence go through the encoder and a projector;
each output dimension is standardised over the batch, and the cross-correlation
matrix ``C = z1^T z2 / B`` (``[D, D]``) is pulled towards the identity::

    L = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2

The diagonal term makes the two views agree; the off-diagonal term decorrelates the
dimensions, which prevents collapse without negatives, predictor or stop-gradient.

    >>> import torch
    >>> z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    >>> round(barlow_twins_loss(z, z, lambda_offdiag=0.005).loss.item(), 6)
    0.0

A recipe uses it as ``pretrain.objective: {kind: barlow_twins, projector_dim: 128}``
with any views, e.g. ``[{kind: dropout}]``.
"""

from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple

import torch
from pydantic import Field
from torch import nn

from clue_fw.components import (
    Augmentation,
    BuildContext,
    LossOutput,
    ObjectiveSpec,
    PretrainObjective,
    SequenceEncoder,
)
from clue_fw.hookspecs import hookimpl


class BarlowTerms(NamedTuple):
    """The loss and its two parts (before the off-diagonal weight)."""

    loss: torch.Tensor
    on_diagonal: torch.Tensor
    off_diagonal: torch.Tensor


def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, lambda_offdiag: float, eps: float = 1e-5
) -> BarlowTerms:
    """Barlow Twins loss of two ``[B, D]`` embeddings of the same ``B`` users (Eq. 1).

    Symmetric: ``barlow_twins_loss(a, b) == barlow_twins_loss(b, a)``, since swapping
    the views transposes ``C``.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"barlow_twins_loss needs two [B, D] embeddings of one shape, got "
            f"{list(z1.shape)} and {list(z2.shape)}"
        )
    batch = z1.shape[0]

    def standardise(z: torch.Tensor) -> torch.Tensor:
        return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)

    c = standardise(z1).T @ standardise(z2) / batch  # [D, D]
    diagonal = torch.diagonal(c)
    on = (1.0 - diagonal).pow(2).sum()
    off = c.pow(2).sum() - diagonal.pow(2).sum()
    return BarlowTerms(on + lambda_offdiag * off, on, off)


def barlow_projector(in_dim: int, dim: int) -> nn.Sequential:
    """Projector: Linear-BN-ReLU twice, then Linear (the paper's layout, smaller)."""
    return nn.Sequential(
        nn.Linear(in_dim, dim, bias=False),
        nn.BatchNorm1d(dim),
        nn.ReLU(),
        nn.Linear(dim, dim, bias=False),
        nn.BatchNorm1d(dim),
        nn.ReLU(),
        nn.Linear(dim, dim, bias=False),
    )


class BarlowTwinsObjective(PretrainObjective):
    """Two views -> encoder -> projector -> Barlow Twins loss."""

    def __init__(self, encoder_dim: int, projector_dim: int, lambda_offdiag: float) -> None:
        super().__init__()
        self.projector = barlow_projector(encoder_dim, projector_dim)
        self.lambda_offdiag = lambda_offdiag

    def forward(
        self,
        encoder: SequenceEncoder,
        items: torch.Tensor,
        view: Augmentation,
        generator: torch.Generator,
    ) -> LossOutput:
        # Each branch draws its own view. With the `dropout` view the items are unchanged
        # and the branches differ only through the encoder's dropout (train mode).
        view_1 = view(items, generator)
        view_2 = view(items, generator)
        user_1, user_2 = encoder(torch.cat([view_1, view_2])).user.chunk(2)
        terms = barlow_twins_loss(
            self.projector(user_1), self.projector(user_2), self.lambda_offdiag
        )
        return LossOutput(
            terms.loss,
            {"on_diag": terms.on_diagonal.detach(), "off_diag": terms.off_diagonal.detach()},
        )


class BarlowTwinsSpec(ObjectiveSpec):
    """Barlow Twins: cross-correlation of two views pulled to the identity (example plugin)."""

    kind: Literal["barlow_twins"] = "barlow_twins"
    min_batch_size: ClassVar[int] = 2
    """Standardising over the batch (and the projector's BatchNorm) needs two rows."""
    projector_dim: int = Field(128, gt=0, description="Hidden and output size of the projector.")
    lambda_offdiag: float = Field(
        5e-3,
        gt=0.0,
        description="Weight of the off-diagonal (redundancy reduction) term; the paper's 5e-3.",
    )

    def build(self, context: BuildContext, encoder: SequenceEncoder) -> BarlowTwinsObjective:
        return BarlowTwinsObjective(encoder.dim, self.projector_dim, self.lambda_offdiag)


@hookimpl
def clue_register_objectives() -> list[type[ObjectiveSpec]]:
    return [BarlowTwinsSpec]
