"""The training loop: one epoch of optimisation, and evaluation. Small and plain."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from clue_fw.components import DownstreamHead, LossOutput, SequenceEncoder
from clue_fw.data.examples import Batch, ExampleSet
from clue_fw.errors import TrainingError
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
) -> EpochStats:
    """Run ``step`` on every batch, back-propagate and update. Stops on a non-finite loss."""
    total_loss = torch.zeros((), dtype=torch.float64)
    term_totals: dict[str, float] = {}
    examples = 0
    started = time.perf_counter()
    with reporter.progress(description, num_batches) as update:
        for index, batch in enumerate(batches):
            size = next(iter(batch.values())).shape[0]
            output = step(batch)
            loss_value = float(output.loss.detach())
            if not math.isfinite(loss_value):
                terms = ", ".join(f"{k}={float(v):.4g}" for k, v in output.terms.items())
                raise TrainingError(
                    f"{description}: the loss became {loss_value} at batch {index + 1}"
                    + (f" (terms: {terms})" if terms else "")
                    + ". The last good checkpoint is kept; lower the learning rate or set "
                    "train.grad_clip, then resume with --resume."
                )
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
            optimizer.step()
            total_loss += loss_value * size
            for name, value in output.terms.items():
                term_totals[name] = term_totals.get(name, 0.0) + float(value) * size
            examples += size
            elapsed = time.perf_counter() - started
            update(1, float(total_loss) / examples, examples / max(elapsed, 1e-9))
    seconds = time.perf_counter() - started
    count = max(examples, 1)
    return EpochStats(
        loss=float(total_loss) / count,
        terms={k: v / count for k, v in term_totals.items()},
        examples=examples,
        seconds=seconds,
    )


@torch.no_grad()
def evaluate(
    head: DownstreamHead, encoder: SequenceEncoder, examples: ExampleSet, batch_size: int
) -> dict[str, float]:
    """Exact metrics over ``examples``: additive per-batch sums, finalised once."""
    was_training = encoder.training, head.training
    encoder.eval()
    head.eval()
    totals: dict[str, torch.Tensor] = {}
    for batch in examples.batches(batch_size):
        for name, value in head.metric_sums(encoder, batch).items():
            totals[name] = totals[name] + value if name in totals else value
    encoder.train(was_training[0])
    head.train(was_training[1])
    return head.finalize(totals)
