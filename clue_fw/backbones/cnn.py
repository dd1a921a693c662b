"""NextItNet: stacked causal dilated convolutions, with a [UR] user-representation token.

Yuan et al., "A Simple Convolutional Generative Network for Next Item
Recommendation", WSDM 2019. Item embeddings go through residual blocks of causal
dilated 1-D convolutions; each block (the paper's Fig. 3b, as in the authors' code
and RecBole) is ``conv -> LayerNorm -> ReLU -> conv -> LayerNorm -> ReLU`` plus the
block input. ``dilations`` lists the dilation of each convolution in order and is
consumed two at a time, one pair per block; the whole stack is repeated
``repeats`` times. The default ``[1, 2, 4, 8]`` x 2 is the paper's setting: a
receptive field of ``1 + (k - 1) * sum(dilations) * repeats = 61`` positions.

**NextItNet and Caser.** The paper names CNN encoders, and the classic pair is Caser
(Tang & Wang 2018, the ``caser`` backbone) and NextItNet. Caser convolves the whole
window into one vector: it has no per-position states, so it fits neither the
SASRec-style "every position predicts its successor" fine-tuning nor the masked-item
objective (recipes that ask for them are refused). NextItNet is a causal generative
model: its state at position t depends only on items ``<= t``, exactly the contract
of the Transformer backbone, and it is the encoder PeterRec pre-trains.

**[UR] token.** A learnable vector is appended after the last real item, as in the
Transformer backbone (CLUE Sec. IV-C); its output is the user vector. Being last, it
sees the most recent ``receptive_field`` positions, which covers the whole sequence
when ``receptive_field >= max_len + 1`` (a warning says when it does not).

**Left padding.** Padding ids embed to zero and every causal convolution pads its
input on the left with zeros, so a zero vector at a padding position is
indistinguishable from "before the sequence". Hidden states at padding positions
are set back to zero after every convolution (LayerNorm and biases would otherwise
make them non-zero and leak the amount of padding into real positions). The output
is therefore the same however much padding precedes the sequence.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from clue_fw.components import BackboneSpec, BuildContext, EncoderOutput, SequenceEncoder
from clue_fw.memory import FLOAT_BYTES, Part, StepSizes


class CausalConv(nn.Module):
    """A dilated 1-D convolution over ``[B, L, d]`` that only looks left."""

    def __init__(self, dim: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.left_padding = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(dim, dim, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x.transpose(1, 2), (self.left_padding, 0))
        return self.conv(x).transpose(1, 2)


class ResidualBlock(nn.Module):
    """Two causal dilated convolutions, each followed by LayerNorm and ReLU, plus a residual."""

    def __init__(
        self, dim: int, kernel_size: int, dilations: tuple[int, int], dropout: float
    ) -> None:
        super().__init__()
        self.conv_1 = CausalConv(dim, kernel_size, dilations[0])
        self.norm_1 = nn.LayerNorm(dim)
        self.conv_2 = CausalConv(dim, kernel_size, dilations[1])
        self.norm_2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, L, d]``, zero at padding; ``keep``: ``[B, L, 1]`` 1 at real positions."""
        h = F.relu(self.norm_1(self.conv_1(x))) * keep
        h = F.relu(self.norm_2(self.conv_2(self.dropout(h)))) * keep
        return x + self.dropout(h)


class NextItNetEncoder(SequenceEncoder):
    """Item embeddings, causal dilated residual blocks, [UR] token in the last slot."""

    def __init__(
        self,
        num_items: int,
        max_len: int,
        dim: int,
        dilations: list[int],
        repeats: int,
        kernel_size: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.init_vocabulary(num_items, max_len, dim)
        self.embedding_dropout = nn.Dropout(dropout)
        stack = list(dilations) * repeats
        self.blocks = nn.ModuleList(
            ResidualBlock(dim, kernel_size, (stack[i], stack[i + 1]), dropout)
            for i in range(0, len(stack), 2)
        )
        self.receptive_field = 1 + (kernel_size - 1) * sum(stack)
        self.projection = nn.Linear(dim, dim)
        nn.init.normal_(self.item_embedding.weight, std=dim**-0.5)
        nn.init.normal_(self.user_token, std=dim**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        """``items``: ``[B, n]`` left-padded ids, ``n <= max_len``."""
        self.check_length(items)
        is_real = self.real_positions(items)
        keep = is_real.unsqueeze(-1).to(self.user_token.dtype)
        x = self.item_embedding(items)
        x = self.append_user_token(x)
        x = self.embedding_dropout(x) * keep
        for block in self.blocks:
            x = block(x, keep)
        x = self.projection(x) * keep
        return EncoderOutput(states=x[:, :-1], user=x[:, -1])


class NextItNetSpec(BackboneSpec):
    """NextItNet (causal dilated CNN residual blocks) with a [UR] user token."""

    kind: Literal["cnn"] = "cnn"
    dim: int = Field(64, gt=0, description="Size d of the item embeddings and conv channels.")
    dilations: list[int] = Field(
        [1, 2, 4, 8],
        min_length=2,
        max_length=512,
        description="Dilation of each convolution in order, two per residual block "
        "(so an even number of entries, at most 512).",
    )
    repeats: int = Field(
        2,
        gt=0,
        le=256,
        description="How many times the `dilations` stack is repeated (at most 256).",
    )
    kernel_size: int = Field(3, ge=2, description="Width of every causal convolution.")
    dropout: float = Field(
        0.3, ge=0.0, lt=1.0, description="Dropout on embeddings and inside the residual blocks."
    )

    @field_validator("dilations")
    @classmethod
    def _pairs_of_positive_dilations(cls, dilations: list[int]) -> list[int]:
        if any(d <= 0 for d in dilations):
            raise ValueError(f"every dilation must be positive, got {dilations}")
        if len(dilations) % 2:
            raise ValueError(
                f"dilations {dilations} has an odd number of entries; each residual block "
                f"uses two convolutions, e.g. {dilations + [2 * dilations[-1]]}"
            )
        return dilations

    def activation_parts(self, sizes: StepSizes) -> list[Part]:
        """Every causal convolution pads its input on the left with ``(kernel_size - 1) x
        dilation`` positions and keeps it for backward (training: all of them at once;
        evaluation: one at a time, the widest)."""
        stack = sorted(self.dilations * self.repeats, reverse=True)
        stack = stack if sizes.training else stack[:1]
        length = sizes.max_len + 1
        positions = sum(length + (self.kernel_size - 1) * dilation for dilation in stack)
        return [
            Part(
                f"padded convolution inputs ({sizes.batch:,} x {self.dim} channels x "
                f"{positions:,} positions over {len(stack)} convolutions x 4 B)",
                sizes.batch * self.dim * positions * FLOAT_BYTES,
                (
                    "backbone.dilations",
                    "backbone.kernel_size",
                    "backbone.repeats",
                    sizes.batch_field,
                ),
            )
        ]

    def build(self, context: BuildContext) -> NextItNetEncoder:
        encoder = NextItNetEncoder(
            num_items=context.num_items,
            max_len=context.max_len,
            dim=self.dim,
            dilations=self.dilations,
            repeats=self.repeats,
            kernel_size=self.kernel_size,
            dropout=self.dropout,
        )
        if encoder.receptive_field < context.max_len + 1:
            warnings.warn(
                f"cnn backbone: receptive field {encoder.receptive_field} < max_len + 1 = "
                f"{context.max_len + 1}, so the user vector sees only the most recent "
                f"{encoder.receptive_field - 1} items. Raise `backbone.repeats` or "
                "`backbone.dilations` to cover the whole sequence.",
                stacklevel=2,
            )
        return encoder
