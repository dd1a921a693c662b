"""CLUE: SimSiam-style contrastive pre-training of the user representation.

Cheng et al., "Learning Transferable User Representations with Sequential
Behaviors via Contrastive Pre-training", ICDM 2021, Sec. IV-A (Eq. 4-7, Alg. 1);
Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021.

Example (one pre-training step's loss on a batch, through an encoder and a view):

>>> import torch
>>> from clue_fw.augmentations.specs import MaskViewSpec
>>> from clue_fw.backbones.specs import GRUSpec
>>> from clue_fw.objectives.specs import ClueSpec
>>> from clue_fw.specs import BuildContext
>>> context = BuildContext(num_items=50, max_len=8)
>>> encoder = GRUSpec(dim=16).build(context)
>>> objective = ClueSpec().build(context, encoder)
>>> items, generator = torch.randint(1, 51, (4, 8)), torch.Generator().manual_seed(0)
>>> out = objective(encoder, items, MaskViewSpec().build(context), generator)
>>> out.loss.dim(), sorted(out.terms)
(0, ['z_std'])
"""

from __future__ import annotations

import torch
from torch import nn

from clue_fw.components import (
    Augmentation,
    LossOutput,
    PretrainObjective,
    SequenceEncoder,
    two_view_users,
)
from clue_fw.objectives.decorrelation import variance_covariance
from clue_fw.objectives.negative_cosine import symmetric_negative_cosine
from clue_fw.objectives.specs import SPREAD_DEFAULTS as SPREAD_DEFAULTS
from clue_fw.objectives.specs import ClueSpec as ClueSpec


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
