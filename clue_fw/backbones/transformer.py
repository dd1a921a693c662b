"""SASRec-style Transformer encoder with a [UR] user-representation token.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018; the [UR]
token follows the CLUE paper (Sec. IV-C): a learnable vector appended after the
last real item whose output is the user representation.

Example (``[B, n]`` item ids in, a ``[B, d]`` user vector and ``[B, n, d]`` states out):

>>> import torch
>>> from clue_fw.backbones.specs import TransformerSpec
>>> from clue_fw.specs import BuildContext
>>> encoder = TransformerSpec(dim=16, heads=2).build(BuildContext(num_items=50, max_len=8))
>>> out = encoder(torch.randint(1, 51, (4, 8)))
>>> tuple(out.user.shape), tuple(out.states.shape)
((4, 16), (4, 8, 16))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clue_fw.backbones.dropout import Dropout, attention
from clue_fw.backbones.specs import TransformerSpec as TransformerSpec
from clue_fw.components import EncoderOutput, SequenceEncoder


class SwiGLU(nn.Module):
    """``down(dropout(silu(gate(x)) * up(x)))``: the gated FFN of Shazeer (2020)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.dropout(F.silu(self.gate(x)) * self.up(x)))


def feed_forward(kind: str, dim: int, hidden: int, dropout: float) -> nn.Module:
    """The point-wise FFN of a block (``relu``: SASRec's, the module layout old checkpoints
    have)."""
    if kind == "swiglu":
        return SwiGLU(dim, hidden, dropout)
    activation = nn.GELU() if kind == "gelu" else nn.ReLU()
    return nn.Sequential(
        nn.Linear(dim, hidden), activation, Dropout(dropout), nn.Linear(hidden, dim)
    )


def rotate(x: torch.Tensor, positions: torch.Tensor, base: float = 10_000.0) -> torch.Tensor:
    """Rotary position embedding of ``x`` (``[..., L, h]``, ``h`` even) at integer
    ``positions`` (``[L]``): dimension pairs ``(i, i + h/2)`` turned by ``position x
    base^(-2i/h)``, so that ``rotate(q, p) . rotate(k, r)`` depends on ``p - r`` alone."""
    half = x.shape[-1] // 2
    frequencies = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[:, None] * frequencies[None, :]  # [L, h/2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm causal self-attention and point-wise FFN, with residuals."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float,
        ffn_dim: int,
        ffn: str = "relu",
        rotary: bool = False,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.rotary = rotary
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = feed_forward(ffn, dim, ffn_dim, dropout)
        self.residual_dropout = Dropout(dropout)

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x``: ``[B, L, d]``; ``allowed``: ``[B, 1, L, L]`` boolean attention mask;
        ``positions`` (``[L]``): the slots' positions, for rotary blocks."""
        batch, length, dim = x.shape
        q, k, v = (
            self.qkv(self.attention_norm(x))
            .view(batch, length, 3, self.heads, dim // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        if self.rotary:
            if positions is None:
                raise ValueError("a rotary block needs the positions of its slots")
            q, k = rotate(q, positions), rotate(k, positions)
        attended = attention(q, k, v, allowed, self.dropout if self.training else 0.0)
        attended = attended.transpose(1, 2).reshape(batch, length, dim)
        x = x + self.residual_dropout(self.out(attended))
        return x + self.residual_dropout(self.ffn(self.ffn_norm(x)))


class TransformerEncoder(SequenceEncoder):
    """Item + position embeddings, causal Transformer blocks, [UR] token in the last slot."""

    def __init__(
        self,
        num_items: int,
        max_len: int,
        dim: int,
        blocks: int,
        heads: int,
        dropout: float,
        ffn_dim: int,
        ffn: str = "relu",
        positions: str = "learned",
    ) -> None:
        super().__init__()
        self.init_vocabulary(num_items, max_len, dim)
        # learned: an embedding per slot added to the input (SASRec); rotary: none here,
        # the blocks turn queries and keys by their slot's position instead
        self.position_embedding = nn.Embedding(max_len + 1, dim) if positions == "learned" else None
        self.embedding_dropout = Dropout(dropout)
        rotary = positions == "rotary"
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, dropout, ffn_dim, ffn, rotary) for _ in range(blocks)
        )
        self.final_norm = nn.LayerNorm(dim)
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        if self.position_embedding is not None:
            nn.init.normal_(self.position_embedding.weight, std=0.02)
        nn.init.normal_(self.user_token, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        """``items``: ``[B, n]`` left-padded ids, ``n <= max_len``."""
        self.check_length(items)
        length = items.shape[1]
        x = self.item_embedding(items) * (self.dim**0.5)
        x = self.append_user_token(x)
        positions = torch.arange(
            self.max_len + 1 - (length + 1), self.max_len + 1, device=items.device
        )
        if self.position_embedding is not None:
            x = x + self.position_embedding(positions)
        x = self.embedding_dropout(x)

        is_real = self.real_positions(items)
        causal = torch.ones(length + 1, length + 1, dtype=torch.bool, device=items.device).tril()
        diagonal = torch.eye(length + 1, dtype=torch.bool, device=items.device)
        # Keys must be real items (or the query itself, so that padding rows stay finite).
        allowed = (causal & is_real.unsqueeze(1)) | diagonal
        allowed = allowed.unsqueeze(1)
        for block in self.blocks:
            x = block(x, allowed, positions)
        x = self.final_norm(x) * is_real.unsqueeze(-1)
        return EncoderOutput(states=x[:, :-1], user=x[:, -1])
