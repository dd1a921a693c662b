"""Full-ranking metrics from the rank of the held-out item.

``rank`` is 1-based: 1 + the number of candidate items scored strictly higher than
the target (ties are resolved in the target's favour). Items excluded from ranking
(padding, ``[MASK]``, optionally already-seen items) score ``-inf``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

import torch
from pydantic import AfterValidator, Field

_METRIC = re.compile(r"^(mrr|recall|ndcg|hit)@(\d+)$")


def check_cutoffs(ks: list[int]) -> list[int]:
    """Cut-offs for ``@k`` metrics: positive, sorted, without repeats."""
    if any(k <= 0 for k in ks):
        raise ValueError(f"every k must be positive, got {ks}")
    return sorted(set(ks))


#: The type of a head's ``ks`` field: at least one positive cut-off.
Cutoffs = Annotated[list[int], Field(min_length=1), AfterValidator(check_cutoffs)]


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[B]`` 1-based ranks of ``target`` (``[B]``) among ``scores`` (``[B, V]``)."""
    target_score = scores.gather(1, target.unsqueeze(1))
    return (scores > target_score).sum(dim=1) + 1


def ranking_sums(ranks: torch.Tensor, ks: list[int]) -> dict[str, torch.Tensor]:
    """Per-batch sums of MRR@k, Recall@k and NDCG@k (divide by ``count`` at the end)."""
    ranks_f = ranks.to(torch.float64)
    sums = {"count": torch.tensor(float(ranks.numel()), dtype=torch.float64, device=ranks.device)}
    for k in ks:
        hit = ranks <= k
        sums[f"mrr@{k}"] = torch.where(hit, 1.0 / ranks_f, 0.0).sum()
        sums[f"recall@{k}"] = hit.to(torch.float64).sum()
        sums[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks_f + 1.0), 0.0).sum()
    return sums


def finalize_sums(sums: dict[str, torch.Tensor]) -> dict[str, float]:
    """Divide every summed metric by ``count``."""
    count = float(sums["count"])
    return {k: float(v) / count for k, v in sums.items() if k != "count" and count > 0}


def parse_metric(name: str) -> tuple[str, int]:
    match = _METRIC.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a ranking metric like 'ndcg@10'")
    return match.group(1), int(match.group(2))


def reference_metrics(rank: int, k: int) -> dict[str, float]:
    """The three metrics of a single rank, written out plainly (used by tests and docs)."""
    if rank > k:
        return {"mrr": 0.0, "recall": 0.0, "ndcg": 0.0}
    return {"mrr": 1.0 / rank, "recall": 1.0, "ndcg": 1.0 / math.log2(rank + 1)}
