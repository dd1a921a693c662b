"""Smoke tests over EVERY registered component (timm style).

The parameters come from :func:`clue_fw.registry.build_registry`, so a component is
tested here the moment it registers: backbones (shapes, padding, gradients, causality,
safetensors round trip, seeding, left-padding invariance), trainable objectives on
every backbone, and heads (task building, loss, metrics) on every backbone.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from head_tasks import head_spec_and_data

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.augmentations.dropout import DropoutViewSpec
from clue_fw.components import BuildContext, ComponentSpec, SequenceEncoder
from clue_fw.data.dataset import SequenceData, build_sequence_data
from clue_fw.data.synthetic import generate_sequences
from clue_fw.registry import build_registry
from clue_fw.training.checkpoint import (
    load_checkpoint,
    load_module_tensors,
    module_tensors,
    save_checkpoint,
)

NUM_ITEMS, MAX_LEN, DIM = 30, 12, 16
CONTEXT = BuildContext(num_items=NUM_ITEMS, max_len=MAX_LEN)
REGISTRY = build_registry()
BACKBONES = list(REGISTRY.entries["backbone"])
OBJECTIVES = [kind for kind, e in REGISTRY.entries["objective"].items() if e.spec.trains]
HEADS = list(REGISTRY.entries["head"])


def make_spec(family: str, kind: str) -> ComponentSpec:
    """The registered spec with its defaults, shrunk to ``DIM`` where it has a ``dim``."""
    spec_class = REGISTRY.get(family, kind).spec
    small = {"dim": DIM} if "dim" in spec_class.model_fields else {}
    return spec_class.model_validate({"kind": kind, **small})


def make_backbone(kind: str, seed: int = 0, context: BuildContext = CONTEXT) -> SequenceEncoder:
    torch.manual_seed(seed)
    return make_spec("backbone", kind).build(context)  # type: ignore[attr-defined, no-any-return]


def left_pad(rows: list[list[int]], width: int = MAX_LEN) -> torch.Tensor:
    return torch.tensor([[0] * (width - len(r)) + r for r in rows])


SEQUENCES = [list(range(1, MAX_LEN + 1)), [13, 14, 15], [16], [17, 18, 19, 20, 21, 22, 23]]
ITEMS = left_pad(SEQUENCES)


def test_every_family_has_components() -> None:
    assert "transformer" in BACKBONES and OBJECTIVES and HEADS


# --------------------------------------------------------------------------- backbones


@pytest.mark.parametrize("kind", BACKBONES)
def test_backbone_contract_attributes(kind: str) -> None:
    model = make_backbone(kind)
    assert (model.num_items, model.max_len, model.dim) == (NUM_ITEMS, MAX_LEN, DIM)
    assert model.item_embedding.num_embeddings == CONTEXT.vocab_size
    assert model.item_embedding.embedding_dim == DIM
    assert model.item_embedding.padding_idx == 0


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("kind", BACKBONES)
def test_backbone_shapes_and_zero_padding_states(kind: str, train: bool) -> None:
    model = make_backbone(kind).train(train)
    for items in (ITEMS, ITEMS[:, -5:]):
        out = model(items)
        assert out.states.shape == (*items.shape, DIM)
        assert out.user.shape == (items.shape[0], DIM)
        padding = items == 0
        assert padding.any()
        assert torch.equal(out.states[padding], torch.zeros(int(padding.sum()), DIM))
        assert torch.isfinite(out.states).all() and torch.isfinite(out.user).all()


@pytest.mark.parametrize("kind", BACKBONES)
def test_backbone_empty_row_is_finite(kind: str) -> None:
    out = make_backbone(kind).eval()(torch.zeros(2, MAX_LEN, dtype=torch.long))
    assert torch.equal(out.states, torch.zeros(2, MAX_LEN, DIM))
    assert torch.isfinite(out.user).all()


@pytest.mark.parametrize("kind", BACKBONES)
def test_backbone_backward_reaches_item_embedding(kind: str) -> None:
    model = make_backbone(kind).train()
    out = model(ITEMS)
    weights = torch.randn(DIM, generator=torch.Generator().manual_seed(0))
    ((out.states * weights).sum() + (out.user * weights).sum()).backward()
    grad = model.item_embedding.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    used = ITEMS.unique()
    used = used[used != 0]
    assert (grad[used].abs().sum(dim=1) > 0).all()
    assert grad[0].abs().sum() == 0  # padding_idx
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} gets no gradient"


@pytest.mark.parametrize("kind", BACKBONES)
def test_backbone_states_are_causal(kind: str) -> None:
    model = make_backbone(kind).eval()
    base = model(ITEMS)
    for position in (MAX_LEN - 1, MAX_LEN // 2):
        changed = ITEMS.clone()
        changed[0, position] = NUM_ITEMS if ITEMS[0, position] != NUM_ITEMS else 1
        out = model(changed)
        torch.testing.assert_close(
            out.states[0, :position], base.states[0, :position], rtol=0, atol=1e-6
        )
        assert not torch.allclose(out.states[0, position], base.states[0, position])
        assert not torch.allclose(out.user[0], base.user[0])
        torch.testing.assert_close(out.states[1:], base.states[1:])  # other rows untouched


@pytest.mark.parametrize("kind", BACKBONES)
def test_backbone_safetensors_roundtrip(kind: str, tmp_path: Path) -> None:
    model = make_backbone(kind, seed=0).eval()
    path = tmp_path / "encoder.safetensors"
    save_checkpoint(path, module_tensors(model, "encoder."), {"kind": kind})
    tensors, metadata = load_checkpoint(path)
    assert metadata["kind"] == kind
    restored = make_backbone(kind, seed=1).eval()
    assert not torch.equal(restored(ITEMS).user, model(ITEMS).user)
    load_module_tensors(restored, tensors, "encoder.", path)
    expected, actual = model(ITEMS), restored(ITEMS)
    assert torch.equal(actual.states, expected.states)
    assert torch.equal(actual.user, expected.user)


@pytest.mark.parametrize("kind", BACKBONES)
def test_backbone_deterministic_under_manual_seed(kind: str) -> None:
    first, second = make_backbone(kind, seed=3), make_backbone(kind, seed=3)
    first_state, second_state = first.state_dict(), second.state_dict()
    assert first_state.keys() == second_state.keys()
    for name in first_state:
        assert torch.equal(first_state[name], second_state[name]), name
    for model in (first, second):
        model.eval()
    assert torch.equal(first(ITEMS).user, second(ITEMS).user)
    outputs = []
    for model in (first, second):
        torch.manual_seed(7)  # same dropout masks in training mode
        outputs.append(model.train()(ITEMS).user)
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("width", [8, 10, MAX_LEN])
@pytest.mark.parametrize("kind", BACKBONES)
def test_backbone_left_padding_invariance(kind: str, width: int) -> None:
    model = make_backbone(kind).eval()
    sequences = [[3, 4, 5, 6], [7], [8, 9, 10, 11, 12, 13, 14]]
    short = model(left_pad(sequences, 7))
    longer = model(left_pad(sequences, width))
    torch.testing.assert_close(longer.user, short.user, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(longer.states[:, -7:], short.states, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- objectives


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("kind", OBJECTIVES)
def test_objective_trains_on_every_backbone(kind: str, backbone: str) -> None:
    encoder = make_backbone(backbone).train()
    objective = make_spec("objective", kind).build(CONTEXT, encoder)  # type: ignore[attr-defined]
    objective.train()
    view = ViewPipeline([DropoutViewSpec().build(CONTEXT)], [1.0])
    generator = torch.Generator().manual_seed(0)
    output = objective(encoder, ITEMS, view, generator)
    assert output.loss.dim() == 0 and torch.isfinite(output.loss)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in output.terms.values())
    output.loss.backward()
    grad = encoder.item_embedding.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


# --------------------------------------------------------------------------- heads


@pytest.fixture(scope="module")
def sequence_data() -> SequenceData:
    raw = generate_sequences(
        num_users=40, num_items=NUM_ITEMS, min_length=4, max_length=16, num_clusters=3, seed=0
    )
    return build_sequence_data(raw)


@pytest.mark.parametrize("history", ["recent", "all"])
@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("kind", HEADS)
def test_head_task_loss_and_metrics_on_every_backbone(
    kind: str, backbone: str, history: str, sequence_data: SequenceData, tmp_path: Path
) -> None:
    spec, task_data = head_spec_and_data(REGISTRY, kind, sequence_data, tmp_path)
    if spec.history_problem(history):
        pytest.skip(f"head {kind} does not train with history {history}")
    context = BuildContext(num_items=task_data.sequences.num_items, max_len=MAX_LEN)
    task = spec.make_task(task_data, context, history)
    assert len(task.train) > 0 and len(task.valid) > 0 and len(task.test) > 0
    encoder = make_backbone(backbone, context=context).train()
    head = spec.build(context, encoder, task_data)
    head.train()
    batch = next(task.train.batches(16, torch.Generator().manual_seed(0), min_size=2))
    output = head.loss(encoder, batch)
    assert output.loss.dim() == 0 and torch.isfinite(output.loss)
    output.loss.backward()
    grad = encoder.item_embedding.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0

    encoder.eval()
    head.eval()
    totals: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for batch in task.test.batches(16):
            for name, value in head.metric_sums(encoder, batch).items():
                totals[name] = totals[name] + value if name in totals else value
    metrics = head.finalize(totals)
    assert metrics and all(math.isfinite(value) for value in metrics.values())


def _objective_and_head_modules(
    kind: str, family: str, seed: int, data: SequenceData, folder: Path
) -> torch.nn.Module:
    """An objective or head module (with its own parameters, if any) on a transformer."""
    if family == "head":
        spec, task_data = head_spec_and_data(REGISTRY, kind, data, folder)
        context = BuildContext(num_items=task_data.sequences.num_items, max_len=MAX_LEN)
        encoder = make_backbone("transformer", seed=seed, context=context)
        torch.manual_seed(seed)
        return spec.build(context, encoder, task_data)
    encoder = make_backbone("transformer", seed=seed)
    torch.manual_seed(seed)
    objective = REGISTRY.get(family, kind).spec.model_validate({"kind": kind})
    return objective.build(CONTEXT, encoder)  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize(
    ("family", "kind"), [("objective", k) for k in OBJECTIVES] + [("head", k) for k in HEADS]
)
def test_objective_and_head_state_roundtrips_and_is_seeded(
    family: str, kind: str, tmp_path: Path, sequence_data: SequenceData
) -> None:
    first = _objective_and_head_modules(kind, family, 3, sequence_data, tmp_path)
    again = _objective_and_head_modules(kind, family, 3, sequence_data, tmp_path)
    for (name, a), (_, b) in zip(
        first.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), f"{family} {kind}: {name} differs under the same seed"
    path = tmp_path / "module.safetensors"
    save_checkpoint(path, module_tensors(first, "m."), {"stage": "test"})
    other = _objective_and_head_modules(kind, family, 4, sequence_data, tmp_path)
    tensors, _ = load_checkpoint(path)
    load_module_tensors(other, tensors, "m.", path)
    for (name, a), (_, b) in zip(
        first.state_dict().items(), other.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), f"{family} {kind}: {name} did not survive safetensors"


@pytest.mark.parametrize("kind", list(REGISTRY.entries["augmentation"]))
def test_every_view_runs_on_device_batches_under_a_generator(kind: str) -> None:
    view = REGISTRY.get("augmentation", kind).spec.model_validate({"kind": kind}).build(CONTEXT)
    out_1 = view(ITEMS, torch.Generator().manual_seed(5))
    out_2 = view(ITEMS, torch.Generator().manual_seed(5))
    assert out_1.shape == ITEMS.shape and out_1.dtype == ITEMS.dtype
    assert torch.equal(out_1, out_2)
