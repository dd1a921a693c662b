"""InfoNCE (NT-Xent) between two views of each sequence, with in-batch negatives.

The contrastive term of CL4SRec (Xie et al., ICDE 2022) and the unsupervised term of
DuoRec (Qiu et al., WSDM 2022): the two views of a sequence are a positive pair, and
the other ``2B - 2`` view representations of the batch are its negatives. Unlike CLUE's
SimSiam objective it needs negatives, and so large batches matter less for BatchNorm
but more for the number of negatives. Used as a pre-training objective or, as those
papers do, as a ``finetune.auxiliary`` term beside the next-item loss.

Example (one pre-training step's loss on a batch, through an encoder and a view):

>>> import torch
>>> from clue_fw.augmentations.specs import MaskViewSpec
>>> from clue_fw.backbones.specs import GRUSpec
>>> from clue_fw.objectives.specs import InfoNceSpec
>>> from clue_fw.specs import BuildContext
>>> context = BuildContext(num_items=50, max_len=8)
>>> encoder = GRUSpec(dim=16).build(context)
>>> objective = InfoNceSpec().build(context, encoder)
>>> items, generator = torch.randint(1, 51, (4, 8)), torch.Generator().manual_seed(0)
>>> out = objective(encoder, items, MaskViewSpec().build(context), generator)
>>> out.loss.dim(), sorted(out.terms)
(0, ['pair_acc'])
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from clue_fw.components import (
    Augmentation,
    LossOutput,
    PretrainObjective,
    SequenceEncoder,
    two_view_users,
)
from clue_fw.objectives.specs import InfoNceSpec as InfoNceSpec


def nt_xent(
    first: torch.Tensor, second: torch.Tensor, temperature: float, similarity: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean InfoNCE loss of ``[B, d]`` view pairs and the top-1 accuracy of finding the
    partner among the ``2B - 1`` other rows."""
    if similarity == "cosine":
        first, second = F.normalize(first, dim=-1), F.normalize(second, dim=-1)
    rows = torch.cat([first, second])
    logits = rows @ rows.T / temperature
    count = first.shape[0]
    logits = logits.masked_fill(
        torch.eye(2 * count, dtype=torch.bool, device=rows.device), float("-inf")
    )
    partner = torch.cat([torch.arange(count, 2 * count), torch.arange(0, count)]).to(rows.device)
    loss = F.cross_entropy(logits, partner)
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == partner).float().mean()
    return loss, accuracy


def _gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Under a data-parallel run, the rows of every process (gradients flow back to each
    process's own rows), so that negatives are those of the global batch, as in one
    process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(rows))


class InfoNceObjective(PretrainObjective):
    """Two views -> encoder -> user vectors -> NT-Xent with in-batch negatives."""

    def __init__(self, temperature: float, similarity: str) -> None:
        super().__init__()
        self.temperature = temperature
        self.similarity = similarity

    def forward(
        self,
        encoder: SequenceEncoder,
        items: torch.Tensor,
        view: Augmentation,
        generator: torch.Generator,
    ) -> LossOutput:
        user_1, user_2 = two_view_users(encoder, items, view, generator)
        loss, accuracy = nt_xent(
            _gather_rows(user_1), _gather_rows(user_2), self.temperature, self.similarity
        )
        return LossOutput(loss, {"pair_acc": accuracy})
