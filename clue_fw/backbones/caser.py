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

import torch
import torch.nn.functional as F
from torch import nn

from clue_fw.backbones.dropout import Dropout
from clue_fw.backbones.specs import MAX_CASER_LENGTH as MAX_LENGTH
from clue_fw.backbones.specs import CaserActivation as Activation
from clue_fw.backbones.specs import CaserSpec as CaserSpec
from clue_fw.components import EncoderOutput, SequenceEncoder

__all__ = ["ACTIVATIONS", "MAX_LENGTH", "CaserEncoder", "CaserSpec", "window_has_items"]

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
        self.dropout = Dropout(dropout)
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
