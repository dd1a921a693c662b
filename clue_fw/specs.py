"""The spec half of every component: what a recipe names, free of torch.

A component has two halves (:mod:`clue_fw.components`): a **spec**, the frozen pydantic
model a recipe is made of and a plugin registers, and a **module**, the
``torch.nn.Module`` the spec builds. This module holds the spec bases and what they
share (:class:`BuildContext`, :class:`TaskData`); it imports no torch, so that reading,
validating and listing recipes (``clue validate``, ``list``, ``show``, ``schema``) stays
fast. A spec imports its module's torch code inside ``build``, as the built-in specs do
(``clue_fw/backbones/specs.py`` ...).

Everything here is also importable from :mod:`clue_fw.components`, the plugin API.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import numpy as np
    import torch

    from clue_fw.components import (
        Augmentation,
        DownstreamHead,
        PretrainObjective,
        SequenceEncoder,
    )
    from clue_fw.data.csr import Csr
    from clue_fw.data.dataset import SequenceData
    from clue_fw.data.examples import Task
    from clue_fw.memory import Part, StepSizes

FAMILIES = ("backbone", "augmentation", "objective", "head")


@dataclass(frozen=True)
class BuildContext:
    """What the data tells every component at build time.

    Item ids are contiguous: ``0`` is padding, ``1..num_items`` are real items and
    ``num_items + 1`` is the ``[MASK]`` id used by masking views and objectives.

    ``item_ids`` and ``data_root`` let a component read side data keyed by the original
    item ids (item attributes, say) in ``build``: resolve its file with
    ``clue_fw.data.root.resolve_data_path(path, context.data_root, "<recipe key>")``.
    """

    num_items: int
    max_len: int
    #: ``[num_items + 1]`` training interaction counts of each item id (0 at padding), for
    #: components that sample items by popularity; ``None`` when the caller has none.
    item_counts: torch.Tensor | None = dataclasses.field(default=None, compare=False, repr=False)
    #: ``[num_items]`` original ids of the items: ``item_ids[i - 1]`` is item ``i``'s id in
    #: the data file (``SequenceData.item_ids``); ``None`` when the caller has no data.
    item_ids: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    #: The data root that recipe paths are relative to; ``None``: the default root
    #: (``$CLUE_DATA_DIR``, see :func:`clue_fw.data.root.data_root`).
    data_root: Path | None = dataclasses.field(default=None, compare=False)

    @property
    def vocab_size(self) -> int:
        """Rows of the item embedding table: padding, items and ``[MASK]``."""
        return self.num_items + 2

    @property
    def mask_id(self) -> int:
        return self.num_items + 1


class StrictModel(BaseModel):
    """Base of the recipe sections: frozen, unknown keys are errors, and no type coercion.

    ``strict``: a boolean is not an integer (``seed: true``), a string is not a number
    (``dim: "16"``) and a float is not an integer (``epochs: 2.0``); an integer is a
    float. Component specs are strict in the same way (:class:`ComponentSpec`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class ComponentSpec(BaseModel):
    """Base of every component spec: frozen, unknown keys are errors, no type coercion.

    ``strict``: ``dim: true``, ``dim: "16"`` and ``dim: 16.0`` are errors, not 1 and 16
    (an integer is still a valid float).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    family: ClassVar[str] = ""
    kind: str

    @classmethod
    def kind_name(cls) -> str:
        """The value of this spec's ``kind`` discriminator."""
        default = cls.model_fields["kind"].default
        if not isinstance(default, str) or not default:
            raise TypeError(
                f"{cls.__qualname__} must declare `kind: Literal['name'] = 'name'` "
                "so that recipes can select it."
            )
        return default

    @classmethod
    def summary(cls) -> str:
        """The first line of the spec's docstring, shown by ``clue list``."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


# --------------------------------------------------------------------------- backbones


class BackboneSpec(ComponentSpec):
    family: ClassVar[str] = "backbone"

    #: False for a backbone that encodes a whole sequence into its user vector only
    #: (Caser): its ``states`` are zeros, and a recipe whose objective or head reads
    #: per-position states (:meth:`ObjectiveSpec.position_states_use`,
    #: :meth:`HeadSpec.position_states_use`) is refused at validation.
    position_states: ClassVar[bool] = True

    def max_len_problem(self, max_len: int) -> str | None:
        """Why this backbone cannot encode sequences of ``data.max_len`` items, naming its
        recipe keys (``backbone.<field>``) and the fix; None when it can (the default)."""
        return None

    def activation_parts(self, sizes: StepSizes) -> list[Part]:
        """The largest activations one encoder pass over ``sizes.batch`` sequences keeps
        (for the memory guard, :mod:`clue_fw.memory`). Default: none counted."""
        return []

    @abstractmethod
    def build(self, context: BuildContext) -> SequenceEncoder: ...


# --------------------------------------------------------------------------- augmentations


class AugmentationSpec(ComponentSpec):
    family: ClassVar[str] = "augmentation"

    #: True for a spec that builds a :class:`PairingView`: the recipe requires it to be
    #: the first entry of its views list.
    pairs: ClassVar[bool] = False

    probability: float = Field(
        1.0, ge=0.0, le=1.0, description="Chance that this view changes a given sequence."
    )

    @abstractmethod
    def build(self, context: BuildContext) -> Augmentation: ...


# --------------------------------------------------------------------------- objectives


class ObjectiveSpec(ComponentSpec):
    family: ClassVar[str] = "objective"

    #: False for the ``none`` choice (CLUEZero): the pre-training stage is skipped.
    trains: ClassVar[bool] = True

    #: The smallest ``pretrain.train.batch_size`` the objective can train with (2 for
    #: objectives with BatchNorm); the recipe validator refuses a smaller one.
    min_batch_size: ClassVar[int] = 1

    @abstractmethod
    def build(self, context: BuildContext, encoder: SequenceEncoder) -> PretrainObjective: ...

    def position_states_use(self, where: str) -> str | None:
        """Why this objective reads the backbone's per-position states
        (``EncoderOutput.states``), naming its recipe key ``where``
        (``pretrain.objective``) and how to avoid it; None when it reads only user vectors
        (the default). A recipe pairing it with a backbone without per-position states
        (:attr:`BackboneSpec.position_states`) is refused with this reason."""
        return None

    def global_batchnorm(self) -> bool:
        """Whether the objective's BatchNorm layers take the statistics of the global batch
        in a data-parallel run (one all-reduce per layer and step), rather than each
        process's own rows. Default: True; CLUE's ``batchnorm: local`` says False."""
        return True

    def encoder_batch(self, batch: int) -> int:
        """How many sequences one step of ``batch`` sends through the encoder (CLUE: both
        views, ``2 x batch``), for the memory guard. Default: ``batch``."""
        return batch

    def step_parts(self, sizes: StepSizes) -> list[Part]:
        """The objective's own largest tensors in a step (e.g. logits over the catalogue),
        for the memory guard (:mod:`clue_fw.memory`). Default: none counted."""
        return []


# --------------------------------------------------------------------------- heads

UserVector = Literal["ur", "mean"]


@dataclass(frozen=True)
class TaskData:
    """A head's view of the data, prepared once per run by :meth:`HeadSpec.prepare`.

    ``sequences`` are the behaviour sequences the encoder reads (and pre-training
    trains on); a head that needs more (labels, a target domain) subclasses this.
    """

    sequences: SequenceData

    def stats(self) -> dict[str, Any]:
        """Counts worth logging and keeping in ``metrics.json`` (users, classes, pairs...)."""
        return {}

    def fingerprint(self) -> str:
        """sha256 of everything this task data holds: the raw bytes (with dtype and shape)
        of every tensor and numpy array, and every other value of its dataclass fields,
        walked recursively (``sequences``, a subclass's labels, splits or pairs).

        ``--resume`` compares it with the fingerprint the run started with, so a model is
        never evaluated on data other than its own. A subclass's fields are covered
        without any code of its own; override this only for state outside its fields.
        """
        digest = hashlib.sha256()
        _hash_value(digest, self, depth=0)
        return digest.hexdigest()


def _hash_value(digest: Any, value: Any, depth: int) -> None:
    """Feed ``value`` into ``digest``, tagged with its type so that no two values collide."""
    if depth > 32:
        raise ValueError("task data nests more than 32 levels deep")
    torch = sys.modules.get("torch")  # no tensor exists before torch is imported
    if torch is not None and isinstance(value, torch.Tensor):
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        if flat.numel():
            digest.update(memoryview(flat.view(torch.uint8).numpy()))
    elif (np := sys.modules.get("numpy")) is not None and isinstance(value, np.ndarray):
        digest.update(f"A{value.dtype.str}{value.shape}".encode())
        if value.dtype.hasobject:
            for item in value.reshape(-1).tolist():
                _hash_value(digest, item, depth + 1)
        else:
            digest.update(memoryview(np.ascontiguousarray(value)).cast("B"))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(f"D{type(value).__qualname__}{{".encode())
        for item in dataclasses.fields(value):
            digest.update(f"{item.name}=".encode())
            _hash_value(digest, getattr(value, item.name), depth + 1)
        digest.update(b"}")
    elif isinstance(value, dict):
        digest.update(f"M{len(value)}{{".encode())
        for key in sorted(value, key=repr):
            _hash_value(digest, key, depth + 1)
            _hash_value(digest, value[key], depth + 1)
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}[".encode())
        for item in value:
            _hash_value(digest, item, depth + 1)
        digest.update(b"]")
    else:  # str, int, float, bool, None and other plain values
        text = repr(value).encode("utf-8", "backslashreplace")
        digest.update(f"V{type(value).__name__}{len(text)}:".encode() + text)


class HeadSpec(ComponentSpec):
    family: ClassVar[str] = "head"

    def prepare(self, data: SequenceData, root: Path | None) -> TaskData:
        """Read the task's own files (``root``: the data root) and choose the sequences
        the encoder sees. Runs once, before anything is built. Default: ``data`` as is."""
        return TaskData(sequences=data)

    def pretrain_sequences(self, task_data: TaskData) -> Csr:
        """The sequences pre-training may read: nothing the task evaluates on.

        Default: each user's leave-one-out training part (drops the validation and
        test items, which next-item recommendation holds out).
        """
        from clue_fw.data.dataset import leave_one_out

        return leave_one_out(task_data.sequences).train

    @abstractmethod
    def make_task(self, task_data: TaskData, context: BuildContext, history: str) -> Task:
        """Build this task's train/valid/test examples (once, as tensors)."""

    @abstractmethod
    def build(
        self, context: BuildContext, encoder: SequenceEncoder, task_data: TaskData
    ) -> DownstreamHead: ...

    def training_examples(
        self, history: str, num_users: int, num_interactions: int, max_len: int
    ) -> tuple[int, int]:
        """About how many training examples of how many int64 ids each the task makes,
        for the memory guard. Default: one sequence of ``max_len`` per user."""
        return num_users, max_len

    def step_parts(self, sizes: StepSizes) -> list[Part]:
        """The head's own largest tensors in a training step (e.g. logits over the
        catalogue), for the memory guard (:mod:`clue_fw.memory`). Default: none counted."""
        return []

    def eval_parts(self, sizes: StepSizes) -> list[Part]:
        """The head's own largest tensors in an evaluation batch of ``sizes.batch`` users
        (e.g. full-ranking scores). Default: none counted."""
        return []

    @property
    def monitor_default(self) -> str:
        """The validation metric early stopping watches unless the recipe says otherwise."""
        return "ndcg@10"

    def history_problem(self, history: str) -> str | None:
        """Why this head cannot train with ``finetune.train.history``, or None."""
        return None

    def position_states_use(self, where: str) -> str | None:
        """Why this head reads the backbone's per-position states (``EncoderOutput.states``),
        naming its recipe key ``where`` (``finetune.head``) and how to avoid it; None when
        it reads only the user vector (the default). A recipe pairing it with a backbone
        without per-position states (:attr:`BackboneSpec.position_states`) is refused with
        this reason."""
        return None

    @property
    def probe_ready(self) -> str | None:
        """Why this head cannot train on a frozen encoder (``finetune.mode: probe``, and
        the probe phase of ``probe_then_full``), or None."""
        return None

    def training_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The left-padded item sequences ``[B, n]`` that a training batch of this head
        (a batch of :meth:`make_task`'s ``train`` examples) feeds the encoder, or None.

        ``finetune.auxiliary`` views these sequences for its contrastive terms
        (:mod:`clue_fw.training.auxiliary`). Default: None, the head does not say, and a
        recipe with auxiliary terms is refused (:attr:`auxiliary_problem`).
        """
        return None

    # --------------------------------------------------------- what inference needs

    def test_histories(self, task_data: TaskData) -> Csr:
        """The item history of every user of the data that the test split feeds the
        encoder: what ``clue embed`` reads for a run's own users
        (:meth:`~clue_fw.inference.LoadedRun.run_user_histories`). Default: every
        interaction but the held-out test item (leave-one-out train + valid)."""
        from clue_fw.data.dataset import leave_one_out

        return leave_one_out(task_data.sequences).train_valid

    @property
    def reads_user_vector(self) -> str:
        """The user vector the head reads, ``ur`` ([UR] output) or ``mean``: what
        ``clue embed`` returns and the pre-training monitor measures. Default: the spec's
        ``user_vector`` field where it has one, else ``ur``."""
        return str(getattr(self, "user_vector", "ur"))

    @property
    def ranking(self) -> Ranking | None:
        """How this head ranks items (its ``exclude_seen``, ``ks`` and ``ties``), or None
        for a head that ranks none (the default).

        A head that ranks builds a module with ``item_scores(encoder, items)``: ``[B,
        num_items + 1]`` scores of item ids ``0..num_items`` (column 0, padding, is never
        recommended) for left-padded histories ``items`` ``[B, n]``; and its task's
        evaluation examples are next-item ones (``target``, and ``seen`` under
        ``exclude_seen: history``: :func:`clue_fw.heads.next_item.next_item_task`).
        ``clue recommend`` and ``clue baseline`` then serve it, plugin or built-in.
        """
        return None

    def ranking_problem(self, stage: str) -> str | None:
        """Why a run of this head cannot rank items from its ``stage`` checkpoint
        (``finetune`` or ``pretrain``), or None when it can."""
        if self.ranking is None:
            return (
                f"its head is {self.kind!r}, which ranks no items (its user vectors come "
                "from embed_users)"
            )
        return None

    @property
    def auxiliary_problem(self) -> str | None:
        """Why this head cannot take ``finetune.auxiliary`` terms, or None. Default: a
        head that overrides :meth:`training_inputs` can."""
        if type(self).training_inputs is HeadSpec.training_inputs:
            return (
                f"head {self.kind!r} does not say which sequences its training batches feed "
                "the encoder (HeadSpec.training_inputs), so no auxiliary term can view them"
            )
        return None


@dataclass(frozen=True)
class Ranking:
    """How a head ranks items (:attr:`HeadSpec.ranking`): the protocol that ``clue
    recommend`` follows by default and ``clue baseline`` evaluates under."""

    #: ``history``: items of the user's history are never recommended; ``none``: every item.
    exclude_seen: str
    #: Cut-offs of the ``@k`` metrics.
    ks: list[int]
    #: ``pessimistic`` or ``average`` (:mod:`clue_fw.metrics.ranking`).
    ties: str


def describe_spec(spec: ComponentSpec) -> dict[str, Any]:
    """A JSON-able view of a spec, used in logs and checkpoints."""
    return spec.model_dump(mode="json")
