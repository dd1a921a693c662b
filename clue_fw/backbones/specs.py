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
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from clue_fw.memory import FLOAT_BYTES, Part, StepSizes
from clue_fw.spec_dumps import drop_defaults
from clue_fw.specs import BackboneSpec, BuildContext

if TYPE_CHECKING:
    from clue_fw.backbones.bag import DeepFMEncoder, ItemMeanEncoder, NFMEncoder
    from clue_fw.backbones.caser import CaserEncoder
    from clue_fw.backbones.cnn import NextItNetEncoder
    from clue_fw.backbones.gru import GRUEncoder
    from clue_fw.backbones.transformer import TransformerEncoder


TRANSFORMER_DEFAULTS: dict[str, Any] = {"ffn": "relu", "positions": "learned"}
"""The Transformer's architecture options at SASRec's choices (left out of recipe dumps)."""


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
    ffn: Literal["relu", "gelu", "swiglu"] = Field(
        "relu",
        description="The point-wise FFN: 'relu' (SASRec), 'gelu', or 'swiglu' (a SiLU-gated "
        "linear unit, Shazeer 2020, as in recent LLMs and eSASRec-style models; three "
        "matrices of ffn_dim).",
    )
    positions: Literal["learned", "rotary"] = Field(
        "learned",
        description="'learned': a learnt embedding per position added to the input "
        "(SASRec); 'rotary': rotary position embedding of queries and keys in every block "
        "(Su et al. 2021), so attention sees relative offsets; needs an even head size "
        "(dim / heads).",
    )

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> TransformerSpec:
        if self.dim % self.heads:
            raise ValueError(
                f"heads ({self.heads}) must divide dim ({self.dim}); try heads="
                f"{max(h for h in range(1, self.heads + 1) if self.dim % h == 0)}"
            )
        if self.positions == "rotary" and (self.dim // self.heads) % 2:
            raise ValueError(
                f"positions: rotary turns pairs of each head's {self.dim // self.heads} "
                "dimensions, so the head size dim / heads must be even; change dim or heads, "
                "or use positions: learned"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_default_architecture(self, handler: Any) -> Any:
        """No ``ffn``/``positions`` keys while they hold SASRec's choices: recipes written
        before the options existed keep their recipe sha256, so their runs still resume."""
        return drop_defaults(handler(self), self, TRANSFORMER_DEFAULTS)

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
            ffn=self.ffn,
            positions=self.positions,
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


CaserActivation = Literal["relu", "tanh", "sigmoid", "identity"]

#: The largest ``L`` of Caser: it has a filter bank of every height ``1..L``, so its
#: parameters grow as ``L^2`` and its convolutions as ``L^3`` (the paper uses ``L <= 10``).
MAX_CASER_LENGTH = 256


class CaserSpec(BackboneSpec):
    """Caser (horizontal + vertical CNN over the last L items); one user vector, no states.

    Tang and Wang, WSDM 2018: `n_h` horizontal filters of every height `h = 1..L` over
    the `L x d` embeddings of the last `L` items, each max-pooled over time (windows of
    padding only left out), and `n_v` vertical `L x 1` filters; concatenated, dropped
    out and mapped by a fully connected layer with `fc_activation` to the user vector.
    It has **no per-position states**: train it with `finetune.head.loss_positions: ur`
    (the user vector predicts the next item of every sliding window) and pre-train it with
    objectives that read user vectors (`clue`, `infonce`); `masked_item`,
    `loss_positions: all` and `user_vector: mean` are refused at validation. Deviation
    from the paper: no user-id embedding `P_u` (clue_fw encodes users unseen in training),
    so the user vector is the network's output alone.
    """

    kind: Literal["caser"] = "caser"
    dim: int = Field(64, gt=0, description="Size d of the item embeddings and the user vector.")
    length: int | None = Field(
        None,
        gt=0,
        le=MAX_CASER_LENGTH,
        description="L: how many of the most recent items are convolved (Caser's Markov "
        f"order; the paper's MovieLens setting is 5). Default: data.max_len. At most "
        f"{MAX_CASER_LENGTH} and at most data.max_len.",
    )
    n_h: int = Field(
        16,
        ge=0,
        le=4096,
        description="Horizontal filters per height h = 1..L (paper: 16); 0 leaves them out.",
    )
    n_v: int = Field(
        4, ge=0, le=4096, description="Vertical filters (paper: 4); 0 leaves them out."
    )
    dropout: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="Dropout on the concatenated convolution outputs (paper: 0.5).",
    )
    conv_activation: CaserActivation = Field(
        "relu", description="Activation of the horizontal convolutions (phi_c; paper: relu)."
    )
    fc_activation: CaserActivation = Field(
        "relu",
        description="Activation of the fully connected layer that gives the user vector "
        "(phi_a; paper: relu).",
    )

    #: Caser convolves the window into one vector: no state per position.
    position_states: ClassVar[bool] = False

    @model_validator(mode="after")
    def _some_filters(self) -> CaserSpec:
        if self.n_h == 0 and self.n_v == 0:
            raise ValueError(
                "n_h and n_v are both 0, so no convolution reads the items; give at least "
                "one of them a positive value (the paper: n_h 16, n_v 4)"
            )
        return self

    def window_length(self, max_len: int) -> int:
        """``L``: ``length``, or ``max_len`` when it is not set."""
        return self.length if self.length is not None else max_len

    def max_len_problem(self, max_len: int) -> str | None:
        if self.length is None and max_len > MAX_CASER_LENGTH:
            return (
                f"backbone.length: caser convolves the last L items with filters of every "
                f"height 1..L, and L defaults to data.max_len ({max_len}), more than the "
                f"{MAX_CASER_LENGTH} it allows; set backbone.length to at most "
                f"{MAX_CASER_LENGTH} (the paper uses 5 on MovieLens)"
            )
        if self.length is not None and self.length > max_len:
            return (
                f"backbone.length ({self.length}) is longer than data.max_len ({max_len}), "
                "so the rows above the input would always be padding; set backbone.length "
                f"to at most {max_len}, or leave it out to use data.max_len"
            )
        return None

    def activation_parts(self, sizes: StepSizes) -> list[Part]:
        """The horizontal convolution outputs (``n_h x (L - h + 1)`` per height, before
        and after the activation, kept for backward) and the zero states ``[B, n, d]``."""
        length = self.window_length(sizes.max_len)
        outputs = self.n_h * length * (length + 1) // 2
        per_sequence = (2 * outputs if sizes.training else outputs) + sizes.max_len * self.dim
        return [
            Part(
                f"caser convolution outputs and states ({sizes.batch:,} x {per_sequence:,} x 4 B)",
                sizes.batch * per_sequence * FLOAT_BYTES,
                ("backbone.length", "backbone.n_h", sizes.batch_field),
            )
        ]

    def build(self, context: BuildContext) -> CaserEncoder:
        from clue_fw.backbones.caser import CaserEncoder

        problem = self.max_len_problem(context.max_len)
        if problem:
            raise ValueError(problem)
        return CaserEncoder(
            num_items=context.num_items,
            max_len=context.max_len,
            dim=self.dim,
            length=self.window_length(context.max_len),
            n_h=self.n_h,
            n_v=self.n_v,
            dropout=self.dropout,
            conv_activation=self.conv_activation,
            fc_activation=self.fc_activation,
        )
