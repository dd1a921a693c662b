"""Example third-party plugin: a bag-of-items backbone registered through clue_fw's hooks.

Install it next to clue_fw (``pip install -e plugins/clue-mean-pool``) and
``clue list`` shows ``mean_pool`` with this distribution as its provider. Recipes
can then say ``backbone: {kind: mean_pool, dim: 64}``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from clue_fw.components import BackboneSpec, BuildContext, EncoderOutput, SequenceEncoder
from clue_fw.hookspecs import hookimpl


class MeanPoolEncoder(SequenceEncoder):
    """User vector = MLP(mean of the real items' embeddings); order is ignored.

    ``states`` are the item embeddings themselves, zero at padding.
    """

    def __init__(self, num_items: int, max_len: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.num_items, self.max_len, self.dim = num_items, max_len, dim
        self.item_embedding = nn.Embedding(num_items + 2, dim, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self.mlp = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)
        )

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        real = (items != 0).unsqueeze(-1)
        states = self.item_embedding(items) * real
        mean = states.sum(dim=1) / real.sum(dim=1).clamp(min=1)
        return EncoderOutput(states=states, user=self.mlp(mean))


class MeanPoolSpec(BackboneSpec):
    """Order-agnostic baseline: MLP over the mean item embedding (example plugin)."""

    kind: Literal["mean_pool"] = "mean_pool"
    dim: int = Field(64, gt=0, description="Embedding and output size.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout before the MLP.")

    def build(self, context: BuildContext) -> MeanPoolEncoder:
        return MeanPoolEncoder(context.num_items, context.max_len, self.dim, self.dropout)


@hookimpl
def clue_register_backbones() -> list[type[BackboneSpec]]:
    return [MeanPoolSpec]
