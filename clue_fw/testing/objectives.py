"""Contract checks of a pre-training objective (family ``objective``).

An objective built for an encoder returns ``LossOutput(loss, terms)`` from
``forward(encoder, items, view, generator)``: a finite scalar loss whose gradient
reaches the encoder's item embeddings, and finite terms. It is run on every
registered backbone (but those without per-position states, when it reads them:
``position_states_use``) with the ``dropout`` view, which leaves the items unchanged: the
two branches then differ only through the encoder's dropout (train mode), so an
objective must encode each branch itself. Objectives whose spec says
``trains = False`` (``none``) are never built and have no checks.

An objective is built with :func:`objective_context`: the context's ``item_ids`` are the
synthetic data's and its ``data_root`` is the folder where the spec's
``contract_example(data, root)`` writes its side files (item attributes, say).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.augmentations.dropout import DropoutViewSpec
from clue_fw.components import (
    BuildContext,
    LossOutput,
    ObjectiveSpec,
    PretrainObjective,
    SequenceEncoder,
)
from clue_fw.registry import ComponentEntry
from clue_fw.testing._require import require
from clue_fw.testing.backbones import has_position_states, make_backbone
from clue_fw.testing.data import CONTEXT, ITEMS, sequence_data
from clue_fw.testing.specs import ContractError, example_spec
from clue_fw.testing.state import assert_state_roundtrips

if TYPE_CHECKING:
    from clue_fw.testing.cases import ContractCase


def objective_context(folder: Path) -> BuildContext:
    """``CONTEXT`` with the synthetic data's item ids and ``folder`` as the data root, where
    ``contract_example`` writes an objective's side files (item attributes, say)."""
    data = sequence_data()
    assert data.num_items == CONTEXT.num_items
    return dataclasses.replace(CONTEXT, item_ids=data.item_ids, data_root=folder)


def make_objective(
    entry: ComponentEntry, backbone: ComponentEntry, folder: Path, seed: int = 0
) -> tuple[SequenceEncoder, PretrainObjective]:
    """``(encoder, objective)``: ``backbone``'s encoder, then the objective built on it,
    each under ``torch.manual_seed(seed)``."""
    encoder = make_backbone(backbone, folder, seed)
    spec = example_spec(entry, sequence_data(), folder)
    assert isinstance(spec, ObjectiveSpec)
    torch.manual_seed(seed)
    objective = spec.build(objective_context(folder), encoder)
    if not isinstance(objective, PretrainObjective):
        raise ContractError(
            f"{type(spec).__qualname__}.build returned {type(objective).__name__}; an objective "
            "spec builds a clue_fw.components.PretrainObjective."
        )
    return encoder, objective


def skip_without_states(case: ContractCase, folder: Path, where: str) -> None:
    """Skip a pair whose backbone has no per-position states when the objective or head
    (its example spec) reads them: recipes refuse that pair at validation."""
    assert case.partner is not None
    if has_position_states(case.partner):
        return
    spec = example_spec(case.entry, sequence_data(), folder)
    use = spec.position_states_use(where)  # type: ignore[attr-defined]
    if use:
        require("pytest").skip(
            f"backbone {case.partner.kind} has no per-position states and {use}; recipes "
            "refuse this pair"
        )


def check_trains(case: ContractCase, folder: Path) -> None:
    """One training step on the partner backbone: scalar finite loss, finite terms, and a
    gradient that reaches the encoder."""
    assert case.partner is not None
    skip_without_states(case, folder, "pretrain.objective")
    encoder, objective = make_objective(case.entry, case.partner, folder)
    encoder.train()
    objective.train()
    view = ViewPipeline.from_specs([DropoutViewSpec()], CONTEXT)
    output = objective(encoder, ITEMS, view, torch.Generator().manual_seed(0))
    assert isinstance(output, LossOutput), (
        f"forward returned {type(output).__name__}, not LossOutput(loss, terms)"
    )
    assert output.loss.dim() == 0 and torch.isfinite(output.loss), f"loss {output.loss}"
    for name, value in output.terms.items():
        value = torch.as_tensor(value)
        assert torch.isfinite(value).all(), f"term {name} is {value}"
        assert not value.requires_grad, f"term {name} must be detached (torch.no_grad)"
    output.loss.backward()
    grad = encoder.item_embedding.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, (
        "the loss gradient does not reach the encoder's item embeddings"
    )


def check_state_roundtrip(case: ContractCase, folder: Path) -> None:
    """The objective's own parameters are seeded and survive a safetensors round trip."""
    backbone = case.partner
    assert backbone is not None

    def make(seed: int) -> PretrainObjective:
        return make_objective(case.entry, backbone, folder, seed)[1]

    assert_state_roundtrips(make, folder, f"objective {case.entry.kind}")


CHECKS = {"state_roundtrip": check_state_roundtrip}
PAIR_CHECKS = {"trains": check_trains}
