"""Contract checks of a downstream head (family ``head``).

A head prepares its task data from the synthetic sequences (reading the files its
``contract_example`` writes), builds train/valid/test examples for every
``finetune.train.history`` it accepts, and on every registered backbone returns a
finite scalar loss whose gradient reaches the encoder, and additive metric sums that
``finalize`` turns into finite metrics. A head that reads per-position states
(``position_states_use``) is not run on a backbone without them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from clue_fw.components import (
    BuildContext,
    DownstreamHead,
    HeadSpec,
    LossOutput,
    SequenceEncoder,
    TaskData,
)
from clue_fw.registry import ComponentEntry
from clue_fw.testing._require import require
from clue_fw.testing.backbones import make_backbone
from clue_fw.testing.data import MAX_LEN, sequence_data
from clue_fw.testing.objectives import skip_without_states
from clue_fw.testing.specs import ContractError, example_spec
from clue_fw.testing.state import assert_state_roundtrips

if TYPE_CHECKING:
    from clue_fw.testing.cases import ContractCase

HISTORIES = ("recent", "all")


def prepare_head(entry: ComponentEntry, folder: Path) -> tuple[HeadSpec, TaskData, BuildContext]:
    """The head's example spec, its task data and the context its modules are built for."""
    spec = example_spec(entry, sequence_data(), folder)
    assert isinstance(spec, HeadSpec)
    task_data = spec.prepare(sequence_data(), folder)
    if not isinstance(task_data, TaskData):
        raise ContractError(
            f"{type(spec).__qualname__}.prepare returned {type(task_data).__name__}, not a "
            "clue_fw.components.TaskData."
        )
    data = task_data.sequences
    context = BuildContext(data.num_items, MAX_LEN, item_ids=data.item_ids, data_root=folder)
    return spec, task_data, context


def make_head(
    entry: ComponentEntry, backbone: ComponentEntry, folder: Path, seed: int = 0
) -> tuple[SequenceEncoder, DownstreamHead, HeadSpec, TaskData, BuildContext]:
    spec, task_data, context = prepare_head(entry, folder)
    encoder = make_backbone(backbone, folder, seed, context)
    torch.manual_seed(seed)
    head = spec.build(context, encoder, task_data)
    if not isinstance(head, DownstreamHead):
        raise ContractError(
            f"{type(spec).__qualname__}.build returned {type(head).__name__}; a head spec builds "
            "a clue_fw.components.DownstreamHead."
        )
    return encoder, head, spec, task_data, context


def check_trains(case: ContractCase, folder: Path) -> None:
    """Per history the head accepts: examples in every split, one training step, metrics."""
    assert case.partner is not None
    skip_without_states(case, folder, "finetune.head")
    spec, _, _ = prepare_head(case.entry, folder)
    histories = [h for h in HISTORIES if not spec.history_problem(h)]
    if not histories:
        require("pytest").skip(f"head {case.entry.kind} accepts no history of {HISTORIES}")
    for history in histories:
        encoder, head, spec, task_data, context = make_head(case.entry, case.partner, folder)
        task = spec.make_task(task_data, context, history)
        for split in ("train", "valid", "test"):
            assert len(task.split(split)) > 0, f"history {history}: no {split} examples"
        encoder.train()
        head.train()
        batch = next(task.train.batches(16, torch.Generator().manual_seed(0), min_size=2))
        if spec.auxiliary_problem is None:  # what finetune.auxiliary terms view
            inputs = spec.training_inputs(batch)
            rows = next(iter(batch.values())).shape[0]
            assert isinstance(inputs, torch.Tensor) and inputs.dim() == 2, (
                f"training_inputs returned {type(inputs).__name__}, not a [B, n] tensor"
            )
            assert inputs.shape[0] == rows and not inputs.is_floating_point(), (
                f"training_inputs: {inputs.dtype} {list(inputs.shape)} for a batch of {rows}"
            )
            assert 0 <= int(inputs.min()) and int(inputs.max()) <= context.mask_id, (
                "training_inputs: ids outside 0..mask_id"
            )
        output = head.loss(encoder, batch)
        assert isinstance(output, LossOutput), (
            f"loss returned {type(output).__name__}, not LossOutput(loss, terms)"
        )
        assert output.loss.dim() == 0 and torch.isfinite(output.loss), f"loss {output.loss}"
        output.loss.backward()
        grad = encoder.item_embedding.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, (
            f"history {history}: the loss gradient does not reach the encoder"
        )

        encoder.eval()
        head.eval()
        totals: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for batch in task.test.batches(16):
                for name, value in head.metric_sums(encoder, batch).items():
                    totals[name] = totals[name] + value if name in totals else value
        metrics = head.finalize(totals)
        assert metrics, "finalize returned no metric"
        assert all(math.isfinite(value) for value in metrics.values()), metrics
        assert spec.monitor_default in metrics, (
            f"monitor_default {spec.monitor_default!r} is not among the metrics {sorted(metrics)}"
        )


def check_state_roundtrip(case: ContractCase, folder: Path) -> None:
    """The head's own parameters are seeded and survive a safetensors round trip."""
    backbone = case.partner
    assert backbone is not None

    def make(seed: int) -> DownstreamHead:
        return make_head(case.entry, backbone, folder, seed)[1]

    assert_state_roundtrips(make, folder, f"head {case.entry.kind}")


CHECKS = {"state_roundtrip": check_state_roundtrip}
PAIR_CHECKS = {"trains": check_trains}
