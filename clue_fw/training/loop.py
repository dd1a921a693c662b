"""The training loop: one epoch of optimisation, and evaluation. Small and plain."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from clue_fw.components import DownstreamHead, LossOutput, SequenceEncoder
from clue_fw.data.examples import Batch, Batches, ExampleSet
from clue_fw.errors import EvaluationError, NonFiniteError, PluginError, TrainingError
from clue_fw.metrics.ranking import NAN_ROWS
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
) -> EpochStats:
    """Run ``step`` on every batch, back-propagate and update.

    Numerical guard: a non-finite loss or gradient norm raises :class:`TrainingError`
    before the optimiser step, naming ``description`` (stage and epoch), the batch,
    the global step (``first_step`` + batch number) and the non-finite loss terms.
    Parameters are checked once more at the end of the epoch, so the caller never
    checkpoints a non-finite model. ``grad_clip`` clips the global gradient norm.
    """
    if num_batches <= 0:
        raise TrainingError(_no_batches(description, batches))
    total_loss = torch.zeros((), dtype=torch.float64)
    term_totals: dict[str, float] = {}
    examples = 0
    started = time.perf_counter()
    with reporter.progress(description, num_batches) as update:
        for index, batch in enumerate(batches):
            size = next(iter(batch.values())).shape[0]
            output = step(batch)
            _check_loss_output(output, loss_name)
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            if grad_clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
            else:
                norm = _grad_norm(parameters, output.loss)
            # One host sync per step, as before: the loss and the gradient norm together.
            loss_value, norm_value = torch.stack(
                [output.loss.detach().float(), norm.detach().float().to(output.loss.device)]
            ).tolist()
            if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                where = (
                    f"{description}, batch {index + 1}/{num_batches} "
                    f"(global step {first_step + index + 1})"
                )
                raise _non_finite(where, loss_name, loss_value, norm_value, output)
            optimizer.step()
            total_loss += loss_value * size
            for name, value in output.terms.items():
                term_totals[name] = term_totals.get(name, 0.0) + float(value) * size
            examples += size
            elapsed = time.perf_counter() - started
            update(1, float(total_loss) / examples, examples / max(elapsed, 1e-9))
    if examples == 0:
        raise TrainingError(_no_batches(description, batches))
    if parameters and not bool(
        torch.stack([p.detach().isfinite().all() for p in parameters]).all()
    ):
        raise TrainingError(
            f"Non-finite parameters after {description}: the optimiser step overflowed "
            "although every loss and gradient was finite (is the learning rate huge?)."
        )
    seconds = time.perf_counter() - started
    count = max(examples, 1)
    return EpochStats(
        loss=float(total_loss) / count,
        terms={k: v / count for k, v in term_totals.items()},
        examples=examples,
        seconds=seconds,
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
    from clue_fw.registry import provider_of

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
) -> dict[str, float]:
    """Exact metrics over ``examples``: additive per-batch sums, finalised once.

    A head may report, under :data:`~clue_fw.metrics.ranking.NAN_ROWS`, how many rows
    of a batch it scored NaN. Those counts stay on the device and are read once, at
    the end; any non-zero count raises :class:`EvaluationError` naming ``split``
    ("valid", "test") and the first batch that had one.
    """
    was_training = encoder.training, head.training
    encoder.eval()
    head.eval()
    totals: dict[str, torch.Tensor] = {}
    nan_rows: list[torch.Tensor] = []
    try:
        for batch in examples.batches(batch_size):
            sums = head.metric_sums(encoder, batch)
            if NAN_ROWS in sums:
                nan_rows.append(sums.pop(NAN_ROWS).reshape(()))
            for name, value in sums.items():
                totals[name] = totals[name] + value if name in totals else value
    finally:
        encoder.train(was_training[0])
        head.train(was_training[1])
    if nan_rows:
        counts = torch.stack([n.to(nan_rows[0].device) for n in nan_rows]).tolist()
        bad = [index for index, count in enumerate(counts) if count > 0]
        if bad:
            raise _nan_scores(split, bad, counts, examples.num_batches(batch_size), batch_size)
    return head.finalize(totals)


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
