"""The training loop: one epoch of optimisation, and evaluation. Small and plain."""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from clue_fw.components import DownstreamHead, LossOutput, SequenceEncoder
from clue_fw.data.examples import Batch, Batches, ExampleSet
from clue_fw.errors import EvaluationError, NonFiniteError, PluginError, TrainingError
from clue_fw.metrics.ranking import NAN_ROWS
from clue_fw.provenance import plugin_call
from clue_fw.training.optim import set_learning_rate
from clue_fw.training.report import Reporter


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from ``seed`` and labels (stage, epoch, purpose)."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


@dataclass(frozen=True)
class EpochStats:
    loss: float
    terms: dict[str, float]
    examples: int
    seconds: float

    @property
    def examples_per_second(self) -> float:
        return self.examples / max(self.seconds, 1e-9)


def train_epoch(
    step: Callable[[Batch], LossOutput],
    parameters: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch],
    num_batches: int,
    grad_clip: float | None,
    reporter: Reporter,
    description: str,
    *,
    first_step: int = 0,
    loss_name: str = "training",
    sync_gradients: Callable[[list[torch.nn.Parameter]], None] | None = None,
    check_every: int | None = None,
    autocast: torch.dtype | None = None,
    learning_rate: Callable[[int], float] | None = None,
) -> EpochStats:
    """Run ``step`` on every batch, back-propagate and update.

    Numerical guard: a non-finite loss or gradient norm raises :class:`TrainingError`
    naming ``description`` (stage and epoch), the batch, the global step (``first_step``
    + batch number) and the non-finite loss terms, and no optimiser step runs from that
    batch on. Parameters are checked once more at the end of the epoch, so the caller
    never checkpoints a non-finite model. ``grad_clip`` clips the global gradient norm.
    ``sync_gradients`` (data-parallel training) averages the gradients across processes
    after every backward pass, before clipping and the optimiser step.

    ``check_every``: how many steps run between two reads of the loss on the host. On
    the CPU (the default there: 1) a read costs nothing and the check runs before every
    step. On an accelerator a read waits for the device, which costs more than a small
    step, so the default there is :data:`DEVICE_CHECK_EVERY`: losses, terms and
    finiteness flags accumulate on the device, and an optimiser that can skip a step on
    the device (``found_inf``, as fused Adam, AdamW and SGD can) is told to skip every
    step from the first non-finite one, so the guard holds without a read per step. An
    optimiser that cannot skip is read before every step, whatever ``check_every`` says.

    ``autocast``: a lower-precision dtype (``torch.bfloat16``) that ``step`` runs under
    :func:`torch.autocast`; backward, clipping and the optimiser step stay float32.

    ``learning_rate``: the rate of each step, from its global step (``first_step`` +
    batch index, 0-based; :func:`clue_fw.training.optim.lr_schedule`), set on every
    parameter group before the step, times the group's ``lr_factor``
    (:func:`~clue_fw.training.optim.set_learning_rate`). None leaves the optimiser's
    rates alone.
    """
    if num_batches <= 0:
        raise TrainingError(_no_batches(description, batches))
    started = time.perf_counter()
    state: _EpochSums | None = None
    with reporter.progress(description, num_batches) as update:
        for index, batch in enumerate(batches):
            size = next(iter(batch.values())).shape[0]
            with _autocast(batch, autocast):
                output = step(batch)
            _check_loss_output(output, loss_name)
            if state is None:
                state = _EpochSums(output.loss.device, check_every, optimizer)
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            if sync_gradients is not None:
                sync_gradients(parameters)
            if grad_clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
            else:
                norm = _grad_norm(parameters, output.loss)
            state.add(output, norm, size)
            if state.immediate:
                state.raise_if_non_finite(description, num_batches, first_step, loss_name)
            if learning_rate is not None:
                set_learning_rate(optimizer, learning_rate(first_step + index))
            optimizer.step()
            if state.due(index, num_batches):
                state.raise_if_non_finite(description, num_batches, first_step, loss_name)
                elapsed = time.perf_counter() - started
                update(state.pending, state.mean_loss, state.examples / max(elapsed, 1e-9))
                state.pending = 0
    if state is None or state.examples == 0:
        raise TrainingError(_no_batches(description, batches))
    state.raise_if_non_finite(description, num_batches, first_step, loss_name)
    state.release()
    if parameters and not bool(
        torch.stack([p.detach().isfinite().all() for p in parameters]).all()
    ):
        raise TrainingError(
            f"Non-finite parameters after {description}: the optimiser step overflowed "
            "although every loss and gradient was finite (is the learning rate huge?)."
        )
    seconds = time.perf_counter() - started
    return EpochStats(
        loss=state.mean_loss,
        terms=state.mean_terms(),
        examples=state.examples,
        seconds=seconds,
    )


def _autocast(batch: Batch, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` on the batch's device type, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    device_type = next(iter(batch.values())).device.type
    return torch.autocast(device_type=device_type, dtype=dtype)


#: Steps between two host reads of the loss on an accelerator (see :func:`train_epoch`).
DEVICE_CHECK_EVERY = 50


class _EpochSums:
    """An epoch's loss and term sums and its finiteness record, kept on the loss's device.

    ``immediate`` (the CPU, ``check_every == 1``, or an optimiser that cannot skip a
    step on the device): every step is read and checked before the optimiser step.
    Otherwise the per-step flags are read every ``check_every`` steps; the optimiser's
    ``found_inf`` input makes it skip the step of a non-finite batch and every later
    one, so the weights stay those before it.
    """

    def __init__(
        self, device: torch.device, check_every: int | None, optimizer: torch.optim.Optimizer
    ) -> None:
        if check_every is None:
            check_every = 1 if device.type == "cpu" else DEVICE_CHECK_EVERY
        if check_every < 1:
            raise ValueError(f"check_every must be at least 1, got {check_every}")
        self.check_every = check_every
        self.skips_on_device = check_every > 1 and _can_skip_steps(optimizer)
        self.immediate = not self.skips_on_device
        self.device = device
        self.optimizer = optimizer
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.term_sums: dict[str, torch.Tensor] = {}
        self.examples = 0
        self.pending = 0
        self.first_unread = 0  # the batch index of ``values[0]``
        # unread steps: loss, gradient norm (float32 on the device) and the batch's output
        self.values: list[torch.Tensor] = []
        self.outputs: list[LossOutput] = []
        self.bad_so_far = torch.zeros((), dtype=torch.float32, device=device)
        self._mean_loss = math.nan

    def add(self, output: LossOutput, norm: torch.Tensor, size: int) -> None:
        loss = output.loss.detach().float()
        pair = torch.stack([loss, norm.detach().float().to(loss.device)])
        self.values.append(pair)
        self.outputs.append(LossOutput(loss, dict(output.terms)))
        if self.skips_on_device:
            finite = torch.isfinite(pair).all()
            self.bad_so_far = torch.maximum(self.bad_so_far, (~finite).float())
            self.optimizer.found_inf = self.bad_so_far  # type: ignore[attr-defined]
        self.loss_sum += loss.double() * size
        for name, value in output.terms.items():
            value = torch.as_tensor(value, device=self.device).detach().double().reshape(())
            total = self.term_sums.get(name)
            self.term_sums[name] = value * size if total is None else total + value * size
        self.examples += size
        self.pending += 1

    def due(self, index: int, num_batches: int) -> bool:
        return (index + 1) % self.check_every == 0 or index + 1 == num_batches

    def raise_if_non_finite(
        self, description: str, num_batches: int, first_step: int, loss_name: str
    ) -> None:
        """Read the unread steps' loss and gradient norm (one host sync) and raise for the
        first non-finite one."""
        if not self.values:
            return
        unread = torch.stack(self.values).tolist()
        for offset, (loss_value, norm_value) in enumerate(unread):
            if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                index = self.first_unread + offset
                where = (
                    f"{description}, batch {index + 1}/{num_batches} "
                    f"(global step {first_step + index + 1})"
                )
                raise _non_finite(where, loss_name, loss_value, norm_value, self.outputs[offset])
        self.first_unread += len(self.values)
        self.values, self.outputs = [], []
        self._mean_loss = float(self.loss_sum) / max(self.examples, 1)

    @property
    def mean_loss(self) -> float:
        return self._mean_loss

    def mean_terms(self) -> dict[str, float]:
        count = max(self.examples, 1)
        if not self.term_sums:
            return {}
        names = list(self.term_sums)
        totals = torch.stack([self.term_sums[n] for n in names]).tolist()
        return {name: total / count for name, total in zip(names, totals, strict=True)}

    def release(self) -> None:
        """Forget the device-side skip flag, so the optimiser steps normally afterwards."""
        if self.skips_on_device and hasattr(self.optimizer, "found_inf"):
            del self.optimizer.found_inf


def _can_skip_steps(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` reads a ``found_inf`` tensor and skips the update when it
    is non-zero (torch's fused Adam/AdamW/SGD, which GradScaler drives the same way)."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False)) and any(
        group.get("fused") for group in optimizer.param_groups
    )


def _no_batches(description: str, batches: Iterable[Batch]) -> str:
    """Why ``description`` (stage and epoch) has no batch to train on, with the numbers."""
    if isinstance(batches, Batches):
        cut = (
            f"it has {batches.examples:,} training example{'s' * (batches.examples != 1)} "
            f"and batch_size {batches.batch_size}"
        )
        if batches.min_size > 1:
            cut += f", and a batch of fewer than {batches.min_size} examples is skipped"
    else:
        cut = "its batches are empty"
    return (
        f"{description} has no batch to train on: {cut}, so no optimiser step would run and "
        "the stage would claim to have trained. Use more users (or a smaller batch_size), or "
        "leave the stage out."
    )


def _check_loss_output(output: object, loss_name: str) -> None:
    """Raise PluginError unless ``output`` is a ``LossOutput`` a training step can use.

    Objectives and heads may come from plugins; this checks types and shapes only (no
    device sync). ``loss_name`` is ``"<kind> objective"`` or ``"<kind> head"``.
    """
    problem = loss_output_problem(output)
    if problem:
        raise PluginError(
            f"The {loss_name}{_provider_text(loss_name)} broke the loss contract: {problem}. "
            "A loss returns LossOutput(loss, terms): a scalar floating-point tensor that "
            "depends on the trained parameters, and a dict of named scalar terms for logging."
        )


def loss_output_problem(output: object) -> str | None:
    """What is wrong with ``output`` as the result of a training loss, or None."""
    if not isinstance(output, LossOutput):
        return f"it returned {type(output).__name__}, not LossOutput"
    loss, terms = output
    if not isinstance(loss, torch.Tensor):
        return f"its loss is {type(loss).__name__}, not a tensor"
    if loss.numel() != 1 or not loss.is_floating_point():
        return f"its loss is a {loss.dtype} tensor of shape {list(loss.shape)}, not a scalar float"
    if torch.is_grad_enabled() and not loss.requires_grad:
        return "its loss does not require gradients (it is detached from the parameters)"
    if not isinstance(terms, dict):
        return f"its terms are {type(terms).__name__}, not a dict"
    for name, value in terms.items():
        scalar = isinstance(value, int | float) or (
            isinstance(value, torch.Tensor) and value.numel() == 1
        )
        if not isinstance(name, str) or not scalar:
            return f"its term {str(name)[:40]!r} is not a named scalar"
    return None


def _provider_text(loss_name: str) -> str:
    """`` (plugin P)`` for a loss named ``"<kind> <family>"``, when the registry knows it."""
    kind, _, family = loss_name.rpartition(" ")
    from clue_fw.provenance import provider_of

    provider = provider_of(family, kind)
    return f" (plugin {provider})" if provider else ""


def _grad_norm(parameters: list[torch.nn.Parameter], like: torch.Tensor) -> torch.Tensor:
    """The global L2 norm of the gradients (what clipping would see), without clipping."""
    norms = [torch.linalg.vector_norm(p.grad.detach()) for p in parameters if p.grad is not None]
    if not norms:
        return torch.zeros((), device=like.device)
    return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))


def _non_finite(
    where: str, loss_name: str, loss_value: float, norm_value: float, output: LossOutput
) -> NonFiniteError:
    """The error for a non-finite loss (naming the non-finite logged terms) or gradient."""
    if math.isfinite(loss_value):
        return NonFiniteError(
            f"Non-finite gradient in {where}: the gradient norm of the {loss_name} loss is "
            f"{norm_value} (the loss itself was {loss_value:.6g})."
        )
    values = {name: float(value) for name, value in output.terms.items()}
    bad = {name: v for name, v in values.items() if not math.isfinite(v)}
    text = f"Non-finite loss in {where}: the {loss_name} loss is {loss_value}"
    if bad:
        text += "; non-finite terms: " + ", ".join(f"{k}={v}" for k, v in bad.items())
    elif values:
        finite = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        text += f"; its logged terms are finite ({finite})"
    return NonFiniteError(text + ".")


@torch.no_grad()
def evaluate(
    head: DownstreamHead,
    encoder: SequenceEncoder,
    examples: ExampleSet,
    batch_size: int,
    *,
    split: str = "evaluation",
    reduce_batches: Callable[[list[dict[str, torch.Tensor]]], list[dict[str, torch.Tensor]]]
    | None = None,
) -> dict[str, float]:
    """Exact metrics over ``examples``: additive per-batch sums, finalised once.

    A head may report, under :data:`~clue_fw.metrics.ranking.NAN_ROWS`, how many rows
    of a batch it scored NaN. Those counts stay on the device and are read once, at
    the end; any non-zero count raises :class:`EvaluationError` naming ``split``
    ("valid", "test") and the first batch that had one. ``reduce_batches``
    (data-parallel evaluation over whole batches,
    :meth:`~clue_fw.distributed.Distributed.evaluate`) turns this process's per-batch sums
    into every process's, in the one-process batch order; they are then added up in
    that order, so the metrics equal one process's to the bit.
    """
    was_training = encoder.training, head.training
    encoder.eval()
    head.eval()
    totals: dict[str, torch.Tensor] = {}
    nan_rows: list[torch.Tensor] = []
    kept: list[dict[str, torch.Tensor]] = []
    try:
        for batch in examples.batches(batch_size):
            with plugin_call(head, "metric_sums"):
                sums = head.metric_sums(encoder, batch)
            if NAN_ROWS in sums:
                nan_rows.append(sums.pop(NAN_ROWS).reshape(()))
            if reduce_batches is not None:
                kept.append(sums)
            else:
                _add_sums(totals, sums)
    finally:
        encoder.train(was_training[0])
        head.train(was_training[1])
    if nan_rows:
        counts = torch.stack([n.to(nan_rows[0].device) for n in nan_rows]).tolist()
        bad = [index for index, count in enumerate(counts) if count > 0]
        if bad:
            raise _nan_scores(split, bad, counts, examples.num_batches(batch_size), batch_size)
    if reduce_batches is not None:
        for sums in reduce_batches(kept):
            _add_sums(totals, sums)
    with plugin_call(head, "finalize"):
        return head.finalize(totals)


def _add_sums(totals: dict[str, torch.Tensor], sums: dict[str, torch.Tensor]) -> None:
    """Add one batch's metric sums to ``totals``, in place (the one order of additions)."""
    for name, value in sums.items():
        totals[name] = totals[name] + value if name in totals else value


def _nan_scores(
    split: str, bad: list[int], counts: list[float], num_batches: int, batch_size: int
) -> EvaluationError:
    """The error for NaN scores: which split, which batch, and what to try."""
    first, rows, later = bad[0], int(counts[bad[0]]), len(bad) - 1
    text = (
        f"NaN scores in the {split} split: batch {first + 1}/{num_batches} (batch size "
        f"{batch_size}) has {rows} {'row' if rows == 1 else 'rows'} with a NaN item score"
    )
    if later:
        text += f" (and {later} later {'batch' if later == 1 else 'batches'})"
    return EvaluationError(
        text + ". A NaN score cannot be ranked, so no metric is reported. The model's "
        "weights or activations are not finite: check the checkpoint it was loaded from, "
        "and lower the learning rate or set finetune.train.grad_clip if training diverged."
    )
