"""Cold-start cross-domain recommendation: recommend target-domain items to cold users.

The encoder reads each user's **source**-domain sequence; a linear softmax over all
**target** items scores the next target interaction (CLUE Sec. V-A-1, after PeterRec).
Each kept (user, target item) pair is one instance. Users (not pairs) are split
80/5/15, so a test user is never seen in training. Evaluation ranks the instance's
item among all target items (:mod:`clue_fw.metrics.ranking`, with ``ties``). No item
is excluded, and there is no ``exclude_seen``: the input history is the user's source
sequence, whose items are another catalogue, and the user has no target-domain
history (a user's other target items are held-out instances of the same split, not
input, so they stay rankable, as in PeterRec's evaluation). Metrics: MRR@k, Recall@k,
NDCG@k.

Where the two domains come from (``target.format``):

* ``genres``: one MovieLens dataset cut by disjoint genre sets of ``movies.dat``
  (:func:`clue_fw.data.domains.split_by_genres`); the recipe's ``data`` is the whole
  dataset and the source sequences are what is left after the target movies are
  taken out;
* ``pairs``: the recipe's ``data`` is the source domain and a file of ``user item``
  lines the target domain (:func:`clue_fw.data.domains.read_target_pairs`).

At most ``max_per_user`` (g) target interactions are kept per user
(:func:`clue_fw.data.domains.cold_targets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from clue_fw.components import (
    BuildContext,
    DownstreamHead,
    LossOutput,
    SequenceEncoder,
    TaskData,
    user_vectors,
)
from clue_fw.data.dataset import SequenceData
from clue_fw.data.domains import (
    Domains,
    cold_targets,
    read_movie_genres,
    read_target_pairs,
    split_by_genres,
)
from clue_fw.data.examples import ExampleSet, Task
from clue_fw.data.root import resolve_data_path
from clue_fw.errors import DataError, quote
from clue_fw.heads.user_level import UserLevelHeadSpec, split_rows
from clue_fw.metrics.ranking import TIES_DESCRIPTION, Cutoffs, Ties, finalize_sums, ranking_sums

DEFAULT_TARGET_GENRES = (
    "Animation",
    "Children's",
    "Documentary",
    "Fantasy",
    "Film-Noir",
    "Musical",
    "Western",
)


class GenreDomains(BaseModel):
    """Source and target domains cut from one MovieLens dataset by genre."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["genres"] = "genres"
    movies: str = Field(
        "ml-1m/movies.dat", description="movies.dat, relative to the data root (CLUE_DATA_DIR)."
    )
    target_genres: list[str] = Field(
        list(DEFAULT_TARGET_GENRES),
        min_length=1,
        description="Genres of the target domain; every other genre is a source genre.",
    )

    @field_validator("target_genres")
    @classmethod
    def _distinct_genres(cls, value: list[str]) -> list[str]:
        for index, genre in enumerate(value):
            if genre in value[:index]:
                raise ValueError(f"genre {quote(genre)} is listed more than once")
        return value

    mixed: Literal["drop", "target"] = Field(
        "drop",
        description="A movie with genres on both sides: 'drop' it from both domains, or put "
        "it in the 'target' domain.",
    )


class TargetPairs(BaseModel):
    """A target-domain file (``user item`` per line, in time order); ``data`` is the source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["pairs"] = "pairs"
    path: str = Field(description="Target file, relative to the data root (CLUE_DATA_DIR).")
    drop_unknown_users: bool = Field(
        False, description="Skip target users without source behaviour instead of failing."
    )


TargetSource = Annotated[GenreDomains | TargetPairs, Field(discriminator="format")]


MAX_PER_USER = 1_000_000
"""Largest ``max_per_user`` (g) a recipe may set; ``null`` keeps every interaction."""


@dataclass(frozen=True)
class ColdStartData(TaskData):
    """Source sequences plus the kept (user row, target item) pairs.

    Target items are ``0..num_target_items - 1`` (the classes of the softmax).
    """

    pair_users: torch.Tensor  # [P]
    pair_items: torch.Tensor  # [P]
    num_target_items: int
    counts: dict[str, int]

    def stats(self) -> dict[str, Any]:
        return dict(self.counts)


class ColdStartHead(DownstreamHead):
    def __init__(
        self,
        encoder: SequenceEncoder,
        num_target_items: int,
        user_vector: str,
        ks: list[int],
        ties: Ties = "pessimistic",
    ) -> None:
        super().__init__()
        self.user_vector = user_vector
        self.ks = list(ks)
        self.ties = ties
        self.output = nn.Linear(encoder.dim, num_target_items)

    def logits(self, encoder: SequenceEncoder, items: torch.Tensor) -> torch.Tensor:
        return self.output(user_vectors(encoder(items), items, self.user_vector))

    def loss(self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]) -> LossOutput:
        loss = F.cross_entropy(self.logits(encoder, batch["items"]), batch["target"])
        return LossOutput(loss, {})

    @torch.no_grad()
    def metric_sums(
        self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        scores = self.logits(encoder, batch["items"])
        return ranking_sums(scores, batch["target"], self.ks, self.ties)

    def finalize(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        return finalize_sums(sums)


class ColdStartSpec(UserLevelHeadSpec):
    """Cold-start cross-domain recommendation: source sequence -> softmax over target items."""

    kind: Literal["cold_start"] = "cold_start"
    target: TargetSource = Field(
        GenreDomains(), description="Where the target domain comes from; `format` selects."
    )
    max_per_user: int | None = Field(
        3,
        gt=0,
        le=MAX_PER_USER,
        description="g: keep at most this many target interactions per user (null: all; at "
        "most 1,000,000).",
    )
    per_user: Literal["uniform", "first"] = Field(
        "uniform",
        description="'uniform': keep each user's first k target interactions, k drawn "
        "uniformly from 1..g; 'first': keep the first g.",
    )
    ks: Cutoffs = Field([10], description="Cut-offs k for MRR@k, Recall@k, NDCG@k.")
    ties: Ties = Field("pessimistic", description=TIES_DESCRIPTION)

    @classmethod
    def contract_example(cls, data: SequenceData, root: Path) -> dict[str, Any]:
        """Fields for clue_fw.testing: a ``user item`` target file (7 items) under ``root``."""
        lines = [f"{u} {100 + (int(u) + k) % 7}" for u in data.user_ids for k in range(3)]
        (root / "contract_target.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return {"target": {"format": "pairs", "path": "contract_target.txt"}}

    @property
    def monitor_default(self) -> str:
        return f"mrr@{self.ks[0]}"

    def domains(self, data: SequenceData, root: Path | None) -> Domains:
        """The source and target domains, before the per-user cap."""
        if isinstance(self.target, GenreDomains):
            path = resolve_data_path(self.target.movies, root, "finetune.head.target.movies")
            genres = read_movie_genres(path)
            return split_by_genres(
                data, genres, self.target.target_genres, self.target.mixed, str(path)
            )
        path = resolve_data_path(self.target.path, root, "finetune.head.target.path")
        return read_target_pairs(path, data, self.target.drop_unknown_users)

    def prepare(self, data: SequenceData, root: Path | None) -> ColdStartData:
        domains = self.domains(data, root)
        users, items = cold_targets(
            domains.target, self.max_per_user, self.per_user, self.split_seed
        )
        if domains.num_target_items < 2:
            raise DataError(
                f"The target domain has {domains.num_target_items} item(s); ranking needs at "
                "least 2 target items, or every metric is trivially 1. Choose target genres "
                "or a target file with more items."
            )
        if torch.unique(users).numel() < 3:
            raise DataError(
                f"Only {torch.unique(users).numel()} users have target interactions; a "
                "cold-start task needs at least 3 (train, valid, test)."
            )
        counts = {
            "source users": domains.source.num_users,
            "source items": domains.source.num_items,
            "source interactions": domains.source.num_interactions,
            "target items": domains.num_target_items,
            "target users": int(torch.unique(users).numel()),
            "target pairs": int(users.numel()),
            **domains.counts,
        }
        return ColdStartData(
            sequences=domains.source,
            pair_users=users,
            pair_items=items - 1,
            num_target_items=domains.num_target_items,
            counts=counts,
        )

    def make_task(self, task_data: TaskData, context: BuildContext, history: str) -> Task:
        assert isinstance(task_data, ColdStartData), "cold_start needs its prepare()'s data"
        items = task_data.sequences.sequences.recent_windows(context.max_len)
        train, valid, test = split_rows(torch.unique(task_data.pair_users), self.split_seed)

        def examples(users: torch.Tensor) -> ExampleSet:
            chosen = torch.isin(task_data.pair_users, users)
            pair_users = task_data.pair_users[chosen]
            return ExampleSet({"items": items[pair_users], "target": task_data.pair_items[chosen]})

        # label_fraction keeps the pairs of the first training users (all their pairs)
        return Task(examples(self.labelled_train(train)), examples(valid), examples(test))

    def build(
        self, context: BuildContext, encoder: SequenceEncoder, task_data: TaskData
    ) -> ColdStartHead:
        assert isinstance(task_data, ColdStartData), "cold_start needs its prepare()'s data"
        return ColdStartHead(
            encoder, task_data.num_target_items, self.user_vector, self.ks, self.ties
        )
