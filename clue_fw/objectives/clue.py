"""CLUE: SimSiam-style contrastive pre-training of the user representation.

Cheng et al., "Learning Transferable User Representations with Sequential
Behaviors via Contrastive Pre-training", ICDM 2021, Sec. IV-A (Eq. 4-7, Alg. 1);
Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_serializer
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
from clue_fw.objectives.decorrelation import variance_covariance
from clue_fw.objectives.negative_cosine import symmetric_negative_cosine

SPREAD_DEFAULTS = {"variance_weight": 0.0, "covariance_weight": 0.0}
"""The spread terms' weights in the paper's form of CLUE (off)."""


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
        variance_weight: float = 0.0,
        covariance_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.variance_weight = variance_weight
        self.covariance_weight = covariance_weight
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
        terms: dict[str, torch.Tensor] = {}
        if self.variance_weight or self.covariance_weight:
            # On the encoder's own vectors, which the downstream tasks read (the projector
            # output ends in a BatchNorm, whose every dimension already has unit variance).
            var_1, cov_1 = variance_covariance(user_1)
            var_2, cov_2 = variance_covariance(user_2)
            variance, covariance = (var_1 + var_2) / 2, (cov_1 + cov_2) / 2
            loss = loss + self.variance_weight * variance + self.covariance_weight * covariance
            terms = {"variance": variance.detach(), "covariance": covariance.detach()}
        with torch.no_grad():
            z_normed = torch.nn.functional.normalize(z1, dim=-1)
            collapse = z_normed.std(dim=0).mean() * (z_normed.shape[1] ** 0.5)
        return LossOutput(loss, {"z_std": collapse, **terms})


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
    variance_weight: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="Weight of VICReg's variance hinge on the encoder's user vectors (each "
        "dimension's batch std pushed up to 1). 0: the paper's SimSiam form, whose vectors "
        "collapse on ML-1M (docs/results.md, collapse).",
    )
    covariance_weight: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="Weight of VICReg's covariance term on the encoder's user vectors (squared "
        "off-diagonal batch covariances / dim). 0: the paper's form.",
    )

    @model_serializer(mode="wrap")
    def _without_default_spread(self, handler: Any) -> Any:
        """No spread keys while they are off: recipes of the paper's form keep the recipe
        sha256 they had before the option existed, so their runs still resume."""
        data = handler(self)
        if isinstance(data, dict):
            for key, default in SPREAD_DEFAULTS.items():
                if getattr(self, key) == default:
                    data.pop(key, None)
        return data

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
            variance_weight=self.variance_weight,
            covariance_weight=self.covariance_weight,
        )
