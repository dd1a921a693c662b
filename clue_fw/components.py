"""Base classes for the four component families.

A component has two halves:

* a **spec**: a frozen pydantic model with a ``kind`` discriminator and typed,
  documented fields. Recipes are made of specs; plugins register spec classes.
* a **module**: the ``torch.nn.Module`` the spec builds.

Specs never read or write any global configuration: everything a module needs
is in its spec fields or in the :class:`BuildContext` the framework passes in.
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

if TYPE_CHECKING:
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


class EncoderOutput(NamedTuple):
    """What every backbone returns.

    ``states``: ``[B, n, d]`` per-position outputs aligned with the input items
    (padding positions are zeros; all zeros for a backbone whose spec says
    ``position_states = False``). ``user``: ``[B, d]`` user representation.
    """

    states: torch.Tensor
    user: torch.Tensor


class SequenceEncoder(nn.Module, ABC):
    """A backbone: encodes a left-padded item batch ``[B, n]`` (0 = padding)."""

    num_items: int
    dim: int
    max_len: int
    item_embedding: nn.Embedding

    @abstractmethod
    def forward(self, items: torch.Tensor) -> EncoderOutput: ...

    def __call__(self, items: torch.Tensor, *args: Any, **kwargs: Any) -> EncoderOutput:
        """``forward``, then a check of its output against the backbone contract.

        The check compares shapes only (no device sync); a backbone that breaks the
        contract, or a plugin's backbone whose ``forward`` raises, is a
        :class:`~clue_fw.errors.PluginError` naming its class and plugin.
        """
        from clue_fw.registry import plugin_call

        with plugin_call(self, "forward"):
            output = super().__call__(items, *args, **kwargs)
        problem = encoder_output_problem(self, items, output)
        if problem:
            from clue_fw.errors import PluginError
            from clue_fw.registry import describe_component

            raise PluginError(
                f"Backbone {describe_component(self)} broke the backbone contract: {problem}. "
                "A backbone returns EncoderOutput(states [B, n, d], user [B, d]) for items "
                "[B, n], with d its `dim`."
            )
        return output  # type: ignore[no-any-return]

    def init_vocabulary(self, num_items: int, max_len: int, dim: int) -> None:
        """Set the contract attributes; create ``item_embedding`` and the [UR] ``user_token``.

        Rows: padding (0, kept at zero), items ``1..num_items`` and ``[MASK]``.
        Subclasses choose the initialisation of both parameters.
        """
        self.num_items = num_items
        self.max_len = max_len
        self.dim = dim
        self.item_embedding = nn.Embedding(num_items + 2, dim, padding_idx=0)
        self.user_token = nn.Parameter(torch.zeros(dim))

    def check_length(self, items: torch.Tensor) -> None:
        """Refuse a batch ``[B, n]`` longer than ``max_len`` (positions would not fit)."""
        if items.shape[1] > self.max_len:
            raise ValueError(f"sequence length {items.shape[1]} exceeds max_len {self.max_len}")

    @staticmethod
    def real_positions(items: torch.Tensor) -> torch.Tensor:
        """``[B, n + 1]`` bool: real items, then ``True`` for the [UR] slot appended last."""
        user_slot = items.new_ones(items.shape[0], 1, dtype=torch.bool)
        return torch.cat([items != 0, user_slot], dim=1)

    def append_user_token(self, embedded: torch.Tensor) -> torch.Tensor:
        """``[B, n, d]`` item embeddings -> ``[B, n + 1, d]`` with [UR] in the last slot."""
        batch = embedded.shape[0]
        return torch.cat([embedded, self.user_token.expand(batch, 1, self.dim)], dim=1)


def encoder_output_problem(encoder: nn.Module, items: torch.Tensor, output: Any) -> str | None:
    """What is wrong with ``output`` as the encoding of ``items`` ``[B, n]``, or None."""
    if not isinstance(output, EncoderOutput):
        return f"it returned {type(output).__name__}, not EncoderOutput(states, user)"
    states, user = output
    if not isinstance(states, torch.Tensor) or not isinstance(user, torch.Tensor):
        kinds = f"{type(states).__name__} and {type(user).__name__}"
        return f"its states and user vector are {kinds}, not tensors"
    batch, length = items.shape[0], items.shape[-1]
    dim = getattr(encoder, "dim", None)
    width = dim if isinstance(dim, int) else (states.shape[-1] if states.dim() == 3 else None)
    if states.dim() != 3 or tuple(states.shape) != (batch, length, width):
        return (
            f"for items of shape {list(items.shape)} its states have shape "
            f"{list(states.shape)}, not [{batch}, {length}, {width}]"
        )
    if tuple(user.shape) != (batch, width):
        return (
            f"for items of shape {list(items.shape)} its user vector has shape "
            f"{list(user.shape)}, not [{batch}, {width}]"
        )
    return None


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


class Augmentation(nn.Module, ABC):
    """A view: ``[B, n]`` item batch and a ``torch.Generator`` to a new ``[B, n]`` batch.

    Views work on whole padded batches with tensor operations; padding (id 0)
    must never change. The [UR] slot is added by the backbone, after views run.
    """

    @abstractmethod
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


class PairingView(Augmentation):
    """A view that makes the two branches of a positive pair together (the ``split``
    view gives each a disjoint part of the sequence). It comes first in a views list;
    :class:`~clue_fw.augmentations.compose.ViewPipeline` applies the views after it to
    each branch on its own."""

    @abstractmethod
    def split(
        self, items: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two branches ``(first, second)`` of ``items`` ``[B, n]``, each ``[B, n]``."""


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


class LossOutput(NamedTuple):
    """A scalar loss plus named, detached terms for logging."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]


class PretrainObjective(nn.Module, ABC):
    """A self-supervised objective over an encoder. Its own parameters (projector,
    predictor, ...) are dropped after pre-training."""

    @abstractmethod
    def forward(
        self,
        encoder: SequenceEncoder,
        items: torch.Tensor,
        view: Augmentation,
        generator: torch.Generator,
    ) -> LossOutput:
        """Loss on a batch ``items`` ``[B, n]``. ``view`` (all recipe views composed)
        makes one augmented copy per call; ``generator`` drives every random choice."""


def view_pair(
    view: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    items: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two branches of a positive pair of ``items``: ``view.pair`` where the view
    has one (a :class:`~clue_fw.augmentations.compose.ViewPipeline`, which knows pairing
    views), else two independent calls of ``view``."""
    pair = getattr(view, "pair", None)
    if callable(pair):
        return pair(items, generator)  # type: ignore[no-any-return]
    return view(items, generator), view(items, generator)


def two_view_users(
    encoder: SequenceEncoder,
    items: torch.Tensor,
    view: Augmentation,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The user vectors ``[B, d]`` of two views of ``items``, the positive pair of a
    contrastive objective. Each view draws its own randomness; both go through the
    encoder in one batched pass, in which every row still gets its own dropout mask."""
    first, second = view_pair(view, items, generator)
    users = encoder(torch.cat([first, second])).user
    return users[: items.shape[0]], users[items.shape[0] :]


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


def user_vectors(output: EncoderOutput, items: torch.Tensor, how: str = "ur") -> torch.Tensor:
    """``[B, d]`` user vectors from an encoder output.

    ``ur``: the backbone's user vector (the [UR] token output). ``mean``: the mean of
    the per-position states over the real (non-padding) positions of ``items``; a row
    without items gives zeros (a head that reads it says so in ``position_states_use``).
    """
    if how == "ur":
        return output.user
    if how != "mean":
        raise ValueError(f"user vector must be 'ur' or 'mean', got {how!r}")
    real = (items != 0).unsqueeze(-1).to(output.states.dtype)
    count = real.sum(dim=1).clamp(min=1.0)
    return (output.states * real).sum(dim=1) / count


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
    if isinstance(value, torch.Tensor):
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        if flat.numel():
            digest.update(memoryview(flat.view(torch.uint8).numpy()))
    elif isinstance(value, np.ndarray):
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


class DownstreamHead(nn.Module, ABC):
    """A downstream task on top of an encoder: its loss and its metrics.

    Metrics are computed in two steps so that they stay exact when batches (or,
    later, ranks) are combined: :meth:`metric_sums` returns additive statistics
    for one batch, :meth:`finalize` turns their totals into metric values.
    """

    @abstractmethod
    def loss(self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]) -> LossOutput: ...

    @abstractmethod
    def metric_sums(
        self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def finalize(self, sums: dict[str, torch.Tensor]) -> dict[str, float]: ...


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
        """Why this head cannot train on a frozen encoder (``finetune.mode: probe``), or None."""
        return None

    def training_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The left-padded item sequences ``[B, n]`` that a training batch of this head
        (a batch of :meth:`make_task`'s ``train`` examples) feeds the encoder, or None.

        ``finetune.auxiliary`` views these sequences for its contrastive terms
        (:mod:`clue_fw.training.auxiliary`). Default: None, the head does not say, and a
        recipe with auxiliary terms is refused (:attr:`auxiliary_problem`).
        """
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


def describe_spec(spec: ComponentSpec) -> dict[str, Any]:
    """A JSON-able view of a spec, used in logs and checkpoints."""
    return spec.model_dump(mode="json")
