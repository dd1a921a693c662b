"""Global BatchNorm: a model layer whose statistics are those of the global batch.

:class:`GlobalBatchNorm1d` all-reduces its batch moments over the process group (gloo
on CPU, NCCL on CUDA); its state dict is BatchNorm1d's, so checkpoints are
interchangeable. :func:`convert_batchnorm` swaps a module's BatchNorm1d layers for it."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """A differentiable all-reduce sum: the gradient of every process's input is the sum
    of the gradients of every process's output (each output is the same sum)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, group=ctx.group)
        return total, None


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over the global batch: statistics summed across the processes.

    In training, each process adds up its rows' sums and sums of squares in float64,
    all-reduced once through the differentiable all-reduce (:class:`_AllReduceSum`), so
    the forward pass and the gradients are those of BatchNorm1d on the concatenated
    batch (to float rounding). Running
    statistics are updated as BatchNorm1d updates them (unbiased variance, ``momentum``
    or the cumulative average); evaluation uses them, with no communication. Works on
    CPU tensors (gloo), which :class:`torch.nn.SyncBatchNorm` refuses, and on CUDA.

    The state dict is BatchNorm1d's (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``): checkpoints load either way. The global
    batch must have at least two rows (data-parallel batches always do).

    >>> norm = GlobalBatchNorm1d(8)  # doctest: +SKIP
    >>> out = norm(torch.randn(32, 8))  # in a process group: normalised over all ranks
    """

    def __init__(self, *args: Any, group: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        batch_stats = self.training or self.running_mean is None
        if not batch_stats or not (dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        dtype = torch.promote_types(input.dtype, torch.float32)
        x = input.to(dtype)
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        # One all-reduce of [sum, sum of squares, rows] in float64 (forward and backward):
        # each all-reduce is a round trip between the GPUs, and a CLUE step has 8 of
        # these layers; float64 keeps the one-pass variance as exact as two passes.
        wide = x.to(torch.float64)
        rows = wide.new_full((1,), x.numel() // max(x.shape[1], 1))
        local = torch.cat([wide.sum(dims), (wide * wide).sum(dims), rows])
        total = _AllReduceSum.apply(local, self.group)
        channels = x.shape[1]
        count = total[-1]
        mean_wide = total[:channels] / count
        var_wide = (total[channels : 2 * channels] / count - mean_wide * mean_wide).clamp(min=0)
        mean, var = mean_wide.to(dtype), var_wide.to(dtype)
        centered = x - mean.reshape(shape)
        out = centered * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.training and self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), count.detach())
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average, as BatchNorm1d
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_mean.copy_(mean * factor + self.running_mean * (1 - factor))
        self.running_var.copy_(unbiased * factor + self.running_var * (1 - factor))


def convert_batchnorm(module: nn.Module, group: Any = None) -> nn.Module:
    """Replace every BatchNorm1d in ``module`` by a :class:`GlobalBatchNorm1d` that shares
    its parameters and buffers (same objects: an optimiser built before still trains
    them, and the state dict keys do not change). Returns ``module``, or its replacement
    when ``module`` is itself a BatchNorm1d."""
    if isinstance(module, nn.BatchNorm1d) and not isinstance(module, GlobalBatchNorm1d):
        return _global_copy(module, group)
    for name, child in module.named_children():
        converted = convert_batchnorm(child, group)
        if converted is not child:
            setattr(module, name, converted)
    return module


def _global_copy(norm: nn.BatchNorm1d, group: Any) -> GlobalBatchNorm1d:
    new = GlobalBatchNorm1d(
        norm.num_features,
        eps=norm.eps,
        momentum=norm.momentum,
        affine=norm.affine,
        track_running_stats=norm.track_running_stats,
        group=group,
    )
    # the very same tensors, not copies
    for name in ("weight", "bias"):
        if getattr(norm, name, None) is not None:
            setattr(new, name, getattr(norm, name))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        new._buffers[name] = norm._buffers.get(name)
    new.train(norm.training)
    return new
