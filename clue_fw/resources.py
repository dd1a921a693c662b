"""Memory guard: refuse a recipe whose largest tensors plainly cannot fit the device.

:func:`check_memory` runs before anything is trained and before the run directory
exists. From sizes known up front (catalogue size N, ``max_len`` n, batch sizes, the
number of parameters) it estimates the peak memory of each phase of a run:

* **parameters**: weights, gradients and the two Adam moments, 16 bytes per trainable
  parameter. They are counted exactly by building the model on PyTorch's ``meta``
  device, which allocates nothing (the item embedding table, N x d, dominates).
* **fine-tuning step** (``next_item`` head): the logits over the whole catalogue,
  ``rows x (N + 1) x 4`` bytes, times 2 for the logits and their gradient. ``rows``
  is ``batch_size x (n + 1)`` with ``loss_positions: all`` and ``batch_size`` with
  ``ur``. On an H200 the estimate of a whole step was 0.90 of the measured peak for a
  183,338-item catalogue (``benchmarks/memory_estimate.py``).
* **pre-training step**: ``masked_item`` has the same logits for its masked positions
  (``rho x batch_size x n`` rows, at least ``batch_size``); ``clue`` encodes both views,
  so its encoder batch is ``2 x batch_size``.
* **evaluation**: the full-ranking scores of an evaluation batch,
  ``eval.batch_size x (N + 1) x 13`` bytes (float scores, a boolean comparison and the
  int64 copy its sum makes).
* **attention** (``transformer``): on CPU, where attention keeps its probabilities for
  backward, ``batch x heads x (n + 1)^2 x 4`` bytes per block; elsewhere one float mask
  ``batch x (n + 1)^2 x 4`` bytes.

Batches never exceed the number of examples (users, or interactions with
``history: all``). Everything smaller (other encoder activations, data tensors,
allocator slack, the CUDA context) is left out. A recipe is refused only
when the estimate exceeds the memory available: free memory on a CUDA device
(``torch.cuda.mem_get_info``); on CPU ``MemAvailable`` from ``/proc/meminfo``, capped
by a cgroup (container) limit, or the total RAM where neither is readable. Other
devices are not checked. ``CLUE_SKIP_MEMORY_CHECK=1``
turns the check off.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clue_fw.components import BuildContext, TaskData
from clue_fw.errors import ResourceError

SKIP_ENV = "CLUE_SKIP_MEMORY_CHECK"
FLOAT_BYTES = 4
ADAM_BYTES_PER_PARAMETER = 16  # weight, gradient, exp_avg, exp_avg_sq (float32)
# A float score, the boolean "scores higher than the target" and the int64 copy that
# summing a boolean tensor makes (measured: benchmarks/memory_estimate.py).
RANKING_BYTES_PER_SCORE = FLOAT_BYTES + 1 + 8


@dataclass(frozen=True)
class Part:
    """One counted tensor group: what it is, its size and the recipe fields that shrink it."""

    what: str
    bytes: int
    lower: tuple[str, ...]


@dataclass(frozen=True)
class Phase:
    """A moment of the run whose memory peaks: a training step or an evaluation batch."""

    name: str
    parts: tuple[Part, ...]

    @property
    def total(self) -> int:
        return sum(part.bytes for part in self.parts)


def size(n_bytes: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n_bytes) < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- estimate


def _trainable_parameters(build: Callable[[], nn.Module]) -> int | None:
    """Trainable parameters of the module ``build`` makes on the meta device (no memory)."""
    try:
        with torch.device("meta"):
            module = build()
    except Exception:  # a plugin that cannot build on meta is simply not counted
        return None
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _parameter_part(stage: str, count: int | None, recipe: Any, context: BuildContext) -> Part:
    if count is None:  # fall back to the item embedding table, the dominant term
        dim = getattr(recipe.backbone, "dim", None)
        count = context.vocab_size * dim if isinstance(dim, int) else 0
    return Part(
        f"{stage} parameters with gradients and Adam state ({count:,} x 16 B)",
        count * ADAM_BYTES_PER_PARAMETER,
        ("backbone.dim", "data.min_item_interactions (a smaller catalogue)"),
    )


def _attention_part(
    recipe: Any, context: BuildContext, batch: int, device: torch.device, field: str
) -> Part | None:
    heads, blocks = getattr(recipe.backbone, "heads", None), getattr(recipe.backbone, "blocks", 1)
    if not isinstance(heads, int) or not isinstance(blocks, int):
        return None
    length = context.max_len + 1
    if device.type == "cpu":
        count = batch * heads * length**2 * blocks
        what = f"attention weights ({batch:,} x {heads} heads x {length}^2 x {blocks} blocks x 4 B)"
    else:
        count, what = batch * length**2, f"attention mask ({batch:,} x {length}^2 x 4 B)"
    return Part(what, count * FLOAT_BYTES, (field, "data.max_len"))


def _logits_part(what: str, rows: int, context: BuildContext, fields: tuple[str, ...]) -> Part:
    columns = context.num_items + 1
    return Part(
        f"{what} ({rows:,} rows x {columns:,} items x 4 B x 2 for the logits and their gradient)",
        rows * columns * FLOAT_BYTES * 2,
        fields,
    )


def _batch(batch_size: int, history: str, num_users: int, num_interactions: int) -> int:
    """A training batch never holds more examples than the stage has."""
    return max(1, min(batch_size, num_users if history == "recent" else num_interactions))


def estimate_phases(
    recipe: Any,
    context: BuildContext,
    num_users: int,
    num_interactions: int,
    device: torch.device,
    task_data: TaskData | None = None,
) -> list[Phase]:
    """The estimated peak of every phase of ``recipe``'s run (see the module docstring)."""
    n = context.max_len
    phases: list[Phase] = []

    def encoder() -> nn.Module:
        return recipe.backbone.build(context)  # type: ignore[no-any-return]

    pretrain = recipe.pretrain
    if pretrain is not None and pretrain.objective.trains:
        train = pretrain.train
        batch = _batch(train.batch_size, train.history, num_users, num_interactions)
        count = _trainable_parameters(
            lambda: nn.ModuleDict(
                {"encoder": (e := encoder()), "objective": pretrain.objective.build(context, e)}
            )
        )
        parts = [_parameter_part("pre-training", count, recipe, context)]
        objective = pretrain.objective
        encoder_batch = 2 * batch if objective.kind == "clue" else batch
        if objective.kind == "masked_item":
            rows = max(batch, math.ceil(objective.rho * batch * n))
            parts.append(
                _logits_part("masked-item logits", rows, context, ("pretrain.train.batch_size",))
            )
        attention = _attention_part(
            recipe, context, encoder_batch, device, "pretrain.train.batch_size"
        )
        parts += [attention] if attention else []
        phases.append(Phase("a pre-training step", tuple(parts)))

    finetune = recipe.finetune
    head = finetune.head
    train = finetune.train
    count = _trainable_parameters(
        lambda: nn.ModuleDict(
            {"encoder": (e := encoder()), "head": head.build(context, e, task_data)}
        )
    )
    params = _parameter_part("fine-tuning", count, recipe, context)
    batch = _batch(train.batch_size, train.history, num_users, num_interactions)
    parts = [params]
    if head.kind == "next_item":
        every_position = getattr(head, "loss_positions", "all") == "all"
        rows = batch * (n + 1) if every_position else batch
        fields = ("finetune.train.batch_size",) + (
            ("finetune.head.loss_positions (ur)", "data.max_len") if every_position else ()
        )
        parts.append(_logits_part("next-item logits", rows, context, fields))
    attention = _attention_part(recipe, context, batch, device, "finetune.train.batch_size")
    parts += [attention] if attention else []
    phases.append(Phase("a fine-tuning step", tuple(parts)))

    eval_batch = max(1, min(finetune.eval.batch_size, num_users))
    parts = [params]
    if head.kind == "next_item":
        columns = context.num_items + 1
        parts.append(
            Part(
                f"full-ranking scores ({eval_batch:,} users x {columns:,} items x 13 B)",
                eval_batch * columns * RANKING_BYTES_PER_SCORE,
                ("finetune.eval.batch_size",),
            )
        )
    phases.append(Phase("an evaluation batch", tuple(parts)))
    return phases


# --------------------------------------------------------------------------- available


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) is not a number


def _cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Memory left under this process's cgroup limit (v2, then v1), if there is one."""
    for limit_file, usage_file in (
        (root / "memory.max", root / "memory.current"),
        (root / "memory" / "memory.limit_in_bytes", root / "memory" / "memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            return max(limit - usage, 0)
    return None


def available_memory(device: torch.device) -> tuple[int, str] | None:
    """Bytes available on ``device`` and where the number comes from; None: unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free on {torch.cuda.get_device_name(device)}"
    if device.type != "cpu":
        return None
    candidates = []
    meminfo = _meminfo_available()
    if meminfo is not None:
        candidates.append((meminfo, "available RAM"))
    cgroup = _cgroup_headroom()
    if cgroup is not None:
        candidates.append((cgroup, "left under the cgroup memory limit"))
    if candidates:
        return min(candidates)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "total RAM"
    except (ValueError, OSError, AttributeError):
        return None


# --------------------------------------------------------------------------- check


def check_memory(
    recipe: Any,
    data: Any,
    context: BuildContext,
    device: torch.device,
    task_data: TaskData | None = None,
) -> None:
    """Raise :class:`ResourceError` when ``recipe`` plainly cannot fit on ``device``."""
    if os.environ.get(SKIP_ENV, "").strip() not in ("", "0", "false", "False"):
        return
    available = available_memory(device)
    if available is None:
        return
    free, source = available
    phases = estimate_phases(
        recipe, context, data.num_users, data.num_interactions, device, task_data
    )
    worst = max(phases, key=lambda phase: phase.total)
    if worst.total <= free:
        return
    parts = sorted(worst.parts, key=lambda part: part.bytes, reverse=True)
    described = "; ".join(f"{part.what}: {size(part.bytes)}" for part in parts)
    fields = list(dict.fromkeys(field for part in parts[:1] for field in part.lower))
    raise ResourceError(
        f"Refusing to start: {recipe.name or 'this recipe'} needs at least {size(worst.total)} "
        f"of {device} memory for {worst.name}, but only {size(free)} is {source}. "
        f"Estimate: {described}. Lower {', '.join(fields)}, or use a device with more "
        f"memory. The estimate counts only the largest tensors; set {SKIP_ENV}=1 to start "
        "anyway."
    )
