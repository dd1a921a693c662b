"""Caser: horizontal and vertical convolutions over the embeddings of the last L items.

Tang and Wang, "Personalized Top-N Sequential Recommendation via Convolutional Sequence
Embedding", WSDM 2018, Sec. 3. The ``L`` most recent items are stacked into an
``L x d`` "image" ``E`` (oldest row first, the most recent item in the last row):

* **horizontal convolutions** (union-level patterns): for every height ``h = 1..L``,
  ``n_h`` filters of shape ``h x d`` slide down ``E``; each output goes through the
  convolution activation and is max-pooled over the ``L - h + 1`` windows, giving
  ``o = [max_t phi_c(W_h . E[t : t + h])]`` of ``L x n_h`` values;
* a **vertical convolution** (point-level patterns): ``n_v`` filters of shape ``L x 1``,
  each a weighted sum of the ``L`` rows, ``o~ = [sum_l w_l E[l]]`` of ``n_v x d`` values
  (no activation, as in the authors' code);
* both are concatenated, dropped out, and a fully connected layer with the activation
  ``phi_a`` maps them to ``z`` of size ``d``: the user vector.

>>> spec = CaserSpec(dim=8, length=4, n_h=2, n_v=1)
>>> encoder = spec.build(BuildContext(num_items=20, max_len=6))
>>> [conv.kernel_size[0] for conv in encoder.horizontal]
[1, 2, 3, 4]
>>> encoder(torch.tensor([[0, 0, 3, 4, 5, 6]])).user.shape
torch.Size([1, 8])

**Deviations from the paper, and why.**

* **No user embedding.** Caser concatenates ``z`` with a learned embedding ``P_u`` of
  the user id before the output layer. clue_fw encodes users it never saw in training
  (new users, other domains, ``clue embed``), so a vector per training user cannot be
  part of the encoder: it is left out, and the user vector is ``z`` alone. Long-term
  preference then has to come from the ``L`` items themselves.
* **Training.** The paper predicts the next ``T = 3`` items of every sliding window
  with sampled negatives. Here the encoder is trained by whatever head the recipe
  names; with ``next_item`` and ``loss_positions: ur`` the user vector predicts the next
  item of every sliding window (``T = 1``) with a softmax over all items, scored against
  the item embeddings (``tie_weights: true``) or an output layer of its own.
* **Short sequences.** A row with fewer than ``L`` items is left-padded with zero
  embeddings, as RecBole does. Max pooling runs over the windows that hold at least one
  item (windows of padding only are left out; a row without items pools to 0), so a
  short sequence is not compared against the constant output of empty windows.
* **L** defaults to ``data.max_len`` (the whole input window, as RecBole's Caser), so
  the model reads what the other backbones read; the paper's MovieLens setting is
  ``L = 5``.

**No per-position states.** Caser convolves the whole window into one vector: there is
no state per input position. ``states`` are zeros and the spec says
``position_states = False``, so a recipe whose objective or head reads per-position
states (``masked_item`` pre-training, the ``next_item`` head's ``loss_positions: all``,
``user_vector: mean``) is refused at validation with what to change. CLUE, InfoNCE and
every head that reads the user vector work as with any backbone.

**Left padding.** Every batch is first cut or left-padded to exactly ``L`` columns, so
the output does not depend on how much padding the batch had; items older than the
last ``L`` are not read.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from clue_fw.components import BackboneSpec, BuildContext, EncoderOutput, SequenceEncoder
from clue_fw.memory import FLOAT_BYTES, Part, StepSizes

Activation = Literal["relu", "tanh", "sigmoid", "identity"]

#: The largest ``L``: Caser has a filter bank of every height ``1..L``, so its parameters
#: grow as ``L^2`` and its convolutions as ``L^3`` (the paper uses ``L <= 10``).
MAX_LENGTH = 256

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def window_has_items(real: torch.Tensor, height: int) -> torch.Tensor:
    """``[B, L - height + 1]`` bool: which windows ``[t, t + height)`` of the ``[B, L]``
    mask ``real`` hold at least one real item."""
    counts = F.pad(real.long().cumsum(dim=1), (1, 0))
    return (counts[:, height:] - counts[:, :-height]) > 0


class CaserEncoder(SequenceEncoder):
    """Item embeddings of the last ``length`` items -> horizontal and vertical convolutions
    -> dropout -> fully connected layer -> the user vector ``[B, d]``."""

    def __init__(
        self,
        num_items: int,
        max_len: int,
        dim: int,
        length: int,
        n_h: int,
        n_v: int,
        dropout: float,
        conv_activation: Activation,
        fc_activation: Activation,
    ) -> None:
        super().__init__()
        self.init_vocabulary(num_items, max_len, dim)
        del self.user_token  # no [UR] read-out: the convolutions read the window
        self.length = length
        # Height h: n_h filters of h x d (Conv2d(1, n_h, (h, d)) in the paper's code), as
        # a 1-D convolution over the L rows with d input channels.
        heights = range(1, length + 1) if n_h else range(0)
        self.horizontal = nn.ModuleList(nn.Conv1d(dim, n_h, height) for height in heights)
        # n_v filters of L x 1: each a weighted sum of the L rows (Conv2d(1, n_v, (L, 1))).
        self.vertical = nn.Conv1d(length, n_v, kernel_size=1) if n_v else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_h * length + n_v * dim, dim)
        self.conv_activation = ACTIVATIONS[conv_activation]()
        self.fc_activation = ACTIVATIONS[fc_activation]()
        # The authors' code: item embeddings N(0, 1 / d).
        nn.init.normal_(self.item_embedding.weight, std=1.0 / dim)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def window(self, items: torch.Tensor) -> torch.Tensor:
        """``[B, n]`` left-padded ids -> ``[B, L]``: the last ``L`` columns, left-padded."""
        width = items.shape[1]
        if width >= self.length:
            return items[:, width - self.length :]
        return F.pad(items, (self.length - width, 0))

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        """``items``: ``[B, n]`` left-padded ids, ``n <= max_len``."""
        self.check_length(items)
        window = self.window(items)
        real = window != 0
        embedded = self.item_embedding(window)  # [B, L, d], zero at padding
        parts = []
        if self.vertical is not None:
            parts.append(self.vertical(embedded).flatten(1))  # [B, n_v * d]
        if len(self.horizontal):
            rows = embedded.transpose(1, 2)  # [B, d, L]
            for height, conv in enumerate(self.horizontal, start=1):
                out = self.conv_activation(conv(rows))  # [B, n_h, L - height + 1]
                valid = window_has_items(real, height).unsqueeze(1)
                out = out.masked_fill(~valid, torch.finfo(out.dtype).min)
                pooled = out.amax(dim=2)  # [B, n_h]
                parts.append(torch.where(valid.any(dim=2), pooled, torch.zeros_like(pooled)))
        features = self.dropout(torch.cat(parts, dim=1))
        user = self.fc_activation(self.fc(features))
        states = user.new_zeros(*items.shape, self.dim)  # no per-position states
        return EncoderOutput(states=states, user=user)


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
        le=MAX_LENGTH,
        description="L: how many of the most recent items are convolved (Caser's Markov "
        f"order; the paper's MovieLens setting is 5). Default: data.max_len. At most "
        f"{MAX_LENGTH} and at most data.max_len.",
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
    conv_activation: Activation = Field(
        "relu", description="Activation of the horizontal convolutions (phi_c; paper: relu)."
    )
    fc_activation: Activation = Field(
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
        if self.length is None and max_len > MAX_LENGTH:
            return (
                f"backbone.length: caser convolves the last L items with filters of every "
                f"height 1..L, and L defaults to data.max_len ({max_len}), more than the "
                f"{MAX_LENGTH} it allows; set backbone.length to at most {MAX_LENGTH} (the "
                "paper uses 5 on MovieLens)"
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
