"""Where a training epoch's CPU time goes: ``torch.profiler`` over one epoch of each stage.

    CLUE_DATA_DIR=... python benchmarks/cpu_step_profile.py [RECIPE] [--set KEY=VALUE ...] \
        [--native-dropout] [--rows 15] [--out FILE.json]
    python benchmarks/cpu_step_profile.py --micro

``RECIPE`` (default ``recipes/ml30_dropout_cpu.yaml``) runs in-process with one
pre-training and one fine-tuning epoch (``--set`` adds overrides, e.g.
``--set finetune.train.precision=bf16``), each epoch under the profiler, on the CPU. It
prints each epoch's seconds, the top operators by self CPU time, and the share of the
dropout mask draws (``bernoulli_`` for PyTorch's dropout, ``uniform_`` for
:mod:`clue_fw.backbones.dropout`). ``--native-dropout`` swaps PyTorch's dropout back in, to
measure what the change did.

``--micro`` times, on random tensors of ml30_dropout_cpu's shapes, PyTorch's dropout
against clue_fw's, forward and backward, and the sampled-softmax loss of
:class:`clue_fw.item_softmax.ItemLoss` against the same loss written with the
concatenated ``[rows, 1 + negatives]`` logits it replaced (same value and gradients).

The numbers of ``docs/scale.md`` ("What the training loop does for speed") come from here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
MASK_DRAWS = ("aten::bernoulli_", "aten::uniform_")


def timed(function: Callable[[], object], repeats: int = 20) -> float:
    """Milliseconds per call of ``function``, after one call to warm up."""
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats * 1e3


def concatenated_sampled_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    candidates: torch.Tensor,
    log_q: torch.Tensor,
) -> torch.Tensor:
    """The sampled softmax as ItemLoss computed it before (concatenated logits)."""
    positive = (hidden * weight[targets]).sum(dim=-1)
    negative = hidden @ weight[candidates].T - log_q
    unusable = (candidates.unsqueeze(0) == targets.unsqueeze(1)) | (candidates == 0)
    negative = negative.masked_fill(unusable, float("-inf"))
    logits = torch.cat([positive.unsqueeze(1), negative], dim=1)
    per_row = torch.logsumexp(logits, dim=1) - positive
    real = (targets != 0).to(per_row.dtype)
    return (per_row * real).sum() / real.sum().clamp(min=1.0)


def micro() -> dict[str, Any]:
    """Dropout and sampled-softmax timings on ml30_dropout_cpu's shapes."""
    from clue_fw.backbones.dropout import dropout
    from clue_fw.item_softmax import ItemLoss

    torch.manual_seed(0)
    x = torch.randn(512, 31, 256)  # a pre-training batch's FFN activations (2 views)

    def forward_backward(drop: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def call() -> None:
            leaf = x.clone().requires_grad_()
            drop(leaf).sum().backward()

        return call

    results: dict[str, Any] = {
        "dropout_shape": list(x.shape),
        "torch_dropout_ms": timed(forward_backward(lambda t: F.dropout(t, 0.5, True))),
        "clue_dropout_ms": timed(forward_backward(lambda t: dropout(t, 0.5, True))),
    }
    rows, negatives, dim, items = 256 * 30, 1024, 64, 3706  # a fine-tuning batch
    hidden0 = torch.randn(rows, dim)
    weight0 = torch.randn(items + 1, dim) * 0.1
    targets = torch.randint(0, items + 1, (rows,))
    loss = ItemLoss("sampled", items, None, negatives=negatives, in_batch=False)

    def new() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden, weight = hidden0.clone().requires_grad_(), weight0.clone().requires_grad_()
        value = loss(hidden, targets, weight, torch.Generator().manual_seed(1))
        value.backward()
        return value.detach(), hidden.grad, weight.grad  # type: ignore[return-value]

    def old() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden, weight = hidden0.clone().requires_grad_(), weight0.clone().requires_grad_()
        candidates = loss._candidates(targets, torch.Generator().manual_seed(1))
        log_q = torch.log(loss._expected_counts(candidates, targets != 0))
        value = concatenated_sampled_loss(hidden, targets, weight, candidates, log_q)
        value.backward()
        return value.detach(), hidden.grad, weight.grad  # type: ignore[return-value]

    same = all(
        torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(new(), old(), strict=True)
    )
    results.update(
        loss_shape=[rows, negatives],
        concatenated_loss_ms=timed(old, 10),
        clue_loss_ms=timed(new, 10),
        loss_and_gradients_equal=same,
    )
    return results


def profile_recipe(
    recipe: str, overrides: list[str], rows: int, native_dropout: bool, run_dir: Path
) -> dict[str, Any]:
    """One epoch of each stage of ``recipe`` (run into ``run_dir``) under the profiler:
    each epoch's seconds, its mask draws' share and its top operators."""
    import clue_fw.backbones.dropout as clue_dropout
    import clue_fw.running.stage as stage
    from clue_fw.cli import app

    own_dropout = clue_dropout.dropout
    if native_dropout:
        clue_dropout.dropout = F.dropout  # type: ignore[assignment]
    original = stage.train_epoch
    epochs: list[dict[str, Any]] = []

    def profiled(*args: Any, **kwargs: Any) -> Any:
        description = str(args[7] if len(args) > 7 else kwargs.get("description"))
        activities = [torch.profiler.ProfilerActivity.CPU]
        with torch.profiler.profile(activities=activities) as profiler:
            started = time.perf_counter()
            result = original(*args, **kwargs)
            seconds = time.perf_counter() - started
        averages = profiler.key_averages()
        total = sum(event.self_cpu_time_total for event in averages)
        top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
        draws = sum(e.self_cpu_time_total for e in averages if e.key in MASK_DRAWS)
        epochs.append(
            {
                "epoch": description,
                "seconds": round(seconds, 3),
                "mask_draw_share": round(draws / total, 4) if total else 0.0,
                "top": [
                    {"op": e.key, "share": round(e.self_cpu_time_total / total, 4)} for e in top
                ],
            }
        )
        return result

    stage.train_epoch = profiled
    sets = ["device=cpu", "pretrain.train.epochs=1", "finetune.train.epochs=1", *overrides]
    argv = ["clue", "run", recipe, "--out", str(run_dir)]
    for item in sets:
        argv += ["--set", item]
    sys.argv = argv
    try:
        app(standalone_mode=False)
    finally:
        stage.train_epoch = original
        clue_dropout.dropout = own_dropout  # type: ignore[assignment]
    return {"recipe": recipe, "overrides": sets, "native_dropout": native_dropout, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", nargs="?", default="recipes/ml30_dropout_cpu.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--native-dropout", action="store_true")
    parser.add_argument("--micro", action="store_true")
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if args.micro:
        result: dict[str, Any] = {"machine": machine, **micro()}
        for key, value in result.items():
            print(f"{key}: {round(value, 2) if isinstance(value, float) else value}")
    else:
        with tempfile.TemporaryDirectory() as scratch:
            profile = profile_recipe(
                args.recipe, args.overrides, args.rows, args.native_dropout, Path(scratch) / "run"
            )
        result = {"machine": machine, **profile}
        for epoch in result["epochs"]:
            print(
                f"{epoch['epoch']}: {epoch['seconds']:.2f} s, mask draws "
                f"{epoch['mask_draw_share']:.0%} of the operators' self CPU time"
            )
            for row in epoch["top"]:
                print(f"    {row['share']:6.1%}  {row['op']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
