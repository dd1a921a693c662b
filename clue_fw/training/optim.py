"""The optimiser and learning-rate schedule of a training stage, from its ``train`` settings.

>>> import torch
>>> from clue_fw.training.specs import TrainSpec
>>> train = TrainSpec(epochs=10, optimizer="adamw", weight_decay=0.05, schedule="cosine",
...                   warmup_epochs=1, min_lr=1e-5)
>>> optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(3))], train)
>>> schedule = lr_schedule(train, steps_per_epoch=100)
>>> schedule(0), schedule(99), schedule(1000)  # warm-up start, warm-up end, past the end
(1e-05, 0.001, 1e-05)

Parameter groups (:class:`ParameterGroup`) train at their own multiple of the stage's
rate, e.g. a pre-trained encoder slower than a new head (``finetune.encoder_lr_scale``):

>>> encoder, head = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
>>> groups = [ParameterGroup([encoder], lr_factor=0.1), ParameterGroup([head])]
>>> optimizer = build_optimizer(groups, TrainSpec(epochs=1, lr=1e-3, weight_decay=0.01))
>>> [(group["lr"], group["weight_decay"]) for group in optimizer.param_groups]
[(0.0001, 0.01), (0.001, 0.01)]
>>> set_learning_rate(optimizer, 2e-3)  # what a varying schedule does before each step
>>> [group["lr"] for group in optimizer.param_groups]
[0.0002, 0.002]

The schedule is a pure function of the global optimiser step (0-based, counted over the
stage's epochs) and of the stage's planned steps, ``epochs x steps_per_epoch``, so a run
resumed with ``--resume`` sets the same learning rate at every step as the uninterrupted
run, with no schedule state in the checkpoint. Early stopping ends a stage sooner; the
schedule stays planned over ``epochs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from clue_fw.training.specs import TrainSpec

DEFAULT_BETAS = (0.9, 0.999)
"""Adam's and AdamW's moment decay rates when ``train.betas`` is unset (torch's defaults)."""
DEFAULT_MOMENTUM = 0.9
"""SGD's momentum when ``train.momentum`` is unset."""


LR_FACTOR = "lr_factor"
"""The key of an optimiser parameter group that holds its :attr:`ParameterGroup.lr_factor`."""


@dataclass(frozen=True)
class ParameterGroup:
    """Parameters that train at ``lr_factor`` x the stage's learning rate (at every step
    of its schedule), with every other setting of the stage's ``train`` section, weight
    decay included: decoupled decay (adamw) shrinks a weight by its group's rate x
    ``weight_decay``, as torch does for any group."""

    parameters: list[torch.nn.Parameter]
    lr_factor: float = 1.0


def build_optimizer(
    parameters: list[torch.nn.Parameter] | list[ParameterGroup],
    train: TrainSpec,
    *,
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """The optimiser of a stage: ``train.optimizer`` at ``train.peak_lr``.

    ``parameters``: one list (one group, at ``train.peak_lr``), or parameter groups,
    each at ``lr_factor`` x ``train.peak_lr`` (:func:`set_learning_rate` keeps that ratio
    when a schedule changes the rate). Every group has the stage's ``weight_decay``.

    ``fused`` (default: whether the parameters are on CUDA) selects torch's fused
    implementation: one kernel for every parameter, and a step it can skip on the device
    (``found_inf``), which the training loop's deferred numerical guard uses instead of a
    host read per step. Adam, AdamW and SGD all have it. Off CUDA the optimiser is the
    plain one, and the guard reads every step before it is taken.
    """
    lr, decay = train.peak_lr, train.weight_decay
    groups = [part for part in parameters if isinstance(part, ParameterGroup)]
    flat: list[Any] = [p for g in groups for p in g.parameters] if groups else list(parameters)
    params: list[Any] = flat
    if groups:
        if len(groups) != len(parameters):
            raise TypeError("build_optimizer: give parameters or ParameterGroups, not both")
        params = [
            {"params": group.parameters, "lr": lr * group.lr_factor, LR_FACTOR: group.lr_factor}
            for group in groups
        ]
    if fused is None:
        fused = bool(flat) and flat[0].device.type == "cuda"
    fuse = fused or None
    if train.optimizer == "sgd":
        momentum = DEFAULT_MOMENTUM if train.momentum is None else train.momentum
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=decay, fused=fuse)
    betas = DEFAULT_BETAS if train.betas is None else (train.betas[0], train.betas[1])
    kind = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=lr, betas=betas, weight_decay=decay, fused=fuse)


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Set every parameter group's rate to ``rate`` x its ``lr_factor`` (1 for a group
    without one): the schedule's step, applied to each :class:`ParameterGroup`."""
    for group in optimizer.param_groups:
        group["lr"] = rate * group.get(LR_FACTOR, 1.0)


@dataclass(frozen=True)
class LrSchedule:
    """The learning rate of each optimiser step of a stage; call it with the step.

    Steps ``0 .. warmup_steps - 1`` rise linearly to ``peak`` (step s has
    ``peak * (s + 1) / warmup_steps``). After them, ``constant`` stays at ``peak``;
    ``cosine`` and ``linear`` decay from ``peak`` towards ``floor``, reached at
    ``total_steps`` (and held beyond it).
    """

    kind: Literal["constant", "cosine", "linear"]
    peak: float
    floor: float
    warmup_steps: int
    total_steps: int

    @property
    def varies(self) -> bool:
        """Whether any step's rate differs from ``peak`` (the optimiser's own lr)."""
        return self.kind != "constant" or self.warmup_steps > 0

    def __call__(self, step: int) -> float:
        step = max(step, 0)
        if step < self.warmup_steps:
            return self.peak * ((step + 1) / self.warmup_steps)  # exactly peak at the end
        if self.kind == "constant":
            return self.peak
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        if self.kind == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            factor = 1.0 - progress
        return self.floor + (self.peak - self.floor) * factor


def lr_schedule(train: TrainSpec, steps_per_epoch: int) -> LrSchedule:
    """The schedule of a stage of ``train.epochs`` epochs of ``steps_per_epoch`` steps.

    Warm-up lasts ``warmup_epochs x steps_per_epoch`` steps, rounded to the nearest
    step (half up), and at least one when ``warmup_epochs`` is above 0.
    """
    total = train.epochs * steps_per_epoch
    warmup = 0
    if train.warmup_epochs > 0:
        steps = math.floor(train.warmup_epochs * steps_per_epoch + 0.5)
        warmup = min(max(1, steps), total)
    return LrSchedule(train.schedule, train.peak_lr, train.min_lr, warmup, total)


__all__ = [
    "DEFAULT_BETAS",
    "DEFAULT_MOMENTUM",
    "LR_FACTOR",
    "LrSchedule",
    "ParameterGroup",
    "build_optimizer",
    "lr_schedule",
    "set_learning_rate",
]
