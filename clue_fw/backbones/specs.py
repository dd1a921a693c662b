"""The specs of the built-in backbones: what a recipe's ``backbone`` section says.

Free of torch, so that ``clue validate``, ``list``, ``show`` and ``schema`` read recipes
without importing it (as litgpt keeps its config free of torch). Each spec's ``build``
imports its encoder, where the model and its paper are described:
:mod:`clue_fw.backbones.transformer`, :mod:`~clue_fw.backbones.gru`,
:mod:`~clue_fw.backbones.cnn` and :mod:`~clue_fw.backbones.bag`. Each of those modules
re-exports its spec, so ``from clue_fw.backbones.transformer import TransformerSpec``
still works.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from clue_fw.memory import FLOAT_BYTES, Part, StepSizes
from clue_fw.specs import BackboneSpec, BuildContext

if TYPE_CHECKING:
    from clue_fw.backbones.bag import DeepFMEncoder, ItemMeanEncoder, NFMEncoder
    from clue_fw.backbones.cnn import NextItNetEncoder
    from clue_fw.backbones.gru import GRUEncoder
    from clue_fw.backbones.transformer import TransformerEncoder


class TransformerSpec(BackboneSpec):
    """SASRec Transformer (causal self-attention) with a [UR] user token."""

    kind: Literal["transformer"] = "transformer"
    dim: int = Field(64, gt=0, description="Hidden size d of embeddings and blocks.")
    blocks: int = Field(
        2, gt=0, le=256, description="Number of self-attention blocks (at most 256)."
    )
    heads: int = Field(
        4, gt=0, description="Attention heads; must divide `dim` (so at most `dim`)."
    )
    dropout: float = Field(
        0.5, ge=0.0, lt=1.0, description="Dropout on embeddings, attention, FFN and residuals."
    )
    ffn_dim: int | None = Field(
        None, gt=0, description="Inner size of the point-wise FFN (default: `dim`, as SASRec)."
    )

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> TransformerSpec:
        if self.dim % self.heads:
            raise ValueError(
                f"heads ({self.heads}) must divide dim ({self.dim}); try heads="
                f"{max(h for h in range(1, self.heads + 1) if self.dim % h == 0)}"
            )
        return self

    def activation_parts(self, sizes: StepSizes) -> list[Part]:
        """Training keeps each block's attention for backward: on the CPU the probabilities
        (``batch x heads x (n + 1)^2``), elsewhere one float mask (``batch x (n + 1)^2``)."""
        if not sizes.training:
            return []
        batch, length = sizes.batch, sizes.max_len + 1
        if sizes.device.type == "cpu":
            count = batch * self.heads * length**2 * self.blocks
            what = (
                f"attention weights ({batch:,} x {self.heads} heads x {length}^2 x "
                f"{self.blocks} blocks x 4 B)"
            )
        else:
            count, what = batch * length**2, f"attention mask ({batch:,} x {length}^2 x 4 B)"
        return [Part(what, count * FLOAT_BYTES, (sizes.batch_field, "data.max_len"))]

    def build(self, context: BuildContext) -> TransformerEncoder:
        from clue_fw.backbones.transformer import TransformerEncoder

        return TransformerEncoder(
            num_items=context.num_items,
            max_len=context.max_len,
            dim=self.dim,
            blocks=self.blocks,
            heads=self.heads,
            dropout=self.dropout,
            ffn_dim=self.ffn_dim or self.dim,
        )


class GRUSpec(BackboneSpec):
    """GRU4Rec (multi-layer GRU over item embeddings) with a [UR] user token."""

    kind: Literal["gru"] = "gru"
    dim: int = Field(64, gt=0, description="Size d of the item embeddings and output states.")
    hidden_size: int | None = Field(
        None, gt=0, description="GRU hidden size (default: 2 * `dim`, RecBole's 64/128 ratio)."
    )
    layers: int = Field(1, gt=0, le=256, description="Number of stacked GRU layers (at most 256).")
    dropout: float = Field(
        0.3, ge=0.0, lt=1.0, description="Dropout on embeddings and between GRU layers."
    )

    def build(self, context: BuildContext) -> GRUEncoder:
        from clue_fw.backbones.gru import GRUEncoder

        return GRUEncoder(
            num_items=context.num_items,
            max_len=context.max_len,
            dim=self.dim,
            hidden_size=self.hidden_size or 2 * self.dim,
            layers=self.layers,
            dropout=self.dropout,
        )


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
        from clue_fw.backbones.cnn import NextItNetEncoder

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


def positive_sizes(hidden: list[int]) -> list[int]:
    """Validator of the specs' ``hidden``: every layer size is a positive int."""
    if any(size <= 0 for size in hidden):
        raise ValueError(f"every hidden size must be positive, got {hidden}")
    return hidden


class ItemMeanSpec(BackboneSpec):
    """Mean of the item embeddings (order-agnostic; CLUE's fixed recipes pre-train it)."""

    kind: Literal["item_mean"] = "item_mean"
    dim: int = Field(64, gt=0, description="Size d of the item embeddings and the user vector.")
    init_std: float = Field(
        0.02,
        gt=0.0,
        le=10.0,
        description="Std of the item embeddings' normal initialisation (the Transformer's "
        "0.02, which the measured ML-1M pre-training used).",
    )

    def build(self, context: BuildContext) -> ItemMeanEncoder:
        from clue_fw.backbones.bag import ItemMeanEncoder

        return ItemMeanEncoder(context.num_items, context.max_len, self.dim, self.init_std)


class DeepFMSpec(BackboneSpec):
    """DeepFM over the bag of items (order-agnostic baseline): FM vector + DNN."""

    kind: Literal["deepfm"] = "deepfm"
    dim: int = Field(64, gt=0, description="Size d of the item embeddings and the user vector.")
    hidden: list[int] = Field(
        [200, 200, 200],
        description="DNN hidden sizes (DeepFM's study: 3 constant-width layers of 200-400 "
        "neurons; 200 as the input is one d-dim field). Empty: one Linear(d, d).",
    )
    dropout: float = Field(
        0.5, ge=0.0, lt=1.0, description="Dropout after each DNN hidden layer (DeepFM: 0.5)."
    )

    _positive_hidden = field_validator("hidden")(positive_sizes)

    def build(self, context: BuildContext) -> DeepFMEncoder:
        from clue_fw.backbones.bag import DeepFMEncoder

        return DeepFMEncoder(
            num_items=context.num_items,
            max_len=context.max_len,
            dim=self.dim,
            hidden=self.hidden,
            dropout=self.dropout,
        )


class NFMSpec(BackboneSpec):
    """NFM over the bag of items (order-agnostic baseline): linear + Bi-Interaction MLP."""

    kind: Literal["nfm"] = "nfm"
    dim: int = Field(64, gt=0, description="Size d of the item embeddings and the user vector.")
    hidden: list[int] = Field(
        [64],
        description="Hidden sizes after Bi-Interaction (NFM: one layer works best; its code "
        "uses [64]). Empty: Bi-Interaction then one Linear(d, d), NFM-0.",
    )
    bi_dropout: float = Field(
        0.5, ge=0.0, lt=1.0, description="Dropout on the Bi-Interaction vector (NFM code: 0.5)."
    )
    dropout: float = Field(
        0.2, ge=0.0, lt=1.0, description="Dropout after each hidden layer (NFM code: 0.2)."
    )
    batch_norm: bool = Field(
        True, description="BatchNorm on the Bi-Interaction vector and hidden layers (NFM)."
    )

    _positive_hidden = field_validator("hidden")(positive_sizes)

    def build(self, context: BuildContext) -> NFMEncoder:
        from clue_fw.backbones.bag import NFMEncoder

        return NFMEncoder(
            num_items=context.num_items,
            max_len=context.max_len,
            dim=self.dim,
            hidden=self.hidden,
            bi_dropout=self.bi_dropout,
            dropout=self.dropout,
            batch_norm=self.batch_norm,
        )
