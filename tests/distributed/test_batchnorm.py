"""GlobalBatchNorm1d in two processes equals BatchNorm1d on the concatenated batch:
forward, input and parameter gradients, running statistics, evaluation, state keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from dp_processes import spawn
from torch import nn

from clue_fw.distributed import GlobalBatchNorm1d, GradientSync, convert_batchnorm

ROWS = (5, 3)  # an uneven split: the statistics weigh each process's rows
CASES = [((), 0.1), ((4,), None)]  # [N, C] with momentum; [N, C, L] cumulative average


def _inputs(tail: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(sum(ROWS), 6, *tail, generator=generator, dtype=torch.float64) * 3 + 1
    weights = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return x, weights


def _model(momentum: float | None) -> nn.Sequential:
    torch.manual_seed(1)
    model = nn.Sequential(nn.BatchNorm1d(6, momentum=momentum, dtype=torch.float64))
    with torch.no_grad():
        model[0].weight.uniform_(0.5, 1.5)
        model[0].bias.uniform_(-1, 1)
    return model


def _train(model: nn.Module, x: torch.Tensor, weights: torch.Tensor) -> dict[str, Any]:
    """Two training steps (running statistics accumulate), then an evaluation."""
    x = x.clone().requires_grad_(True)
    for _ in range(2):
        model.zero_grad()
        x.grad = None
        out = model(x)
        (out * weights).sum().backward()
    norm = model[0]  # type: ignore[index]
    return {
        "out": out.detach(),
        "x_grad": x.grad,
        "grads": torch.cat([norm.weight.grad, norm.bias.grad]),
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "eval": model.eval()(x).detach(),
    }


def _gather(rank: int, world: int, tensor: torch.Tensor) -> torch.Tensor:
    """The rows of every process, in rank order (padded: all_gather needs equal sizes)."""
    padded = torch.zeros(max(ROWS), *tensor.shape[1:], dtype=tensor.dtype)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: ROWS[r]] for r, part in enumerate(parts)])


def _in_two_processes(rank: int, world: int, out: str) -> None:
    results = []
    for tail, momentum in CASES:
        x, weights = _inputs(tail)
        start = sum(ROWS[:rank])
        mine = slice(start, start + ROWS[rank])
        model = _model(momentum)
        keys, parameter = list(model.state_dict()), model[0].weight
        convert_batchnorm(model)
        assert isinstance(model[0], GlobalBatchNorm1d) and model[0].weight is parameter
        assert list(model.state_dict()) == keys  # checkpoints are interchangeable
        got = _train(model, x[mine], weights[mine])
        dist.all_reduce(got["grads"])  # each process holds its rows' share of them
        for key in ("out", "x_grad", "eval"):
            got[key] = _gather(rank, world, got[key])
        results.append(got)
    if rank == 0:
        torch.save({"batchnorm": results, "gradients": _sync_gradients(rank, world)}, out)
    else:
        _sync_gradients(rank, world)


def _sync_gradients(rank: int, world: int) -> list[torch.Tensor | None]:
    """GradientSync in two small buckets: averages, and none where no process has one.
    (A gradient that only some processes have: tests/distributed/test_gradient_sync.py.)"""
    params = [
        nn.Parameter(torch.zeros(3)),
        nn.Parameter(torch.zeros(2, 2)),
        nn.Parameter(torch.zeros(1)),
    ]
    params[0].grad = torch.full((3,), float(rank + 1))  # 1 and 2: mean 1.5
    params[1].grad = torch.ones(2, 2) * 4 if rank == 0 else torch.zeros(2, 2)  # mean 2
    sync = GradientSync(world, bucket_bytes=16)
    sync(params)
    sync.check()  # every process had the same gradients
    return [p.grad for p in params]


def test_global_batchnorm_and_gradient_sync_in_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "results.pt"
    spawn(_in_two_processes, str(out))
    saved = torch.load(out)
    first, second, third = saved["gradients"]
    assert torch.equal(first, torch.full((3,), 1.5)) and torch.equal(
        second, torch.full((2, 2), 2.0)
    )
    assert third is None
    for (tail, momentum), got in zip(CASES, saved["batchnorm"], strict=True):
        x, weights = _inputs(tail)
        want = _train(_model(momentum), x, weights)
        for key in ("out", "x_grad", "grads", "eval"):
            torch.testing.assert_close(got[key], want[key], rtol=1e-10, atol=1e-10, msg=key)
        assert got["state"].keys() == want["state"].keys()
        for key, value in want["state"].items():
            torch.testing.assert_close(got["state"][key], value, rtol=1e-10, atol=1e-10)


def test_one_process_keeps_batchnorm1d() -> None:
    """Without a process group the converted layer is BatchNorm1d itself."""
    x, weights = _inputs(())
    want = _train(_model(0.1), x, weights)
    got = _train(convert_batchnorm(_model(0.1)), x, weights)
    for key in ("out", "x_grad", "grads", "eval"):
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
