"""Memory guard: refuse a recipe whose largest tensors plainly cannot fit the device.

:func:`check_memory` runs before anything is trained and before the run directory
exists. From sizes known up front (catalogue size N, ``max_len`` n, batch sizes, the
number of parameters) it estimates the peak memory of each phase of a run:

* **parameters**: weights, gradients and the two Adam moments, 16 bytes per trainable
  parameter. They are counted exactly by building the model on PyTorch's ``meta``
  device, which allocates nothing (the item embedding table, N x d, dominates).
* **data windows** (below).

Every other part comes from the components themselves, through the hooks of
:mod:`clue_fw.memory` (so a plugin component is counted like a built-in one):

* **fine-tuning step**: the head's own tensors. ``next_item`` reports its logits,
  ``rows x (N + 1) x 4`` bytes times 2 for the logits and their gradient (``rows`` is
  ``batch_size x (n + 1)`` with ``loss_positions: all``, ``batch_size`` with ``ur``), or
  with ``loss: sampled`` ``rows x (1 + in-batch rows + negatives)``. On an H200 the
  full-softmax estimate of a whole step was 0.90 of the measured peak for a
  183,338-item catalogue (``benchmarks/memory_estimate.py``).
  With ``finetune.auxiliary``, each term's objective adds its own tensors and encoder
  batch (``clue``: ``2 x batch_size`` more sequences through the encoder).
* **pre-training step**: the objective's own tensors (``masked_item``: logits of its
  masked positions, ``rho x batch_size x n`` rows, at least ``batch_size``) and the
  encoder batch it needs (``clue`` encodes both views: ``2 x batch_size``).
* **evaluation**: the head's (``next_item``: the full-ranking scores of an evaluation
  batch, ``eval.batch_size x (N + 1) x 13`` bytes: float scores, a boolean comparison
  and the int64 copy its sum makes).
* **activations**: the backbone's. ``transformer``: on CPU, where attention keeps its
  probabilities for backward, ``batch x heads x (n + 1)^2 x 4`` bytes per block;
  elsewhere one float mask ``batch x (n + 1)^2 x 4`` bytes. ``cnn``: every causal
  convolution pads its input on the left with ``(kernel_size - 1) x dilation``
  positions and keeps the padded input for backward, ``batch x d x (n + 1 +
  (kernel_size - 1) x dilation) x 4`` bytes per convolution.
* **data windows**: the int64 windows a stage trains on (one per user with
  ``history: recent``; with ``all`` about ``(interactions - 3 x users) / stride``) and
  the evaluation inputs (``users x n`` per split) stay on the device while it trains.
  Cutting them (``Csr.gather_windows``) briefly holds five int64 tensors and a mask
  of the windows' size in host memory: a phase of its own.

Synthetic data (``data.format: synthetic``) is generated before all of this, so
:func:`clue_fw.memory.check_synthetic_memory` refuses a generator that cannot fit before
it runs (the data loader calls it there, below the guard). The memory available, the
phases, their sizes and their wording are :mod:`clue_fw.memory`'s; this module adds up
a recipe's phases and checks them.
A run that runs out of memory anyway (the estimate is a lower bound) stops with a
:class:`ResourceError` that names the estimate: :func:`translate_memory_errors`.

Batches never exceed the number of examples (users, or interactions with
``history: all``). Everything smaller (other encoder activations, allocator slack,
the CUDA context) is left out. A recipe is refused only
when the estimate exceeds the memory available: free memory on a CUDA device
(``torch.cuda.mem_get_info``); on CPU ``MemAvailable`` from ``/proc/meminfo``, capped
by a cgroup (container) limit, or the total RAM where neither is readable. Other
devices are not checked. ``CLUE_SKIP_MEMORY_CHECK=1``
turns the check off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

import clue_fw.memory as memory
from clue_fw._deprecated import moved_names
from clue_fw.components import BuildContext, TaskData
from clue_fw.errors import ResourceError
from clue_fw.memory import (
    INDEX_BYTES,
    SKIP_ENV,
    Estimate,
    Part,
    Phase,
    StepSizes,
    check_skipped,
    describe_parts,
    size,
    window_count,
)
from clue_fw.recipe import pretrains
from clue_fw.training import auxiliary as aux

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import RecipeLike

ADAM_BYTES_PER_PARAMETER = 16  # weight, gradient, exp_avg, exp_avg_sq (float32)
# Csr.gather_windows holds, per window cell, the positions, the clamped flat index, the
# gathered ids, a zero tensor and the result (int64), and the validity mask (bool).
WINDOW_BUILD_BYTES_PER_CELL = 5 * INDEX_BYTES + 1


# --------------------------------------------------------------------------- estimate


def _trainable_parameters(build: Callable[[], nn.Module]) -> int | None:
    """Trainable parameters of the module ``build`` makes on the meta device (no memory)."""
    try:
        with torch.device("meta"):
            module = build()
    except Exception:  # a plugin that cannot build on meta is simply not counted
        return None
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _parameter_part(
    stage: str, count: int | None, recipe: RecipeLike, context: BuildContext
) -> Part:
    if count is None:  # fall back to the item embedding table, the dominant term
        dim = getattr(recipe.backbone, "dim", None)
        count = context.vocab_size * dim if isinstance(dim, int) else 0
    return Part(
        f"{stage} parameters with gradients and Adam state ({count:,} x 16 B)",
        count * ADAM_BYTES_PER_PARAMETER,
        ("backbone.dim", "data.min_item_interactions (a smaller catalogue)"),
    )


def _window_fields(stage: str, history: str) -> tuple[str, ...]:
    return ((f"{stage}.train.history (recent)",) if history == "all" else ()) + ("data.max_len",)


def _windows_part(what: str, windows: int, width: int, fields: tuple[str, ...]) -> Part:
    return Part(f"{what} ({windows:,} x {width} x 8 B)", windows * width * INDEX_BYTES, fields)


def _cutting_part(windows: int, width: int, fields: tuple[str, ...]) -> Part:
    return Part(
        f"cutting {windows:,} windows of {width} ({WINDOW_BUILD_BYTES_PER_CELL} B a position)",
        windows * width * WINDOW_BUILD_BYTES_PER_CELL,
        fields,
    )


def _batch(batch_size: int, history: str, num_users: int, num_interactions: int) -> int:
    """A training batch never holds more examples than the stage has."""
    return max(1, min(batch_size, num_users if history == "recent" else num_interactions))


def estimate_phases(
    recipe: RecipeLike,
    context: BuildContext,
    num_users: int,
    num_interactions: int,
    device: torch.device,
    task_data: TaskData | None = None,
) -> list[Phase]:
    """The estimated peak of every phase of ``recipe``'s run (see the module docstring).

    Parameters are counted here; every other part comes from the components' own
    estimates (:mod:`clue_fw.memory`), so plugin components are counted the same way.
    """
    n = context.max_len
    backbone = recipe.backbone
    phases: list[Phase] = []

    def sizes(batch: int, field: str, training: bool = True) -> StepSizes:
        return StepSizes(context.num_items, n, batch, device, field, training)

    def encoder() -> nn.Module:
        return backbone.build(context)  # type: ignore[no-any-return]

    pretrain = recipe.pretrain
    if pretrains(recipe):
        train = pretrain.train
        objective = pretrain.objective
        field = "pretrain.train.batch_size"
        batch = _batch(train.batch_size, train.history, num_users, num_interactions)
        count = _trainable_parameters(
            lambda: nn.ModuleDict(
                {"encoder": (e := encoder()), "objective": objective.build(context, e)}
            )
        )
        parts = [_parameter_part("pre-training", count, recipe, context)]
        parts += objective.step_parts(sizes(batch, field))
        parts += backbone.activation_parts(sizes(objective.encoder_batch(batch), field))
        windows = window_count(train.history, n, num_users, num_interactions, min_items=1)
        fields = _window_fields("pretrain", train.history)
        parts.append(_windows_part("pre-training windows", windows, n, fields))
        phases.append(Phase("a pre-training step", tuple(parts)))
        cutting = _cutting_part(windows, n, fields)
        phases.append(Phase("cutting the pre-training windows", (cutting,), host=True))

    finetune = recipe.finetune
    head = finetune.head
    train = finetune.train
    field = "finetune.train.batch_size"
    terms = finetune.auxiliary  # auxiliary terms: their modules, tensors and encoder passes

    def finetune_module() -> nn.Module:
        parts = {"encoder": (e := encoder()), "head": head.build(context, e, task_data)}
        if terms:
            parts["auxiliary"] = aux.AuxiliaryTerms.from_specs(terms, context, e)
        return nn.ModuleDict(parts)

    count = _trainable_parameters(finetune_module)
    params = _parameter_part("fine-tuning", count, recipe, context)
    batch = _batch(train.batch_size, train.history, num_users, num_interactions)
    parts = [params, *head.step_parts(sizes(batch, field))]
    parts += aux.step_parts(terms, sizes(batch, field))
    parts += backbone.activation_parts(sizes(batch + aux.encoder_rows(terms, batch), field))
    windows, width = head.training_examples(train.history, num_users, num_interactions, n)
    fields = _window_fields("finetune", train.history)
    examples = (
        _windows_part("fine-tuning windows", windows, width, fields),
        Part(
            f"evaluation inputs (2 splits x {num_users:,} users x {n} x 8 B)",
            2 * num_users * n * INDEX_BYTES,
            ("data.max_len",),
        ),
    )
    parts += examples
    phases.append(Phase("a fine-tuning step", tuple(parts)))
    cutting = _cutting_part(windows, width, fields)
    phases.append(Phase("cutting the fine-tuning windows", (cutting,), host=True))

    eval_batch = max(1, min(finetune.eval.batch_size, num_users))
    eval_sizes = sizes(eval_batch, "finetune.eval.batch_size", training=False)
    parts = [params, *examples, *backbone.activation_parts(eval_sizes)]
    parts += head.eval_parts(eval_sizes)
    phases.append(Phase("an evaluation batch", tuple(parts)))
    return phases


# --------------------------------------------------------------------------- check


def check_memory(
    recipe: RecipeLike,
    data: Any,
    context: BuildContext,
    device: torch.device,
    task_data: TaskData | None = None,
) -> Estimate | None:
    """Raise :class:`ResourceError` when ``recipe`` plainly cannot fit on ``device``.

    Returns the estimate it checked (for :func:`translate_memory_errors`), or None when
    the check is switched off (``CLUE_SKIP_MEMORY_CHECK=1``). Phases that run in host
    memory (cutting the data windows) are checked against the CPU's memory.
    """
    if check_skipped():
        return None
    phases = estimate_phases(
        recipe, context, data.num_users, data.num_interactions, device, task_data
    )
    estimate = Estimate(tuple(phases), device)
    cpu = torch.device("cpu")
    for where, members in (
        (device, [p for p in phases if not p.host or device.type == "cpu"]),
        (cpu, [p for p in phases if p.host and device.type != "cpu"]),
    ):
        available = memory.available_memory(where) if members else None
        if available is None:
            continue
        free, source = available
        worst = max(members, key=lambda phase: phase.total)
        if worst.total <= free:
            continue
        raise ResourceError(
            f"Refusing to start: {recipe.name or 'this recipe'} needs at least "
            f"{size(worst.total)} of {where} memory for {worst.name}, but only {size(free)} "
            f"is {source}. Estimate: {describe_parts(worst)}. Lower "
            f"{', '.join(estimate.fields(worst))}, or use a device with more memory. The "
            f"estimate counts only the largest tensors; set {SKIP_ENV}=1 to start anyway."
        )
    return estimate


# --------------------------------------------------------------------------- out of memory

_ALLOCATION_FAILURES = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    # A tensor whose byte size does not fit in 64 bits (e.g. a huge data.max_len).
    "storage size calculation overflowed",
)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (CUDA, MPS or CPU) rather than a bug."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(m in text for m in _ALLOCATION_FAILURES)


@contextmanager
def translate_memory_errors(
    estimate: Estimate | None, device: torch.device, doing: str = "the run"
) -> Iterator[None]:
    """Turn running out of memory inside the block into a :class:`ResourceError`.

    The message names the device, what was running (``doing``), PyTorch's own first
    line, and the estimate made before the run (:func:`check_memory`'s return value)
    with the recipe fields that shrink it.
    """
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if estimate is not None:
            known = (
                f"Before it started, clue_fw estimated {estimate.describe()}; the estimate "
                "counts only the largest tensors, so the real peak is higher. Lower "
                f"{', '.join(estimate.fields())}"
            )
        else:
            known = (
                f"No estimate was made ({SKIP_ENV} is set or the device's memory is unknown). "
                "Lower the batch sizes (finetune.train.batch_size, finetune.eval.batch_size, "
                "pretrain.train.batch_size), backbone.dim or data.max_len"
            )
        raise ResourceError(
            f"Out of {device} memory during {doing} ({type(exc).__name__}: {detail}). "
            f"{known}, or use a device with more memory. No metrics.json was written; the "
            "last finished epoch's checkpoint is kept."
        ) from None


# Moved to clue_fw.memory, where the data loader reads them without importing the guard.
__getattr__ = moved_names(
    __name__,
    {
        name: "clue_fw.memory"
        for name in (
            "available_memory",
            "check_synthetic_memory",
            "synthetic_parts",
            "_cgroup_headroom",
            "_meminfo_available",
        )
    },
)
