"""Gradient averaging: :class:`GradientSync` all-reduces the gradients in buckets, each
bucket as soon as the backward pass has made all of its gradients, and waits for them
before the optimiser step. Nothing in a step waits for the device on the host."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from clue_fw.errors import TrainingError

BUCKET_BYTES = 25 << 20
"""Gradients are averaged in buckets of about this many bytes (as DDP's default)."""


def _split_like(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    parts = torch.split(flat, [t.numel() for t in like])
    return [p.reshape(t.shape) for p, t in zip(parts, like, strict=True)]


@dataclass
class _Plan:
    """The buckets of one list of parameters: runs of consecutive parameters of one dtype
    and device, about ``bucket_bytes`` each, in the parameters' order."""

    parameters: list[nn.Parameter]
    buckets: list[list[int]]
    bucket_of: list[int]
    names: list[str] | None = None

    @classmethod
    def of(cls, parameters: list[nn.Parameter], bucket_bytes: int) -> _Plan:
        buckets: list[list[int]] = []
        size = 0
        for index, param in enumerate(parameters):
            nbytes = param.numel() * param.element_size()
            last = parameters[buckets[-1][0]] if buckets else None
            if (
                last is None
                or last.dtype != param.dtype
                or last.device != param.device
                or size + nbytes > bucket_bytes
            ):
                buckets.append([])
                size = 0
            buckets[-1].append(index)
            size += nbytes
        bucket_of = [number for number, members in enumerate(buckets) for _ in members]
        return cls(list(parameters), buckets, bucket_of)

    def name(self, index: int) -> str:
        if self.names is not None:
            return self.names[index]
        return f"#{index} (shape {list(self.parameters[index].shape)})"


@dataclass
class _Step:
    """One backward pass: the gradients that arrived, and the buckets sent so far. The
    buckets leave from the last to the first (the backward pass makes the gradients of
    the last parameters first); each process sends them in that one order."""

    arrived: list[bool]
    waiting: list[int]
    next: int
    flats: dict[int, torch.Tensor] = field(default_factory=dict)
    works: dict[int, Any] = field(default_factory=dict)
    late: list[int] = field(default_factory=list)

    @classmethod
    def start(cls, plan: _Plan) -> _Step:
        return cls(
            [False] * len(plan.parameters),
            [len(members) for members in plan.buckets],
            len(plan.buckets) - 1,
        )


class GradientSync:
    """Average the gradients of ``parameters`` across processes, in place.

    Gradients travel in flat buckets of about :data:`BUCKET_BYTES` (runs of consecutive
    parameters of one dtype), each all-reduced asynchronously, then divided by the number
    of processes. Within :meth:`overlap`, a bucket leaves as soon as the backward pass
    has accumulated every gradient in it (a post-accumulate-grad hook per parameter), so
    the all-reduce runs beside the rest of the backward pass; calling the instance after
    ``backward()`` sends what is left and waits for every bucket. The buckets, their
    contents and the order in which they are reduced are the same with and without
    :meth:`overlap`, so the averaged gradients are the same to the bit.

    A parameter without a gradient on a process counts as zero in the sum there. One
    without a gradient on this process is taken to have none on any process, and keeps
    none (so the optimiser skips it, as in one process): which parameters a step uses
    is a property of the model, the same on every process. Whether that held is checked
    on the device, from the had-a-gradient flags that ride along in the first bucket, and
    read once per epoch (:meth:`check`): a parameter that had a gradient on some
    processes but not on others raises :class:`~clue_fw.errors.TrainingError` at the end
    of the epoch, before anything of it is saved.

    The buckets of :meth:`overlap` travel in a process group of their own, made there
    (by every process at once): collectives are matched by their order within a group,
    and the global BatchNorm's all-reduces of the backward pass run between the buckets.
    """

    def __init__(self, world_size: int, bucket_bytes: int = BUCKET_BYTES) -> None:
        self.world_size = world_size
        self.bucket_bytes = bucket_bytes
        # The had-a-gradient flags, as device tensors, by pattern: made from a Python
        # list, a CUDA tensor is a copy that waits for the device (a host sync every
        # step); the pattern rarely changes, so each is made once.
        self._flags: dict[tuple[tuple[bool, ...], torch.dtype, torch.device], torch.Tensor] = {}
        self._plans: dict[tuple[int, ...], _Plan] = {}
        self._group: Any = None
        self._overlapping: _Plan | None = None
        self._step: _Step | None = None
        # Per parameter: had a gradient on some processes but not on all (device, bool).
        self._uneven: torch.Tensor | None = None
        self._uneven_plan: _Plan | None = None

    # ------------------------------------------------------------ one step

    def __call__(self, parameters: list[nn.Parameter]) -> None:
        """After ``backward()``: send the buckets not yet sent, wait for every bucket and
        give each parameter the average of its gradients."""
        if not parameters:
            return
        plan = self._plan(parameters)
        step = self._step if self._overlapping is plan else None
        self._step = None
        if step is None:
            step = _Step.start(plan)
        if step.late:
            raise TrainingError(self._late_message(plan, step.late[0]))
        had = [p.grad is not None for p in plan.parameters]
        while step.next >= 0:
            self._send(plan, step, step.next, had)
            step.next -= 1
        for number, members in enumerate(plan.buckets):
            work, flat = step.works[number], step.flats[number]
            work.wait()
            flat.div_(self.world_size)
            mine = [self._grad(plan.parameters[i]) for i in members]
            used = sum(g.numel() for g in mine)
            for grad, part in zip(mine, _split_like(flat[:used], mine), strict=True):
                grad.copy_(part)
        self._record_uneven(plan, step.flats[0][-len(plan.parameters) :])
        for param, present in zip(plan.parameters, had, strict=True):
            if not present:
                param.grad = None

    def _send(self, plan: _Plan, step: _Step, number: int, had: list[bool]) -> None:
        """All-reduce bucket ``number`` asynchronously (the first bucket carries ``had``)."""
        members = plan.buckets[number]
        grads = [self._grad(plan.parameters[i]) for i in members]
        parts = [g.reshape(-1) for g in grads]
        if number == 0:
            parts.append(self._flags_tensor(had, grads[0].dtype, grads[0].device))
        flat = torch.cat(parts)
        step.flats[number] = flat
        group = self._group if self._overlapping is plan else None
        step.works[number] = dist.all_reduce(flat, group=group, async_op=True)

    @staticmethod
    def _grad(param: nn.Parameter) -> torch.Tensor:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        if param.grad.is_sparse:
            raise RuntimeError(
                "Sparse gradients cannot be averaged across processes; build the "
                "embedding without sparse=True for data-parallel training."
            )
        return param.grad

    def _flags_tensor(
        self, had: list[bool], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        key = (tuple(had), dtype, device)
        if key not in self._flags:
            self._flags[key] = torch.tensor(had, dtype=dtype, device=device)
        return self._flags[key]

    def _plan(self, parameters: list[nn.Parameter]) -> _Plan:
        key = tuple(id(p) for p in parameters)
        if key not in self._plans:
            self._plans[key] = _Plan.of(parameters, self.bucket_bytes)
        return self._plans[key]

    # ------------------------------------------------------------ overlap

    @contextmanager
    def overlap(
        self, parameters: list[nn.Parameter], names: list[str] | None = None
    ) -> Iterator[None]:
        """While open (an epoch), every backward pass sends each bucket of
        ``parameters``' gradients as soon as they are all there; the training loop then
        calls this instance after ``backward()`` as without it. On a normal exit it runs
        :meth:`check` (``names`` name the parameters in its message)."""
        if self._group is None:
            self._group = dist.new_group()
        plan = self._plan(parameters)
        plan.names = names
        handles = [
            param.register_post_accumulate_grad_hook(self._arrival(plan, index))
            for index, param in enumerate(plan.parameters)
        ]
        self._overlapping, self._step = plan, None
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._overlapping, self._step = None, None
        self.check()

    def _arrival(self, plan: _Plan, index: int) -> Any:
        def arrived(param: torch.Tensor) -> None:
            if self._overlapping is not plan:
                return
            if self._step is None:
                self._step = _Step.start(plan)
            step = self._step
            bucket = plan.bucket_of[index]
            if step.arrived[index]:  # accumulated again in the same step
                if bucket > step.next:  # after its bucket left: that sum is stale
                    step.late.append(index)
                return
            step.arrived[index] = True
            step.waiting[bucket] -= 1
            # The buckets leave in one order, from the last: the first one (which carries
            # the flags) only when every gradient is there.
            while step.next >= 0 and step.waiting[step.next] == 0:
                self._send(plan, step, step.next, [True] * len(plan.parameters))
                step.next -= 1

        return arrived

    @staticmethod
    def _late_message(plan: _Plan, index: int) -> str:
        return (
            f"The gradient of parameter {plan.name(index)} grew after it had been sent to "
            "the other processes: it was accumulated twice in one optimiser step (two "
            "backward passes per step, or reentrant activation checkpointing). "
            "Data-parallel training sends each gradient as soon as the backward pass has "
            "made it; call backward() once per step, and checkpoint activations with "
            "torch.utils.checkpoint(..., use_reentrant=False)."
        )

    # ------------------------------------------------------------ the epoch's check

    def _record_uneven(self, plan: _Plan, flags: torch.Tensor) -> None:
        """Note, on the device, the parameters that had a gradient on some processes but
        not on all (their averaged flag is strictly between 0 and 1)."""
        uneven = (flags > 0) & (flags < 1)
        if self._uneven is None or self._uneven_plan is not plan:
            self._uneven, self._uneven_plan = uneven, plan
        else:
            self._uneven |= uneven

    def check(self) -> None:
        """Raise :class:`~clue_fw.errors.TrainingError` if, since the last check, a
        parameter had a gradient on some processes but not on all; one host read."""
        uneven, plan = self._uneven, self._uneven_plan
        self._uneven, self._uneven_plan = None, None
        if uneven is None or plan is None or not bool(uneven.any()):
            return
        found = [plan.name(i) for i in uneven.nonzero().flatten().tolist()]
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise TrainingError(
            f"Parameter{'s' * (len(found) > 1)} {shown} had a gradient on some processes "
            "but not on the others in a step of this epoch. A process takes a parameter "
            "without a gradient to have none anywhere and leaves it out of its optimiser "
            "step, so the processes' weights drifted apart; nothing of this epoch was "
            "saved. Data-parallel training needs every process to use the same parameters "
            "in a step: make the component use them in every step (a part that a batch "
            "may leave out can add 0 * parameter.sum() to its output), or freeze them "
            "(requires_grad=False)."
        )
