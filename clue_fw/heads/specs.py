"""The specs of the built-in downstream heads: what a recipe's ``finetune.head`` says.

Free of torch, so that reading a recipe does not import it. A head spec also prepares the
task (``prepare``, ``make_task``) and builds the head; those methods import the head's
module, where the task and its metrics are described: :mod:`clue_fw.heads.next_item`,
:mod:`~clue_fw.heads.user_level` (the base of the heads that predict from one vector per
user), :mod:`~clue_fw.heads.profile` and :mod:`~clue_fw.heads.cold_start`. Each of those
modules re-exports its spec.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from clue_fw.data.root import resolve_data_path
from clue_fw.data.seeds import GeneratorSeed
from clue_fw.errors import quote
from clue_fw.item_softmax_options import ItemSoftmaxOptions
from clue_fw.memory import FLOAT_BYTES, INDEX_BYTES, Part, StepSizes, window_count
from clue_fw.metrics.options import TIES_DESCRIPTION, Cutoffs, RankingScoreOptions, Ties
from clue_fw.specs import BuildContext, HeadSpec, Ranking, TaskData, UserVector

if TYPE_CHECKING:
    import torch

    from clue_fw.components import SequenceEncoder
    from clue_fw.data.csr import Csr
    from clue_fw.data.dataset import SequenceData
    from clue_fw.data.domains import Domains
    from clue_fw.data.examples import ExampleSet, Task
    from clue_fw.heads.cold_start import ColdStartData, ColdStartHead
    from clue_fw.heads.next_item import NextItemHead
    from clue_fw.heads.profile import ProfileData, ProfileHead


ExcludeSeen = Literal["history", "none"]


#: Bytes per (user, item) while ranking: a float score, the boolean "scores higher than
#: the target" and the int64 copy that summing it makes (benchmarks/memory_estimate.py).
RANKING_BYTES_PER_SCORE = FLOAT_BYTES + 1 + INDEX_BYTES


#: Old boolean spellings of ``exclude_seen`` and their replacements.
DEPRECATED_EXCLUDE_SEEN: dict[bool, ExcludeSeen] = {True: "history", False: "none"}


class NextItemSpec(HeadSpec, RankingScoreOptions, ItemSoftmaxOptions):
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

    @model_serializer(mode="wrap")
    def _omit_default_scoring(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No ``item_block`` or ``score_precision`` key while they hold their defaults: a
        recipe that does not set them keeps its recipe.yaml and recipe sha256."""
        data: dict[str, Any] = handler(self)
        return self.without_default_scoring(data)

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
        and the int64 copy its sum makes, per user and item (13 B); with ``item_block``,
        per user and item of one block."""
        columns = sizes.num_items + 1
        if self.item_block is not None and self.item_block < columns:
            return [
                Part(
                    f"full-ranking scores ({sizes.batch:,} users x {self.item_block:,} items "
                    "of a block x 13 B)",
                    sizes.batch * self.item_block * RANKING_BYTES_PER_SCORE,
                    (sizes.batch_field, "finetune.head.item_block"),
                )
            ]
        return [
            Part(
                f"full-ranking scores ({sizes.batch:,} users x {columns:,} items x 13 B)",
                sizes.batch * columns * RANKING_BYTES_PER_SCORE,
                (sizes.batch_field, "finetune.head.item_block (set one)"),
            )
        ]

    @property
    def ranking(self) -> Ranking:
        return Ranking(self.exclude_seen, list(self.ks), self.ties)

    def ranking_problem(self, stage: str) -> str | None:
        if stage == "pretrain" and not self.tie_weights:
            return (
                "its next_item head has its own output layer (tie_weights: false), which "
                "pre-training does not train; load stage 'finetune'"
            )
        return None

    def make_task(self, task_data: TaskData, context: BuildContext, history: str) -> Task:
        from clue_fw.heads.next_item import next_item_task

        every_position = self.loss_positions == "all"
        return next_item_task(task_data, context, history, every_position, self.exclude_seen)

    def build(
        self, context: BuildContext, encoder: SequenceEncoder, task_data: TaskData
    ) -> NextItemHead:
        from clue_fw.heads.next_item import NextItemHead

        return NextItemHead(
            encoder,
            num_items=context.num_items,
            tie_weights=self.tie_weights,
            every_position=self.loss_positions == "all",
            exclude_seen=self.exclude_seen,
            ks=self.ks,
            ties=self.ties,
            item_loss=self.item_loss(context.num_items, context.item_counts),
            item_block=self.item_block,
            score_precision=self.score_precision,
        )


class UserLevelHeadSpec(HeadSpec):
    """Base of heads that predict from one vector per user."""

    user_vector: UserVector = Field(
        "ur",
        description="The user vector: 'ur', the [UR] token output; 'mean', the mean of the "
        "item states.",
    )
    split_seed: GeneratorSeed = Field(
        0,
        description="Seed of the random 80/5/15 user split (fixed across run seeds), "
        "in 0 .. 2**32 - 1.",
    )
    label_fraction: float = Field(
        1.0,
        description="Share of the training users whose labels fine-tuning uses, in (0, 1]: "
        "the first ceil(fraction x n_train) of the split's seeded order, so smaller "
        "fractions are subsets of larger ones; validation and test users do not change.",
    )

    @field_validator("label_fraction")
    @classmethod
    def _fraction_in_range(cls, value: float) -> float:
        if not 0 < value <= 1:  # also refuses NaN
            raise ValueError(
                f"label_fraction must be in (0, 1] (the share of the training users that "
                f"keep their labels; 1 keeps all), got {value}"
            )
        return value

    @model_serializer(mode="wrap")
    def _omit_full_fraction(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave the default ``label_fraction: 1.0`` out of dumps, so a recipe that does not
        set it keeps its recipe.yaml, recipe sha256 and run identity from before the field
        existed (and such runs still resume)."""
        data: dict[str, Any] = handler(self)
        if self.label_fraction == 1.0:
            data.pop("label_fraction", None)
        return data

    def labelled_train(self, train: torch.Tensor) -> torch.Tensor:
        """The training users (or rows) whose labels this head trains on."""
        from clue_fw.heads.user_level import labelled_train

        return labelled_train(train, self.label_fraction)

    def pretrain_sequences(self, task_data: TaskData) -> Csr:
        """Every user's whole (source) sequence: the task's labels are not in it."""
        return task_data.sequences.sequences

    def test_histories(self, task_data: TaskData) -> Csr:
        """Every user's whole (source) sequence: a user-level task holds out no item."""
        return task_data.sequences.sequences

    @property
    def reads_user_vector(self) -> str:
        return self.user_vector

    def position_states_use(self, where: str) -> str | None:
        if self.user_vector == "mean":
            return (
                f"{where}.user_vector: mean averages the per-position states; set "
                f"{where}.user_vector: ur to read the backbone's user vector"
            )
        return None

    def history_problem(self, history: str) -> str | None:
        if history != "recent":
            return (
                f"head {self.kind!r} predicts from each user's n most recent items; use "
                "history: recent"
            )
        return None

    def training_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The user's (source) sequence that the user vector is read from."""
        return batch["items"]


class LabelSource(BaseModel):
    """Where the labels come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="Label file, relative to the data root (CLUE_DATA_DIR).")
    format: Literal["auto", "csv", "users_dat", "u_user"] = Field(
        "auto",
        description="csv (user,label), users_dat (ML-1M users.dat), u_user (ML-100K u.user); "
        "auto detects them.",
    )
    column: Literal["gender", "age", "occupation"] = Field(
        "gender", description="The label column of users.dat / u.user (ignored for csv)."
    )
    missing: Literal["error", "skip"] = Field(
        "error",
        description="Users of the data without a label: 'error', or 'skip' them (they still "
        "take part in pre-training).",
    )


class ProfileSpec(UserLevelHeadSpec):
    """User profiling: softmax classification of the user vector; acc, macro-F1."""

    kind: Literal["profile"] = "profile"
    labels: LabelSource = Field(description="The label file and column.")

    @classmethod
    def contract_example(cls, data: SequenceData, root: Path) -> dict[str, Any]:
        """Fields for clue_fw.testing: a ``user,label`` file of three classes under ``root``."""
        lines = ["user,label"] + [f"{u},c{int(u) % 3}" for u in data.user_ids]
        (root / "contract_labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return {"labels": {"path": "contract_labels.csv"}}

    @property
    def monitor_default(self) -> str:
        return "acc"

    def prepare(self, data: SequenceData, root: Path | None) -> ProfileData:
        """The label of every user (``labels.path`` under ``root``) and the user split."""
        from clue_fw.heads.profile import profile_task_data

        return profile_task_data(self, data, root)

    def make_task(self, task_data: TaskData, context: BuildContext, history: str) -> Task:
        from clue_fw.data.examples import ExampleSet, Task
        from clue_fw.heads.profile import ProfileData

        assert isinstance(task_data, ProfileData), "profile needs ProfileSpec.prepare's data"
        items = task_data.sequences.sequences.recent_windows(context.max_len)

        def examples(users: torch.Tensor) -> ExampleSet:
            return ExampleSet({"items": items[users], "label": task_data.labels[users]})

        train, valid, test = task_data.splits
        return Task(examples(self.labelled_train(train)), examples(valid), examples(test))

    def build(
        self, context: BuildContext, encoder: SequenceEncoder, task_data: TaskData
    ) -> ProfileHead:
        import torch

        from clue_fw.heads.profile import ProfileData, ProfileHead

        assert isinstance(task_data, ProfileData), "profile needs ProfileSpec.prepare's data"
        train = self.labelled_train(task_data.splits[0])  # the majority the head can know
        counts = torch.bincount(task_data.labels[train], minlength=len(task_data.classes))
        return ProfileHead(encoder, len(task_data.classes), int(counts.argmax()), self.user_vector)


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
        from clue_fw.data.domains import read_movie_genres, read_target_pairs, split_by_genres

        if isinstance(self.target, GenreDomains):
            path = resolve_data_path(self.target.movies, root, "finetune.head.target.movies")
            genres = read_movie_genres(path)
            return split_by_genres(
                data, genres, self.target.target_genres, self.target.mixed, str(path)
            )
        path = resolve_data_path(self.target.path, root, "finetune.head.target.path")
        return read_target_pairs(path, data, self.target.drop_unknown_users)

    def prepare(self, data: SequenceData, root: Path | None) -> ColdStartData:
        """The source domain the encoder reads and the capped target pairs of its users."""
        from clue_fw.heads.cold_start import cold_start_task_data

        return cold_start_task_data(self, data, root)

    def make_task(self, task_data: TaskData, context: BuildContext, history: str) -> Task:
        import torch

        from clue_fw.data.examples import ExampleSet, Task
        from clue_fw.heads.cold_start import ColdStartData
        from clue_fw.heads.user_level import split_rows

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
        from clue_fw.heads.cold_start import ColdStartData, ColdStartHead

        assert isinstance(task_data, ColdStartData), "cold_start needs its prepare()'s data"
        return ColdStartHead(
            encoder, task_data.num_target_items, self.user_vector, self.ks, self.ties
        )
