"""GRU4Rec-style recurrent encoder with a [UR] user-representation token.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016, in the sequential form used by RecBole and S3-Rec: item embedding,
embedding dropout, a multi-layer GRU, and a linear projection back to ``dim`` so
that the next-item head can score against the (tied) item embeddings.

**[UR] token.** As in the Transformer backbone (CLUE Sec. IV-C), a learnable vector
is fed to the GRU as one extra step after the last real item; its projected output
is the user vector. It is the final hidden state after one learned "read-out" step,
so the user vector sees the whole sequence, and the per-position states stay the
plain GRU4Rec states (state t depends only on items ``<= t``).

**Left padding.** A GRU started before the padding would be stepped by the padding
inputs (zero vectors still move the state through the biases), so the state at the
first real item would depend on how much padding precedes it. Instead each row is
rotated so that its real items and the [UR] token come first, followed by the
padding (one ``gather``), the GRU runs from the zero start state, and the outputs
are rotated back. Trailing padding only follows the real steps of a causal GRU, so
it cannot change them: the result is exactly the un-padded GRU, whatever the padding.

Example (``[B, n]`` item ids in, a ``[B, d]`` user vector and ``[B, n, d]`` states out):

>>> import torch
>>> from clue_fw.backbones.specs import GRUSpec
>>> from clue_fw.specs import BuildContext
>>> encoder = GRUSpec(dim=16).build(BuildContext(num_items=50, max_len=8))
>>> out = encoder(torch.randint(1, 51, (4, 8)))
>>> tuple(out.user.shape), tuple(out.states.shape)
((4, 16), (4, 8, 16))
"""

from __future__ import annotations

import torch
from torch import nn

from clue_fw.backbones.dropout import Dropout
from clue_fw.backbones.specs import GRUSpec as GRUSpec
from clue_fw.components import EncoderOutput, SequenceEncoder


def rotate_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``out[b, t] = x[b, (t + shift[b]) % L]`` for ``x`` ``[B, L, d]``, ``shift`` ``[B]``."""
    length = x.shape[1]
    index = (torch.arange(length, device=x.device) + shift.unsqueeze(1)) % length
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class GRUEncoder(SequenceEncoder):
    """Item embedding, dropout, multi-layer GRU, projection; [UR] step after the last item."""

    def __init__(
        self,
        num_items: int,
        max_len: int,
        dim: int,
        hidden_size: int,
        layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.init_vocabulary(num_items, max_len, dim)
        self.embedding_dropout = Dropout(dropout)
        # nn.GRU's dropout acts between layers only (it warns when there is one layer).
        self.gru = nn.GRU(
            dim,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.projection = nn.Linear(hidden_size, dim)
        nn.init.xavier_normal_(self.item_embedding.weight)
        nn.init.normal_(self.user_token, std=0.02)
        for name, weight in self.gru.named_parameters():
            if name.startswith("weight"):
                nn.init.xavier_uniform_(weight)
            else:
                nn.init.zeros_(weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        """``items``: ``[B, n]`` left-padded ids, ``n <= max_len``."""
        self.check_length(items)
        is_real = self.real_positions(items)
        x = self.item_embedding(items)
        x = self.append_user_token(x)
        x = self.embedding_dropout(x) * is_real.unsqueeze(-1)
        # Leading padding of each row; rotating by it puts the real steps first.
        leading = (is_real.cumsum(dim=1) == 0).sum(dim=1)
        hidden, _ = self.gru(rotate_rows(x, leading))
        hidden = rotate_rows(self.projection(hidden), -leading)
        hidden = hidden * is_real.unsqueeze(-1)
        return EncoderOutput(states=hidden[:, :-1], user=hidden[:, -1])
