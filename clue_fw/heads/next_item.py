"""Next-item recommendation: softmax cross-entropy over all items, full ranking.

Training examples come from each user's training part (leave-one-out): the
``n + 1`` item windows whose last item is the target. Evaluation ranks the
held-out item against every item in the catalogue (:mod:`clue_fw.metrics.ranking`).

``exclude_seen: history`` (RecBole, S3-Rec, ICLRec) scores every item of the user's
input history ``-inf`` before ranking, the held-out item included: a target that
repeats an earlier item is a miss. ``none`` ranks every item, which suits data where
users consume items again. No option treats the target specially.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from clue_fw.components import (
    BuildContext,
    DownstreamHead,
    HeadSpec,
    LossOutput,
    SequenceEncoder,
    TaskData,
)
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import leave_one_out
from clue_fw.data.examples import ExampleSet, Task
from clue_fw.data.windows import training_windows
from clue_fw.item_softmax import ItemLoss, ItemSoftmaxOptions
from clue_fw.memory import FLOAT_BYTES, INDEX_BYTES, Part, StepSizes, window_count
from clue_fw.metrics.ranking import TIES_DESCRIPTION, Cutoffs, Ties, finalize_sums, ranking_sums

History = Literal["recent", "all"]
ExcludeSeen = Literal["history", "none"]

#: Bytes per (user, item) while ranking: a float score, the boolean "scores higher than
#: the target" and the int64 copy that summing it makes (benchmarks/memory_estimate.py).
RANKING_BYTES_PER_SCORE = FLOAT_BYTES + 1 + INDEX_BYTES

#: Old boolean spellings of ``exclude_seen`` and their replacements.
DEPRECATED_EXCLUDE_SEEN: dict[bool, ExcludeSeen] = {True: "history", False: "none"}


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
    ) -> None:
        super().__init__()
        if exclude_seen not in ("history", "none"):
            raise ValueError(f"exclude_seen must be 'history' or 'none', got {exclude_seen!r}")
        self.num_items = num_items
        self.every_position = every_position
        self.exclude_seen = exclude_seen
        self.ks = list(ks)
        self.ties = ties
        self.output: nn.Linear | None = (
            None if tie_weights else nn.Linear(encoder.dim, num_items + 1, bias=False)
        )
        self.item_loss = item_loss or ItemLoss("full", num_items, None)

    def item_weight(self, encoder: SequenceEncoder) -> torch.Tensor:
        """``[num_items + 1, d]``: row ``i`` scores item ``i`` (row 0 is padding)."""
        if self.output is None:
            return encoder.item_embedding.weight[: self.num_items + 1]
        return self.output.weight

    def logits(self, encoder: SequenceEncoder, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., num_items + 1]`` scores of ids ``0..num_items``; padding scores -inf."""
        if self.output is None:
            weight = encoder.item_embedding.weight[: self.num_items + 1]
            scores = hidden @ weight.T
        else:
            scores = self.output(hidden)
        scores[..., 0] = float("-inf")
        return scores

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
        of ``seen`` (the user's input history, target included) scores ``-inf`` first."""
        scores = self.logits(encoder, encoder(batch["items"]).user)
        if self.exclude_seen == "history":
            scores[batch["seen_row"], batch["seen_value"]] = float("-inf")
        return ranking_sums(scores, batch["target"], self.ks, self.ties)

    def finalize(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        return finalize_sums(sums)


class NextItemSpec(HeadSpec, ItemSoftmaxOptions):
    """Next-item recommendation: softmax over all items, full-ranking MRR/Recall/NDCG@k."""

    kind: Literal["next_item"] = "next_item"
    loss_positions: Literal["all", "ur"] = Field(
        "all",
        description="'all': every position predicts its next item (SASRec-style) plus the "
        "[UR] output; 'ur': only the [UR] output predicts the target.",
    )
    tie_weights: bool = Field(
        True, description="Score items with the backbone's item embeddings (SASRec)."
    )
    exclude_seen: ExcludeSeen = Field(
        "history",
        description="'history': items of the user's input history score -inf before ranking, "
        "the held-out item included (a repeated target is a miss); 'none': rank every item "
        "(for data with repeat consumption). Old spellings: true = history, false = none.",
    )
    ties: Ties = Field("pessimistic", description=TIES_DESCRIPTION)
    ks: Cutoffs = Field([10], description="Cut-offs k for MRR@k, Recall@k, NDCG@k.")

    @field_validator("exclude_seen", mode="before")
    @classmethod
    def _renamed_exclude_seen(cls, value: Any) -> Any:
        """Accept the old boolean spelling with a warning that names the new one.

        A FutureWarning, Python's category for deprecations aimed at end users (recipe
        authors): unlike DeprecationWarning it is shown by default.
        """
        if isinstance(value, bool):
            new = DEPRECATED_EXCLUDE_SEEN[value]
            text = (
                f"finetune.head.exclude_seen: {str(value).lower()} is deprecated; write "
                f"exclude_seen: {new}."
            )
            if value:
                text += (
                    " Unlike the old option, 'history' also masks a held-out item that "
                    "repeats a history item (see docs/protocol.md)."
                )
            warnings.warn(text, FutureWarning, stacklevel=2)
            return new
        return value

    @property
    def monitor_default(self) -> str:
        return f"ndcg@{self.ks[0]}"

    def position_states_use(self, where: str) -> str | None:
        if self.loss_positions == "all":
            return (
                f"{where}.loss_positions: all trains every position's state to predict its "
                f"successor; set {where}.loss_positions: ur, which trains the user vector to "
                "predict the next item of every sliding window"
            )
        return None

    @property
    def probe_ready(self) -> str | None:
        if self.tie_weights:
            return (
                "finetune.head.tie_weights: true scores items with the encoder's item "
                "embeddings, which a frozen encoder cannot learn; set it to false for a probe"
            )
        return None

    def training_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A training window's inputs: every column but the target (the last)."""
        return batch["window"][:, :-1]

    def training_examples(
        self, history: str, num_users: int, num_interactions: int, max_len: int
    ) -> tuple[int, int]:
        """Windows of ``n`` inputs and their target (see :func:`next_item_windows`)."""
        stride = max_len if self.loss_positions == "all" else 1
        return window_count(history, stride, num_users, num_interactions, 2), max_len + 1

    def step_parts(self, sizes: StepSizes) -> list[Part]:
        """The loss's logits: every position (``batch x (n + 1)`` rows) or [UR] only."""
        every_position = self.loss_positions == "all"
        rows = sizes.batch * (sizes.max_len + 1) if every_position else sizes.batch
        fields = (sizes.batch_field,) + (
            ("finetune.head.loss_positions (ur)", "data.max_len") if every_position else ()
        )
        what = "next-item logits"
        return [self.logits_part(what, rows, sizes.num_items, fields, "finetune.head")]

    def eval_parts(self, sizes: StepSizes) -> list[Part]:
        """Full-ranking scores: a float score, the boolean comparison with the target's
        and the int64 copy its sum makes, per user and item (13 B)."""
        columns = sizes.num_items + 1
        return [
            Part(
                f"full-ranking scores ({sizes.batch:,} users x {columns:,} items x 13 B)",
                sizes.batch * columns * RANKING_BYTES_PER_SCORE,
                (sizes.batch_field,),
            )
        ]

    def make_task(self, task_data: TaskData, context: BuildContext, history: str) -> Task:
        every_position = self.loss_positions == "all"
        return next_item_task(task_data, context, history, every_position, self.exclude_seen)

    def build(
        self, context: BuildContext, encoder: SequenceEncoder, task_data: TaskData
    ) -> NextItemHead:
        return NextItemHead(
            encoder,
            num_items=context.num_items,
            tie_weights=self.tie_weights,
            every_position=self.loss_positions == "all",
            exclude_seen=self.exclude_seen,
            ks=self.ks,
            ties=self.ties,
            item_loss=self.item_loss(context.num_items, context.item_counts),
        )
