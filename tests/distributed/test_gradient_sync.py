"""The data-parallel step without host syncs: GradientSync sends each bucket while the
backward pass goes on and gives the gradients of the blocking all-reduce to the bit;
ShardedStep, GlobalView and GradientSync read no tensor on the host in a step; what
used to be decided on the host every step is checked once, at the epoch's end."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from dp_processes import spawn
from torch import nn

from clue_fw.components import LossOutput
from clue_fw.data.examples import ExampleSet
from clue_fw.distributed import (
    Distributed,
    GlobalView,
    GradientSync,
    ShardedStep,
    convert_batchnorm,
)
from clue_fw.errors import TrainingError

ROWS, LENGTH, ITEMS = 12, 6, 40


class Tiny(nn.Module):
    """Embedding -> Linear -> (global) BatchNorm -> Linear, and a parameter that no step
    uses (it keeps no gradient, as in one process)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(ITEMS, 8)
        self.first = nn.Linear(8, 16)
        self.norm = nn.BatchNorm1d(16)
        self.second = nn.Linear(16, 4)
        self.unused = nn.Parameter(torch.zeros(3))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        hidden = self.first(self.embedding(items).mean(dim=1))
        return self.second(torch.relu(self.norm(hidden)))


def _model() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


def _my_rows(rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's rows of one fixed global batch, and the loss weights of its rows."""
    generator = torch.Generator().manual_seed(1)
    items = torch.randint(1, ITEMS, (ROWS, LENGTH), generator=generator)
    weights = torch.randn(ROWS, 4, generator=generator)
    rows = torch.tensor_split(torch.arange(ROWS), world)[rank]
    return items[rows], weights[rows]


def _blocking_reference(world: int, params: list[nn.Parameter], bucket_bytes: int) -> None:
    """The algorithm of GradientSync.__call__ before the overlap (commit 124b350), on
    CPU tensors: every bucket all-reduced after the backward pass."""
    had = [p.grad is not None for p in params]
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    buckets: list[list[int]] = []
    size = 0
    for index, grad in enumerate(grads):
        nbytes = grad.numel() * grad.element_size()
        last = grads[buckets[-1][0]] if buckets else None
        if last is None or last.dtype != grad.dtype or size + nbytes > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].append(index)
        size += nbytes
    flags = torch.tensor(had, dtype=grads[buckets[0][0]].dtype)
    flats, works = [], []
    for number, members in enumerate(buckets):
        parts = [grads[i].reshape(-1) for i in members] + ([flags] if number == 0 else [])
        flat = torch.cat(parts)
        flats.append(flat)
        works.append(dist.all_reduce(flat, async_op=True))
    for work, flat, members in zip(works, flats, buckets, strict=True):
        work.wait()
        flat.div_(world)
        mine = [grads[i] for i in members]
        used = sum(g.numel() for g in mine)
        parts = torch.split(flat[:used], [g.numel() for g in mine])
        for grad, part in zip(mine, parts, strict=True):
            grad.copy_(part.reshape(grad.shape))
    if not all(had):
        present = flats[0][-len(params) :].tolist()
        for p, seen in zip(params, present, strict=True):
            if seen == 0:
                p.grad = None


def _backward(model: nn.Module, rank: int, world: int) -> None:
    items, weights = _my_rows(rank, world)
    ((model(items) * weights).sum() / ROWS).backward()


def _overlap_equals_blocking(rank: int, world: int, bucket_bytes: int) -> None:
    blocking = convert_batchnorm(_model())
    overlapped = copy.deepcopy(blocking)
    params = [p for p in blocking.parameters() if p.requires_grad]
    _backward(blocking, rank, world)
    _blocking_reference(world, params, bucket_bytes)

    sync = GradientSync(world, bucket_bytes=bucket_bytes)
    mine = [p for p in overlapped.parameters() if p.requires_grad]
    sent: list[tuple[str, int]] = []
    send = sync._send
    sync._send = lambda plan, step, number, had: (  # type: ignore[method-assign]
        sent.append(("sent", number)),
        send(plan, step, number, had),
    )[-1]
    with sync.overlap(mine):
        _backward(overlapped, rank, world)
        sent.append(("backward", -1))
        sync(mine)
    buckets = len(sync._plan(mine).buckets)
    assert buckets > 3
    # every bucket left once, from the last to the first, most of them during backward()
    assert [n for what, n in sent if what == "sent"] == list(range(buckets - 1, -1, -1))
    assert sent.index(("backward", -1)) > buckets // 2
    for ours, theirs in zip(mine, params, strict=True):
        assert (ours.grad is None) == (theirs.grad is None)
        if ours.grad is not None:
            assert torch.equal(ours.grad, theirs.grad)
    assert overlapped.unused.grad is None  # no process had one


@pytest.mark.parametrize("world", [2, 3])
def test_overlapped_buckets_give_the_blocking_gradients_to_the_bit(world: int) -> None:
    """The buckets, their contents and every all-reduce are those of the old blocking
    GradientSync, so the averaged gradients are equal to the bit (with the global
    BatchNorm's all-reduces of the backward pass in between)."""
    spawn(_overlap_equals_blocking, 64, world=world)


# --------------------------------------------------------------------------- host syncs


class HostReads:
    """Counts what would make the host wait for a device: reading a tensor's value
    (``item``, ``tolist``, ``bool``, ``float``, ``int``, ``numpy``, ``cpu``),
    ``torch.equal``, ``torch.cuda.synchronize`` and tensors made from host data
    (``torch.tensor``, ``torch.as_tensor``: a copy to a GPU that waits)."""

    TENSOR = ("item", "tolist", "__bool__", "__float__", "__int__", "numpy", "cpu")
    TORCH = ("equal", "tensor", "as_tensor")

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.on = False

    @contextmanager
    def installed(self) -> Iterator[HostReads]:
        saved: list[tuple[Any, str, Any]] = []
        for owner, names in ((torch.Tensor, self.TENSOR), (torch, self.TORCH)):
            for name in names:
                saved.append((owner, name, getattr(owner, name)))
                setattr(owner, name, self._counted(name, getattr(owner, name)))
        saved.append((torch.cuda, "synchronize", torch.cuda.synchronize))
        torch.cuda.synchronize = self._counted("cuda.synchronize", torch.cuda.synchronize)
        try:
            yield self
        finally:
            for owner, name, original in reversed(saved):
                setattr(owner, name, original)

    def _counted(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.on:
                self.calls[name] += 1
            return original(*args, **kwargs)

        return counted


def _mask(items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    keep = torch.rand(items.shape, generator=generator) > 0.3
    return torch.where(keep, items, torch.zeros_like(items))


def _steps_without_host_reads(rank: int, world: int, out: str) -> None:
    model = convert_batchnorm(_model())
    examples = ExampleSet(
        {"items": torch.randint(1, ITEMS, (43, LENGTH), generator=torch.Generator().manual_seed(2))}
    )
    distributed = Distributed(rank, world, torch.device("cpu"))
    sync = distributed.sync_gradients
    assert sync is not None
    batches = examples.batches(8, torch.Generator().manual_seed(5), 2, distributed.shard)
    view = GlobalView(_mask, batches, "items")
    generator = torch.Generator().manual_seed(7)

    def step(batch: dict[str, torch.Tensor]) -> LossOutput:
        items = batch["items"]
        # this process's slice, and a copy of it (other memory: GlobalView's other path)
        first, second = view(items, generator), view(items.clone(), generator)
        loss = model(torch.cat([first, second])).square().mean()
        return LossOutput(loss, {"tensor": loss.detach() * 2, "number": 0.5})

    sharded = ShardedStep(step, batches, distributed)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = torch.optim.SGD(params, lr=0.1)
    reads, steps = HostReads(), 0
    with reads.installed():
        with sync.overlap(params, [n for n, _ in named]):
            while True:
                reads.on = steps > 0  # the first step makes its flags tensor, once
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                output = sharded(batch)
                optimizer.zero_grad(set_to_none=True)
                output.loss.backward()
                sync(params)
                reads.on = False
                optimizer.step()
                steps += 1
            in_steps = dict(reads.calls)
            reads.on = True  # the epoch's end: GradientSync.check reads one flag
        reads.on = False
    assert steps == 6 and model.unused.grad is None
    assert not in_steps, f"rank {rank} read tensors on the host in a step: {in_steps}"
    assert dict(reads.calls) == {"__bool__": 1}
    loss, terms, rows = sharded.epoch_means()
    assert rows == 43 and terms["number"] == pytest.approx(0.5)
    assert terms["tensor"] == pytest.approx(2 * loss)


def test_a_data_parallel_step_reads_nothing_on_the_host(tmp_path: Path) -> None:
    """Two gloo processes: the batches, ShardedStep, GlobalView (on its rows and on a
    copy), the global BatchNorm, the backward pass with its overlapped all-reduces and
    the final wait of GradientSync (with a parameter no step uses) read no tensor's
    value on the host and make no tensor from host data, after the first step."""
    spawn(_steps_without_host_reads, str(tmp_path))


# --------------------------------------------------------------------------- the checks


def _uneven(rank: int, world: int, out: str) -> None:
    linear, extra = nn.Linear(3, 2), nn.Parameter(torch.ones(2))
    params = [*linear.parameters(), extra]
    sync = GradientSync(world)
    try:
        with sync.overlap(params, ["linear.weight", "linear.bias", "extra"]):
            for _ in range(2):
                loss = linear(torch.ones(4, 3)).sum()
                if rank == 0:  # a part of the model that only rank 0's rows use
                    loss = loss + extra.sum()
                for param in params:
                    param.grad = None
                loss.backward()
                sync(params)  # no error yet: the flags are read at the epoch's end
                assert (extra.grad is None) == (rank == 1)
    except TrainingError as exc:
        Path(out, f"{rank}.txt").write_text(str(exc))


def test_a_parameter_with_a_gradient_on_some_processes_only_fails_at_the_epoch_end(
    tmp_path: Path,
) -> None:
    """Each process takes a parameter without a gradient to have none anywhere (no host
    read per step); that this held is checked once, at the end of the epoch, on every
    process, before anything of the epoch is saved."""
    spawn(_uneven, str(tmp_path))
    for rank in (0, 1):
        message = (tmp_path / f"{rank}.txt").read_text()
        assert message.startswith(
            "Parameter extra had a gradient on some processes but not on the others"
        )
        assert "nothing of this epoch was saved" in message


def _twice(rank: int, world: int, out: str) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    params = list(model.parameters())
    sync = GradientSync(world)
    try:
        with sync.overlap(params):
            model(torch.ones(2, 3)).sum().backward()
            model(torch.ones(2, 3)).sum().backward()  # accumulates into sent gradients
            sync(params)
    except TrainingError as exc:
        Path(out, f"{rank}.txt").write_text(str(exc))


def test_a_gradient_accumulated_after_it_was_sent_is_refused(tmp_path: Path) -> None:
    """Two backward passes per step would average stale gradients: every process
    refuses, naming the parameter and the cause."""
    spawn(_twice, str(tmp_path))
    for rank in (0, 1):
        message = (tmp_path / f"{rank}.txt").read_text()
        assert "grew after it had been sent to the other processes" in message
        assert "two backward passes per step" in message
