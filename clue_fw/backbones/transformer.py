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

from clue_fw.backbones.specs import TransformerSpec as TransformerSpec
from clue_fw.components import EncoderOutput, SequenceEncoder


class TransformerBlock(nn.Module):
    """Pre-LayerNorm causal self-attention and point-wise FFN, with residuals."""

    def __init__(self, dim: int, heads: int, dropout: float, ffn_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, L, d]``; ``allowed``: ``[B, 1, L, L]`` boolean attention mask."""
        batch, length, dim = x.shape
        q, k, v = (
            self.qkv(self.attention_norm(x))
            .view(batch, length, 3, self.heads, dim // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
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
    ) -> None:
        super().__init__()
        self.init_vocabulary(num_items, max_len, dim)
        self.position_embedding = nn.Embedding(max_len + 1, dim)
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, dropout, ffn_dim) for _ in range(blocks)
        )
        self.final_norm = nn.LayerNorm(dim)
        nn.init.normal_(self.item_embedding.weight, std=0.02)
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
        x = self.embedding_dropout(x + self.position_embedding(positions))

        is_real = self.real_positions(items)
        causal = torch.ones(length + 1, length + 1, dtype=torch.bool, device=items.device).tril()
        diagonal = torch.eye(length + 1, dtype=torch.bool, device=items.device)
        # Keys must be real items (or the query itself, so that padding rows stay finite).
        allowed = (causal & is_real.unsqueeze(1)) | diagonal
        allowed = allowed.unsqueeze(1)
        for block in self.blocks:
            x = block(x, allowed)
        x = self.final_norm(x) * is_real.unsqueeze(-1)
        return EncoderOutput(states=x[:, :-1], user=x[:, -1])
