"""Example third-party plugin: a cosine next-item head, registered through clue_fw's hooks.

Next-item recommendation from the user vector alone: every item ``i`` scores the
cosine similarity of the user vector ``u`` and the item's embedding ``e_i`` divided
by a temperature, ``s_i = cos(u, e_i) / tau`` (normalised softmax, as in Wang et al.,
"NormFace", ACM MM 2017), trained with cross-entropy over all items with label
smoothing (Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016).
Scores ignore the length of ``u``, so a user vector's norm cannot inflate them.

Its task needs no data of its own: leave-one-out on the sequences, like the built-in
``next_item``, with one training window per prefix (``history: all``) or per user
(``recent``); evaluation ranks the held-out item against every item
(:func:`clue_fw.metrics.ranking.ranking_sums`).

    >>> import torch
    >>> user, items = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    >>> cosine_scores(user, items, temperature=0.5).tolist()
    [[2.0, 0.0]]

A recipe uses it as ``finetune.head: {kind: cosine_next_item, temperature: 0.1}``. Its
spec says that it ranks items (``ranking``) and its head scores them by id
(``item_scores``), so ``clue recommend`` serves a run of it as it serves ``next_item``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from clue_fw.components import (
    BuildContext,
    DownstreamHead,
    HeadSpec,
    LossOutput,
    Ranking,
    SequenceEncoder,
    TaskData,
)
from clue_fw.data.examples import Task
from clue_fw.heads.next_item import next_item_task
from clue_fw.hookspecs import hookimpl
from clue_fw.metrics.ranking import TIES_DESCRIPTION, Cutoffs, Ties, finalize_sums, ranking_sums


def cosine_scores(user: torch.Tensor, items: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[B, N]`` scores ``cos(user_b, items_i) / temperature`` of ``[B, d]`` users and
    ``[N, d]`` item embeddings."""
    return F.normalize(user, dim=-1) @ F.normalize(items, dim=-1).T / temperature


class CosineNextItemHead(DownstreamHead):
    """Scores item ids ``1..num_items`` (column ``i - 1``) from the encoder's user vector."""

    def __init__(
        self,
        num_items: int,
        temperature: float,
        label_smoothing: float,
        exclude_seen: bool,
        ks: list[int],
        ties: Ties,
    ) -> None:
        super().__init__()
        self.num_items = num_items
        self.temperature = temperature
        self.label_smoothing = label_smoothing
        self.exclude_seen = exclude_seen
        self.ks = list(ks)
        self.ties = ties

    def scores(self, encoder: SequenceEncoder, items: torch.Tensor) -> torch.Tensor:
        """``[B, num_items]`` scores for the left-padded histories ``items`` ``[B, n]``."""
        weight = encoder.item_embedding.weight[1 : self.num_items + 1]  # no padding, no [MASK]
        return cosine_scores(encoder(items).user, weight, self.temperature)

    def item_scores(self, encoder: SequenceEncoder, items: torch.Tensor) -> torch.Tensor:
        """``[B, num_items + 1]`` scores by item id (column 0, padding, scores -inf): what
        ``clue recommend`` ranks, since the spec says the head ranks items."""
        scores = self.scores(encoder, items)
        padding = torch.full_like(scores[:, :1], float("-inf"))
        return torch.cat([padding, scores], dim=1)

    def loss(self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]) -> LossOutput:
        window = batch["window"]
        scores = self.scores(encoder, window[:, :-1])
        loss = F.cross_entropy(scores, window[:, -1] - 1, label_smoothing=self.label_smoothing)
        return LossOutput(loss, {})

    @torch.no_grad()
    def metric_sums(
        self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        scores = self.scores(encoder, batch["items"])
        if self.exclude_seen:
            scores[batch["seen_row"], batch["seen_value"] - 1] = float("-inf")
        return ranking_sums(scores, batch["target"] - 1, self.ks, self.ties)

    def finalize(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        return finalize_sums(sums)


class CosineNextItemSpec(HeadSpec):
    """Next-item recommendation from cosine scores with label smoothing (example plugin)."""

    kind: Literal["cosine_next_item"] = "cosine_next_item"
    temperature: float = Field(
        0.1, gt=0.0, le=10.0, description="Softmax temperature tau: scores are cos / tau."
    )
    label_smoothing: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of the target's probability spread over all items."
    )
    exclude_seen: Literal["history", "none"] = Field(
        "history",
        description="'history': items of the user's input history score -inf before ranking "
        "(as the built-in next_item); 'none': rank every item.",
    )
    ties: Ties = Field("pessimistic", description=TIES_DESCRIPTION)
    ks: Cutoffs = Field([10], description="Cut-offs k for MRR@k, Recall@k, NDCG@k.")

    @property
    def monitor_default(self) -> str:
        return f"ndcg@{self.ks[0]}"

    @property
    def ranking(self) -> Ranking:
        """It ranks items (``clue recommend`` serves it), by this protocol."""
        return Ranking(self.exclude_seen, list(self.ks), self.ties)

    @property
    def probe_ready(self) -> str | None:
        return (
            "the cosine_next_item head has no parameters of its own (it scores items with the "
            "encoder's item embeddings), so a frozen encoder leaves nothing to train; use "
            "finetune.mode: full"
        )

    def training_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The window's inputs (all but the target): what finetune.auxiliary terms view."""
        return batch["window"][:, :-1]

    def make_task(self, task_data: TaskData, context: BuildContext, history: str) -> Task:
        # Only the final position predicts, so every prefix ends a window (stride 1).
        return next_item_task(
            task_data, context, history, every_position=False, exclude_seen=self.exclude_seen
        )

    def build(
        self, context: BuildContext, encoder: SequenceEncoder, task_data: TaskData
    ) -> CosineNextItemHead:
        return CosineNextItemHead(
            num_items=context.num_items,
            temperature=self.temperature,
            label_smoothing=self.label_smoothing,
            exclude_seen=self.exclude_seen == "history",
            ks=self.ks,
            ties=self.ties,
        )


@hookimpl
def clue_register_heads() -> list[type[HeadSpec]]:
    return [CosineNextItemSpec]
