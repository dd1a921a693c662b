"""CLUE: SimSiam-style contrastive pre-training of the user representation.

Cheng et al., "Learning Transferable User Representations with Sequential
Behaviors via Contrastive Pre-training", ICDM 2021, Sec. IV-A (Eq. 4-7, Alg. 1);
Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021.
"""

from __future__ import annotations

from typing import ClassVar, Literal

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
    two_view_users,
)
from clue_fw.objectives.negative_cosine import symmetric_negative_cosine


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Projector: 3 FC layers, each followed by BatchNorm, ReLU between them."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, out_dim, bias=False),
        nn.BatchNorm1d(out_dim, affine=False),
    )


def prediction_mlp(dim: int, hidden_dim: int) -> nn.Sequential:
    """Predictor: 2 FC layers with a BatchNorm bottleneck (SimSiam layout)."""
    return nn.Sequential(
        nn.Linear(dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, dim),
    )


class ClueObjective(PretrainObjective):
    """Two views -> encoder -> projector (-> predictor) -> symmetric negative cosine."""

    def __init__(
        self,
        encoder_dim: int,
        projector_dim: int,
        predictor_dim: int,
        use_predictor: bool,
        stop_gradient: bool,
    ) -> None:
        super().__init__()
        self.projector = projection_mlp(encoder_dim, projector_dim, projector_dim)
        self.predictor: nn.Module = (
            prediction_mlp(projector_dim, predictor_dim) if use_predictor else nn.Identity()
        )
        self.stop_gradient = stop_gradient

    def forward(
        self,
        encoder: SequenceEncoder,
        items: torch.Tensor,
        view: Augmentation,
        generator: torch.Generator,
    ) -> LossOutput:
        # One encoder pass over both views; the BatchNorm heads see each view on its
        # own, as in SimSiam.
        user_1, user_2 = two_view_users(encoder, items, view, generator)
        z1, z2 = self.projector(user_1), self.projector(user_2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = symmetric_negative_cosine(p1, z1, p2, z2, stop_gradient=self.stop_gradient)
        with torch.no_grad():
            z_normed = torch.nn.functional.normalize(z1, dim=-1)
            collapse = z_normed.std(dim=0).mean() * (z_normed.shape[1] ** 0.5)
        return LossOutput(loss, {"z_std": collapse})


class ClueSpec(ObjectiveSpec):
    """CLUE: SimSiam-style asymmetric objective (projector, predictor, stop-gradient)."""

    kind: Literal["clue"] = "clue"
    min_batch_size: ClassVar[int] = 2
    """The projector and predictor use BatchNorm, which needs two rows for batch
    statistics; the recipe validator refuses a smaller ``pretrain.train.batch_size``."""
    projector_dim: int = Field(
        256, gt=0, description="Hidden and output size of the 3-layer BN projector."
    )
    predictor_dim: int = Field(
        64, gt=0, description="Bottleneck size of the 2-layer predictor (SimSiam: 1/4)."
    )
    predictor: bool = Field(
        True, description="Use the predictor on the student branch (off: collapse ablation)."
    )
    stop_gradient: bool = Field(
        True, description="Stop gradients through the target branch (off: collapse ablation)."
    )

    def encoder_batch(self, batch: int) -> int:
        """Both views go through the encoder in one pass."""
        return 2 * batch

    def build(self, context: BuildContext, encoder: SequenceEncoder) -> ClueObjective:
        return ClueObjective(
            encoder_dim=encoder.dim,
            projector_dim=self.projector_dim,
            predictor_dim=self.predictor_dim,
            use_predictor=self.predictor,
            stop_gradient=self.stop_gradient,
        )
