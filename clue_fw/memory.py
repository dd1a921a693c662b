"""What a component tells the memory guard about its own largest tensors.

Every component spec can report the tensors it adds to a training step or an
evaluation batch (:class:`Part`: what it is, its size in bytes, and the recipe fields
that shrink it) through hooks on the spec base classes in :mod:`clue_fw.components`:

* ``BackboneSpec.activation_parts(sizes)``: activations kept for backward (attention
  weights, padded convolution inputs);
* ``ObjectiveSpec.encoder_batch(batch)`` (how many sequences one step encodes: CLUE
  encodes two views) and ``ObjectiveSpec.step_parts(sizes)`` (its own logits);
* ``HeadSpec.step_parts(sizes)``, ``HeadSpec.eval_parts(sizes)`` and
  ``HeadSpec.training_examples(...)`` (how many training examples of what width).

:mod:`clue_fw.resources` (the memory guard) adds them up; a plugin component is
counted the same way as a built-in one. Every hook has a default that adds nothing, so a
plugin that does not implement them is still counted by its parameters.

The accounting itself lives here too, below the guard: a :class:`Phase` of counted
parts, an :class:`Estimate` of phases and its wording, the memory
:func:`available_memory` on a device, and the check of synthetic data
(:func:`check_synthetic_memory`) that the data loader runs before it generates anything.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clue_fw.errors import ResourceError

if TYPE_CHECKING:  # torch only where memory is measured: component specs import this module
    import torch

SKIP_ENV = "CLUE_SKIP_MEMORY_CHECK"
FLOAT_BYTES = 4
INDEX_BYTES = 8  # an int64 item id


@dataclass(frozen=True)
class Part:
    """One counted tensor group: what it is, its size and the recipe fields that shrink it."""

    what: str
    bytes: int
    lower: tuple[str, ...]


@dataclass(frozen=True)
class StepSizes:
    """The sizes a component's estimate depends on, for one step or evaluation batch.

    ``batch``: sequences in the step (the encoder's batch for backbones);
    ``batch_field``: the recipe field that sets it (named in advice); ``training``:
    a training step (activations kept for backward) or an evaluation batch.
    """

    num_items: int
    max_len: int
    batch: int
    device: torch.device
    batch_field: str
    training: bool = True


def logits_part(
    what: str, rows: int, columns: int, fields: tuple[str, ...], unit: str = "items"
) -> Part:
    """A ``[rows, columns]`` float logit matrix and its gradient (``unit`` names a column)."""
    return Part(
        f"{what} ({rows:,} rows x {columns:,} {unit} x 4 B x 2 for the logits and their gradient)",
        rows * columns * FLOAT_BYTES * 2,
        fields,
    )


def window_count(
    history: str, stride: int, num_users: int, num_interactions: int, min_items: int
) -> int:
    """About how many windows a stage cuts from the leave-one-out training sequences.

    ``recent``: one per user. ``all``: a user with ``L`` items (``L - 2`` after leave-one-
    out) gives ``floor((L - 2 - min_items) / stride) + 1`` windows, at least
    ``(L - 1 - min_items) / stride``; summed, ``(interactions - users (1 + min_items)) /
    stride``.
    """
    if history == "recent":
        return max(1, num_users)
    spare = max(num_interactions - num_users * (1 + min_items), 0)
    return max(1, math.ceil(spare / max(stride, 1)))


@dataclass(frozen=True)
class Phase:
    """A moment of the run whose memory peaks: a training step or an evaluation batch.

    ``host``: the phase uses host (CPU) memory whatever the run's device (cutting the
    data windows happens on the CPU before they move to the device).
    """

    name: str
    parts: tuple[Part, ...]
    host: bool = False

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
        import torch

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


# --------------------------------------------------------------------------- estimates


def describe_parts(phase: Phase) -> str:
    """The parts of ``phase``, largest first: ``'what (formula): 1.0 GiB; ...'``."""
    parts = sorted(phase.parts, key=lambda part: part.bytes, reverse=True)
    return "; ".join(f"{part.what}: {size(part.bytes)}" for part in parts)


def check_skipped() -> bool:
    """Whether ``CLUE_SKIP_MEMORY_CHECK`` switches the memory checks off."""
    return os.environ.get(SKIP_ENV, "").strip() not in ("", "0", "false", "False")


@dataclass(frozen=True)
class Estimate:
    """The estimated phases of a run on ``device``: what the guard checked
    (:func:`clue_fw.resources.check_memory`)."""

    phases: tuple[Phase, ...]
    device: torch.device

    @property
    def worst(self) -> Phase:
        return max(self.phases, key=lambda phase: phase.total)

    def describe(self, phase: Phase | None = None) -> str:
        """``'at least 1.2 GiB for a fine-tuning step (next-item logits ...: 1.0 GiB; ...)'``."""
        phase = phase or self.worst
        return f"at least {size(phase.total)} for {phase.name} ({describe_parts(phase)})"

    def fields(self, phase: Phase | None = None) -> list[str]:
        """The recipe fields that shrink the largest part of ``phase`` (default: the worst)."""
        parts = sorted((phase or self.worst).parts, key=lambda part: part.bytes, reverse=True)
        return list(dict.fromkeys(field for part in parts[:1] for field in part.lower))


# Python ints in a list: an 8-byte slot each (ids above 256 also need an object).
_LIST_SLOT_BYTES = 8
_CLUSTER_BYTES = 256  # the Python and tensor objects made for each item cluster


def synthetic_parts(spec: Any) -> list[Part]:
    """What generating ``spec``'s synthetic data holds at once (a lower bound)."""
    users, length, items = spec.num_users, spec.max_length, spec.num_items
    clusters = min(spec.num_clusters, items)
    return [
        Part(
            f"generated sequences ({users:,} users x {length:,} positions x (8 B tensor + "
            f"{_LIST_SLOT_BYTES} B list slot))",
            users * length * (INDEX_BYTES + _LIST_SLOT_BYTES),
            ("data.num_users", "data.max_length"),
        ),
        Part(
            f"item cycles ({items:,} items x 3 x 8 B)",
            items * 3 * INDEX_BYTES,
            ("data.num_items",),
        ),
        Part(
            f"item clusters ({clusters:,} x {_CLUSTER_BYTES} B)",
            clusters * _CLUSTER_BYTES,
            ("data.num_clusters",),
        ),
    ]


def check_synthetic_memory(spec: Any) -> None:
    """Refuse synthetic data (``data.format: synthetic``) that cannot fit in RAM.

    Runs before anything is generated; ``CLUE_SKIP_MEMORY_CHECK=1`` turns it off.
    """
    if check_skipped():
        return
    import torch

    available = available_memory(torch.device("cpu"))
    if available is None:
        return
    free, source = available
    phase = Phase("generating the synthetic data", tuple(synthetic_parts(spec)), host=True)
    if phase.total <= free:
        return
    estimate = Estimate((phase,), torch.device("cpu"))
    raise ResourceError(
        f"Refusing to generate synthetic data: it needs {estimate.describe()}, but only "
        f"{size(free)} is {source}. Lower {', '.join(estimate.fields())}. The estimate "
        f"counts only the largest objects; set {SKIP_ENV}=1 to generate anyway."
    )
