"""Next-item recommendation: softmax cross-entropy over all items, full ranking.

Training examples come from each user's training part (leave-one-out): the
``n + 1`` item windows whose last item is the target. Evaluation ranks the
held-out item against every item in the catalogue (:mod:`clue_fw.metrics.ranking`).

``exclude_seen: history`` (RecBole, S3-Rec, ICLRec) scores every item of the user's
input history ``-inf`` before ranking, the held-out item included: a target that
repeats an earlier item is a miss. ``none`` ranks every item, which suits data where
users consume items again. No option treats the target specially.

``item_block`` ranks a batch of users over blocks of items
(:mod:`clue_fw.metrics.blockwise`) instead of one ``[B, num_items + 1]`` score matrix;
``score_precision: bf16`` computes the scores from bf16-rounded vectors
(:mod:`clue_fw.metrics.scoring`). Both apply to evaluation and to ``clue recommend``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from clue_fw.components import (
    BuildContext,
    DownstreamHead,
    LossOutput,
    SequenceEncoder,
    TaskData,
)
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import leave_one_out
from clue_fw.data.examples import ExampleSet, Task
from clue_fw.data.windows import training_windows
from clue_fw.heads.specs import DEPRECATED_EXCLUDE_SEEN as DEPRECATED_EXCLUDE_SEEN
from clue_fw.heads.specs import RANKING_BYTES_PER_SCORE as RANKING_BYTES_PER_SCORE
from clue_fw.heads.specs import ExcludeSeen as ExcludeSeen
from clue_fw.heads.specs import NextItemSpec as NextItemSpec
from clue_fw.item_softmax import ItemLoss
from clue_fw.metrics.blockwise import ExcludedPairs, blockwise_ranking_sums, check_item_block
from clue_fw.metrics.options import ScorePrecision
from clue_fw.metrics.ranking import Ties, finalize_sums, ranking_sums
from clue_fw.metrics.scoring import ItemScorer, check_precision

History = Literal["recent", "all"]


def next_item_windows(train: Csr, width: int, history: str, every_position: bool) -> torch.Tensor:
    """``[E, width]`` training windows (inputs then the target in the last column).

    ``recent``: one window per user, its ``width`` most recent training items.
    ``all``: windows that make every training interaction (but each user's first) a
    target once: stride ``width - 1`` when every position predicts its successor,
    every prefix (stride 1) when only the [UR] output predicts.
    """
    stride = width - 1 if every_position else 1
    # at least an input and a target
    return training_windows(train, width, history, stride=stride, min_items=2)


def next_item_task(
    task_data: TaskData,
    context: BuildContext,
    history: str,
    every_position: bool,
    exclude_seen: ExcludeSeen,
) -> Task:
    """The leave-one-out next-item task: training windows (:func:`next_item_windows`),
    and validation and test sets of each user's most recent ``max_len`` inputs, the
    held-out target and, under ``exclude_seen: history``, the items to exclude. Heads
    that rank the next item differently (plugins too) can share it."""
    data = task_data.sequences
    split = leave_one_out(data)
    n = context.max_len
    windows = next_item_windows(split.train, n + 1, history, every_position)
    users = torch.arange(data.num_users)

    def evaluation(history_csr: Csr, target: torch.Tensor) -> ExampleSet:
        ragged = {"seen": ("user", history_csr)} if exclude_seen == "history" else {}
        tensors = {"items": history_csr.recent_windows(n), "target": target, "user": users}
        return ExampleSet(tensors, ragged)

    return Task(
        train=ExampleSet({"window": windows}),
        valid=evaluation(split.train, split.valid_target),
        test=evaluation(split.train_valid, split.test_target),
    )


class NextItemHead(DownstreamHead):
    def __init__(
        self,
        encoder: SequenceEncoder,
        num_items: int,
        tie_weights: bool,
        every_position: bool,
        exclude_seen: ExcludeSeen,
        ks: list[int],
        ties: Ties = "pessimistic",
        item_loss: ItemLoss | None = None,
        item_block: int | None = None,
        score_precision: ScorePrecision = "float32",
    ) -> None:
        super().__init__()
        if exclude_seen not in ("history", "none"):
            raise ValueError(f"exclude_seen must be 'history' or 'none', got {exclude_seen!r}")
        self.num_items = num_items
        self.every_position = every_position
        self.exclude_seen = exclude_seen
        self.ks = list(ks)
        self.ties = ties
        #: Items scored at once when ranking (None: all of them); see the module docstring.
        self.item_block = None if item_block is None else check_item_block(item_block)
        self.score_precision = check_precision(score_precision)
        self.output: nn.Linear | None = (
            None if tie_weights else nn.Linear(encoder.dim, num_items + 1, bias=False)
        )
        self.item_loss = item_loss or ItemLoss("full", num_items, None)

    def item_weight(self, encoder: SequenceEncoder) -> torch.Tensor:
        """``[num_items + 1, d]``: row ``i`` scores item ``i`` (row 0 is padding)."""
        if self.output is None:
            return encoder.item_embedding.weight[: self.num_items + 1]
        return self.output.weight

    def item_scorer(self, encoder: SequenceEncoder, hidden: torch.Tensor) -> ItemScorer:
        """The scores of every item id for the ``[B, d]`` user vectors ``hidden``, any block
        of ids at a time, in :attr:`score_precision` (padding scores -inf)."""
        return ItemScorer(hidden, self.item_weight(encoder), 0, self.score_precision)

    def logits(self, encoder: SequenceEncoder, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., num_items + 1]`` scores of ids ``0..num_items``; padding scores -inf."""
        if self.score_precision != "float32":
            return self.item_scorer(encoder, hidden).scores(slice(None))
        if self.output is None:
            weight = encoder.item_embedding.weight[: self.num_items + 1]
            scores = hidden @ weight.T
        else:
            scores = self.output(hidden)
        scores[..., 0] = float("-inf")
        return scores

    def item_scores(self, encoder: SequenceEncoder, items: torch.Tensor) -> torch.Tensor:
        """``[B, num_items + 1]`` scores of every item id for the histories ``items``
        ``[B, n]`` (what ``clue recommend`` ranks; :attr:`HeadSpec.ranking`)."""
        return self.logits(encoder, encoder(items).user)

    def loss(self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]) -> LossOutput:
        window = batch["window"]
        inputs, final_target = window[:, :-1], window[:, -1]
        encoded = encoder(inputs)
        weight = self.item_weight(encoder)
        if self.every_position:
            # Every real input position predicts its successor, and [UR] the final target;
            # padding positions have target 0, which the loss ignores (no boolean
            # indexing: its size would need a host sync).
            hidden = torch.cat([encoded.states, encoded.user.unsqueeze(1)], dim=1)
            targets = torch.cat([window[:, 1:], final_target.unsqueeze(1)], dim=1)
            input_is_real = torch.cat(
                [inputs != 0, torch.ones_like(final_target.unsqueeze(1), dtype=torch.bool)], dim=1
            )
            targets = targets.masked_fill(~input_is_real, 0)
            loss = self.item_loss(hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1), weight)
        else:
            loss = self.item_loss(encoded.user, final_target, weight)
        return LossOutput(loss, {})

    @torch.no_grad()
    def metric_sums(
        self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Ranking sums of ``batch["target"]``; under ``exclude_seen: history`` every item
        of ``seen`` (the user's input history, target included) scores ``-inf`` first.
        With :attr:`item_block` below the catalogue, over blocks of items (the same sums)."""
        hidden = encoder(batch["items"]).user
        if self.item_block is not None and self.item_block < self.num_items + 1:
            excluded = None
            if self.exclude_seen == "history":
                excluded = ExcludedPairs.of(
                    batch["seen_row"], batch["seen_value"], self.num_items + 1
                )
            scorer = self.item_scorer(encoder, hidden)
            return blockwise_ranking_sums(
                scorer, batch["target"], self.ks, self.ties, self.item_block, excluded
            )
        scores = self.logits(encoder, hidden)
        if self.exclude_seen == "history":
            scores[batch["seen_row"], batch["seen_value"]] = float("-inf")
        return ranking_sums(scores, batch["target"], self.ks, self.ties)

    def finalize(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        return finalize_sums(sums)
