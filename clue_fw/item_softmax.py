"""Softmax losses over the item catalogue: full, or sampled with the logQ correction.

Next-item heads and masked-item objectives predict an item id from a hidden state.
The **full** softmax scores every item of the catalogue for every prediction: exact,
and the cost (``[predictions, items]`` logits, forward and backward) grows with the
catalogue. At a million items it does not fit.

The **sampled** softmax scores each prediction against its own target and a shared
set of candidates:

* ``in_batch``: the targets of every prediction in the batch (popular items show up
  often, so they are the hard negatives a full softmax would push down);
* ``negatives``: ``N`` items drawn for the batch, ``uniform`` over the catalogue or
  by ``popularity`` (training interaction counts).

A candidate equal to the row's own target (an accidental hit) is removed, and every
candidate's logit is corrected by ``- log Q(item)``, the expected number of times
``item`` is among the candidates (importance sampling, Bengio and Senecal, 2008; the
logQ correction of Yi et al., RecSys 2019). The target's own logit is not corrected:
it is known exactly, and with it the softmax denominator ``exp(s_target) + sum over
candidates of exp(s_c) / Q(c)`` has the full softmax's denominator as its expected
value. (Correcting the target too, as some implementations do, divides its weight by
``Q(target)``: with fewer negatives than items, rare targets then dominate their own
denominator and stop being trained.) Without the
correction, popular items would be pushed down too hard. ``temperature`` divides
every score before the softmax.

Targets of id 0 (padding) are ignored in both losses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# The options (recipe fields) live torch-free beside this module, for the specs.
from clue_fw.item_softmax_options import ItemSoftmaxOptions as ItemSoftmaxOptions
from clue_fw.item_softmax_options import Sampler as Sampler
from clue_fw.item_softmax_options import SoftmaxLoss as SoftmaxLoss


def popularity(item_counts: torch.Tensor | None, num_items: int) -> torch.Tensor:
    """``[num_items + 1]`` float64 probabilities of items ``1..num_items`` (0 at padding),
    from training counts (add-one smoothed, so no item has probability 0)."""
    counts = torch.zeros(num_items + 1, dtype=torch.float64)
    if item_counts is not None:
        if item_counts.shape[0] < num_items + 1:
            raise ValueError(
                f"item_counts has {item_counts.shape[0]} entries, expected {num_items + 1} "
                "(padding, then every item)"
            )
        counts += item_counts[: num_items + 1].to(torch.float64).cpu()
    counts[1:] += 1.0
    counts[0] = 0.0
    return counts / counts.sum()


class ItemLoss(torch.nn.Module):
    """Cross-entropy of target item ids given hidden states, full or sampled.

    ``forward(hidden [M, d], targets [M], weight [>= num_items + 1, d])``: row ``i`` of
    ``weight`` scores item ``i``; targets of 0 are ignored. ``generator`` draws the
    sampled negatives (a seeded one keeps runs reproducible).
    """

    def __init__(
        self,
        kind: SoftmaxLoss,
        num_items: int,
        item_counts: torch.Tensor | None,
        *,
        negatives: int = 256,
        sampler: Sampler = "uniform",
        in_batch: bool = True,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if kind not in ("full", "sampled"):
            raise ValueError(f"loss must be 'full' or 'sampled', got {kind!r}")
        if sampler not in ("uniform", "popularity"):
            raise ValueError(f"sampler must be 'uniform' or 'popularity', got {sampler!r}")
        self.kind = kind
        self.num_items = num_items
        self.negatives = negatives
        self.sampler = sampler
        self.in_batch = in_batch
        self.temperature = temperature
        if kind == "full":
            return  # the distributions below serve the sampled loss only
        probabilities = popularity(item_counts, num_items)
        # Buffers (not saved in checkpoints: derived from the data): the target
        # distribution for in-batch negatives and the sampler's own distribution.
        self.register_buffer("target_p", probabilities.float(), persistent=False)
        if sampler == "popularity":
            sampler_p = probabilities
        else:
            sampler_p = torch.full((num_items + 1,), 1.0 / num_items, dtype=torch.float64)
            sampler_p[0] = 0.0
        self.register_buffer("sampler_p", sampler_p.float(), persistent=False)

    def forward(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        weight: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if self.kind == "full":
            return self.full(hidden, targets, weight)
        return self.sampled(hidden, targets, weight, generator)

    def full(
        self, hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        logits = hidden @ weight[: self.num_items + 1].T
        if self.temperature != 1.0:
            logits = logits / self.temperature
        logits[..., 0] = float("-inf")
        return F.cross_entropy(logits, targets, ignore_index=0)

    def sampled(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        weight: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        real = targets != 0
        candidates = self._candidates(targets, generator)
        expected = self._expected_counts(candidates, real)  # [C]
        log_q_candidates = torch.log(expected)
        scale = 1.0 / self.temperature
        positive = (hidden * weight[targets]).sum(dim=-1) * scale
        # scale * hidden @ candidates^T - log Q in one matmul (the correction as its bias)
        negative = torch.addmm(-log_q_candidates, hidden, weight[candidates].T, alpha=scale)
        # Accidental hits (the row's own target among the candidates) and padding go.
        unusable = (candidates.unsqueeze(0) == targets.unsqueeze(1)) | (candidates == 0)
        negative = negative.masked_fill(unusable, float("-inf"))
        # log(exp(positive) + sum exp(negative)) without concatenating [M, 1 + C] logits
        per_row = torch.logaddexp(positive, torch.logsumexp(negative, dim=1)) - positive
        weights = real.to(per_row.dtype)
        return (per_row * weights).sum() / weights.sum().clamp(min=1.0)

    def _candidates(self, targets: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        parts = [targets.reshape(-1)] if self.in_batch else []
        if self.negatives:
            device = targets.device
            if self.sampler == "uniform":
                drawn = torch.randint(
                    1, self.num_items + 1, (self.negatives,), generator=generator, device=device
                )
            else:
                drawn = torch.multinomial(
                    self.sampler_p, self.negatives, replacement=True, generator=generator
                )
            parts.append(drawn.to(device))
        return torch.cat(parts)

    def _expected_counts(self, items: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """How often each of ``items`` is expected among the candidates (never 0)."""
        expected = torch.zeros(items.shape, dtype=torch.float32, device=items.device)
        if self.in_batch:
            expected = expected + real.sum().to(torch.float32) * self.target_p[items]
        if self.negatives:
            expected = expected + self.negatives * self.sampler_p[items]
        return expected.clamp(min=math.ulp(1.0))
