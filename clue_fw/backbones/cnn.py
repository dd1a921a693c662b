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

Example (``[B, n]`` item ids in, a ``[B, d]`` user vector and ``[B, n, d]`` states out):

>>> import torch
>>> from clue_fw.backbones.specs import NextItNetSpec
>>> from clue_fw.specs import BuildContext
>>> encoder = NextItNetSpec(dim=16).build(BuildContext(num_items=50, max_len=8))
>>> out = encoder(torch.randint(1, 51, (4, 8)))
>>> tuple(out.user.shape), tuple(out.states.shape)
((4, 16), (4, 8, 16))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clue_fw.backbones.dropout import Dropout
from clue_fw.backbones.specs import NextItNetSpec as NextItNetSpec
from clue_fw.components import EncoderOutput, SequenceEncoder


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
        self.dropout = Dropout(dropout)

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
        self.embedding_dropout = Dropout(dropout)
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
