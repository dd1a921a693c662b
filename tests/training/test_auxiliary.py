"""finetune.auxiliary: contrastive terms added to the fine-tuning loss (CL4SRec, DuoRec)."""

from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from rich.console import Console

import clue_fw.running.stage
from clue_fw import run
from clue_fw.components import BuildContext, HeadSpec
from clue_fw.errors import RecipeError
from clue_fw.recipe import validate_recipe
from clue_fw.resources import estimate_phases
from clue_fw.running.finetune import training_step
from clue_fw.training.auxiliary import AuxiliaryTerms, smallest_batch, term_names
from clue_fw.training.checkpoint import load_checkpoint

CLUE = {"kind": "clue", "projector_dim": 16, "predictor_dim": 8}
TIMING = ("seconds", "eval seconds", "seq/s")


def quiet() -> Console:
    return Console(file=io.StringIO())


def with_auxiliary(recipe: dict[str, Any], *terms: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(recipe)
    data["finetune"]["auxiliary"] = [copy.deepcopy(term) for term in terms]
    return data


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(RecipeError) as caught:
        validate_recipe(data)
    return str(caught.value)


# --------------------------------------------------------------------------- the recipe


def test_a_term_defaults_to_dropout_views_and_weight_0_1(tiny_recipe: dict[str, Any]) -> None:
    recipe = validate_recipe(with_auxiliary(tiny_recipe, {"objective": CLUE}))
    (term,) = recipe.finetune.auxiliary
    assert [view.kind for view in term.views] == ["dropout"]
    assert term.weight == 0.1


def test_objective_none_is_refused(tiny_recipe: dict[str, Any]) -> None:
    message = refused(with_auxiliary(tiny_recipe, {"objective": {"kind": "none"}}))
    assert "finetune.auxiliary.0" in message and "'none' trains nothing" in message


@pytest.mark.parametrize("weight", [0, -0.5, math.inf, math.nan])
def test_a_weight_that_is_not_positive_and_finite_is_refused(
    tiny_recipe: dict[str, Any], weight: float
) -> None:
    message = refused(with_auxiliary(tiny_recipe, {"objective": CLUE, "weight": weight}))
    assert "finetune.auxiliary.0.weight" in message


def test_probe_mode_is_refused(tiny_recipe: dict[str, Any]) -> None:
    data = with_auxiliary(tiny_recipe, {"objective": CLUE})
    data["finetune"]["mode"] = "probe"
    data["finetune"]["head"]["tie_weights"] = False  # a head that can probe
    message = refused(data)
    assert "finetune.auxiliary" in message and "probe" in message


def test_a_batch_smaller_than_the_objective_needs_is_refused(tiny_recipe: dict[str, Any]) -> None:
    data = with_auxiliary(tiny_recipe, {"objective": {"kind": "masked_item"}}, {"objective": CLUE})
    data["finetune"]["train"]["batch_size"] = 1
    message = refused(data)
    assert "finetune.train.batch_size" in message and "finetune.auxiliary.1" in message
    assert "at least 2" in message


def test_an_oversized_projector_is_refused(tiny_recipe: dict[str, Any]) -> None:
    objective = {**CLUE, "projector_dim": 1 << 20}
    message = refused(with_auxiliary(tiny_recipe, {"objective": objective}))
    assert "finetune.auxiliary.0" in message and "projector_dim must be at most" in message


def test_a_head_that_does_not_name_its_inputs_cannot_take_terms() -> None:
    class BareHeadSpec(HeadSpec):
        kind: Literal["bare"] = "bare"

        def make_task(self, task_data: Any, context: Any, history: str) -> Any:
            raise NotImplementedError

        def build(self, context: Any, encoder: Any, task_data: Any) -> Any:
            raise NotImplementedError

    problem = BareHeadSpec().auxiliary_problem
    assert problem is not None and "'bare'" in problem and "training_inputs" in problem


def test_every_built_in_head_names_its_inputs(tiny_recipe: dict[str, Any]) -> None:
    from clue_fw.heads.cold_start import ColdStartSpec
    from clue_fw.heads.next_item import NextItemSpec
    from clue_fw.heads.profile import ProfileSpec

    for spec in (NextItemSpec, ProfileSpec, ColdStartSpec):
        assert spec.training_inputs is not HeadSpec.training_inputs, spec
    window = torch.arange(12).reshape(2, 6)
    assert torch.equal(NextItemSpec().training_inputs({"window": window}), window[:, :-1])


def test_an_empty_list_dumps_as_no_list(tiny_recipe: dict[str, Any]) -> None:
    """``auxiliary: []`` is the recipe without the key: the same resolved recipe, hash and
    run identity (and runs started before the option existed still resume)."""
    plain = validate_recipe(tiny_recipe).model_dump(mode="json")
    empty = validate_recipe(with_auxiliary(tiny_recipe)).model_dump(mode="json")
    assert empty == plain and "auxiliary" not in empty["finetune"]
    listed = validate_recipe(with_auxiliary(tiny_recipe, {"objective": CLUE}))
    again = validate_recipe(listed.model_dump(mode="json"))
    assert again == listed and len(again.finetune.auxiliary) == 1


def test_term_names_tell_repeated_kinds_apart() -> None:
    assert term_names(["clue", "masked_item"]) == ["aux.clue", "aux.masked_item"]
    assert term_names(["clue", "masked_item", "clue"]) == [
        "aux.clue.0",
        "aux.masked_item",
        "aux.clue.2",
    ]


# --------------------------------------------------------------------------- the loss


def test_the_loss_is_the_head_loss_plus_the_weighted_term(tiny_recipe: dict[str, Any]) -> None:
    data = with_auxiliary(
        tiny_recipe, {"objective": CLUE, "views": [{"kind": "mask", "rho": 0.3}], "weight": 0.25}
    )
    data["backbone"]["dropout"] = 0.0  # no global randomness: one batch, one loss
    recipe = validate_recipe(data)
    context = BuildContext(num_items=50, max_len=10)
    torch.manual_seed(0)
    encoder = recipe.backbone.build(context)
    head = recipe.finetune.head.build(context, encoder, None)
    terms = AuxiliaryTerms.from_specs(recipe.finetune.auxiliary, context, encoder)
    window = torch.randint(1, 51, (16, 11))
    window[:4, :5] = 0  # some left padding
    batch = {"window": window}

    step = training_step(
        head, encoder, recipe.finetune.head, terms, None, torch.Generator().manual_seed(7)
    )  # type: ignore[arg-type]
    output = step(batch)

    head_loss = head.loss(encoder, batch).loss
    objective, views = terms.objectives[0], terms.views[0]
    term = objective(encoder, window[:, :-1], views, torch.Generator().manual_seed(7)).loss
    torch.testing.assert_close(output.loss, head_loss + 0.25 * term, rtol=0, atol=1e-6)
    assert output.terms["head"] == pytest.approx(float(head_loss.detach()), abs=1e-6)
    assert output.terms["aux.clue"] == pytest.approx(float(term.detach()), abs=1e-6)
    assert "aux.clue.z_std" in output.terms
    assert all(not t.requires_grad for t in output.terms.values())
    output.loss.backward()  # the term's modules get gradients, as the encoder does
    assert all(p.grad is not None for p in terms.objectives[0].projector.parameters())


def test_smallest_batch_is_the_largest_minimum(tiny_recipe: dict[str, Any]) -> None:
    assert smallest_batch([]) == 1
    recipe = validate_recipe(
        with_auxiliary(tiny_recipe, {"objective": {"kind": "masked_item"}}, {"objective": CLUE})
    )
    assert smallest_batch(recipe.finetune.auxiliary) == 2


def test_the_memory_estimate_counts_the_terms(tiny_recipe: dict[str, Any]) -> None:
    def step_phase(data: dict[str, Any]) -> Any:
        recipe = validate_recipe(data)
        context = BuildContext(num_items=50, max_len=10)
        phases = estimate_phases(recipe, context, 200, 2000, torch.device("cpu"))
        return next(p for p in phases if p.name == "a fine-tuning step")

    plain = step_phase(tiny_recipe)
    with_terms = step_phase(with_auxiliary(tiny_recipe, {"objective": CLUE}))
    by_name = {part.what.split(" (")[0]: part.bytes for part in plain.parts}
    bigger = {part.what.split(" (")[0]: part.bytes for part in with_terms.parts}
    # the projector and predictor are trained parameters with Adam state ...
    assert (
        bigger["fine-tuning parameters with gradients and Adam state"]
        > by_name["fine-tuning parameters with gradients and Adam state"]
    )
    # ... and CLUE's two views go through the encoder beside the head's batch
    assert with_terms.total > plain.total


# --------------------------------------------------------------------------- runs


def test_training_lowers_the_auxiliary_term(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    data = with_auxiliary(tiny_recipe, {"objective": CLUE, "weight": 1.0})
    del data["pretrain"]  # from the initialisation, so the term starts high
    data["finetune"]["train"].update(epochs=6, batch_size=16)  # about 80 steps
    data["finetune"]["patience"] = 10
    result = run(data, out=tmp_path / "run", console=quiet())
    _, meta = load_checkpoint(result.run_dir / "finetune" / "last.safetensors")
    rows = [row for row in meta["history"] if row["epoch"] > 0]
    assert len(rows) == 6
    assert rows[-1]["aux.clue"] < rows[0]["aux.clue"] - 0.1, [r["aux.clue"] for r in rows]
    # every row logs the head's loss beside the term, and the total is their sum
    for row in rows:
        assert row["loss"] == pytest.approx(row["head"] + row["aux.clue"], abs=1e-4)
    header = (result.run_dir / "finetune" / "history.csv").read_text().splitlines()[0]
    assert "aux.clue" in header.split(",") and "aux.clue.z_std" in header.split(",")
    assert "aux.clue" in (result.run_dir / "run.log").read_text()


def run_files(run_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], list[Any]]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best, _ = load_checkpoint(run_dir / "finetune" / "best.safetensors")
    _, last = load_checkpoint(run_dir / "finetune" / "last.safetensors")
    history = [{k: v for k, v in row.items() if k not in TIMING} for row in last["history"]]
    return {k: metrics[k] for k in ("valid", "test", "best_epoch", "epochs")}, best, history


def assert_same_run(one: Path, two: Path) -> None:
    metrics_1, best_1, history_1 = run_files(one)
    metrics_2, best_2, history_2 = run_files(two)
    assert metrics_2 == metrics_1  # exact
    assert best_2.keys() == best_1.keys()
    for name, value in best_1.items():
        assert torch.equal(best_2[name], value), name
    assert history_2 == history_1


def test_an_empty_list_trains_bit_identically(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    plain = run(tiny_recipe, out=tmp_path / "plain", console=quiet()).run_dir
    empty = run(with_auxiliary(tiny_recipe), out=tmp_path / "empty", console=quiet()).run_dir
    assert_same_run(plain, empty)
    sha = [(d / "recipe.yaml").read_text().split("recipe sha256 ")[1][:64] for d in (plain, empty)]
    assert sha[0] == sha[1]


class Interrupt(Exception):
    """Stands in for a kill right after a fine-tuning checkpoint."""


def test_checkpoints_hold_the_terms_and_resume_exactly(
    tiny_recipe: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = with_auxiliary(
        tiny_recipe,
        {"objective": CLUE, "views": [{"kind": "mask", "rho": 0.2}], "weight": 0.5},
    )
    data["finetune"]["head"]["tie_weights"] = False  # the head has Adam state of its own
    data["finetune"]["train"]["epochs"] = 4
    recipe = validate_recipe(data)
    reference = run(recipe, out=tmp_path / "reference", console=quiet()).run_dir

    tensors, meta = load_checkpoint(reference / "finetune" / "last.safetensors")
    projector = [k for k in tensors if k.startswith("model.auxiliary.objectives.0.projector.")]
    assert projector, sorted(tensors)[:10]
    # the optimiser trains (and the checkpoint keeps the state of) every parameter
    trained = {k.split(".")[1] for k in tensors if k.startswith("optim.") and "exp_avg_sq" in k}
    parameters = sum(len(group["params"]) for group in meta["optimizer"]["param_groups"])
    assert len(trained) == parameters

    real_save = clue_fw.running.stage.Stage.save

    def save_then_stop(self: Any, report: Any = None) -> None:
        real_save(self, report)
        if self.name == "finetune" and self.epoch == 2:
            raise Interrupt

    monkeypatch.setattr(clue_fw.running.stage.Stage, "save", save_then_stop)
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        run(recipe, out=interrupted, console=quiet())
    monkeypatch.setattr(clue_fw.running.stage.Stage, "save", real_save)
    assert not (interrupted / "metrics.json").exists()
    run(recipe, resume=interrupted, console=quiet())
    assert "finetune: resumed after epoch 2" in (interrupted / "run.log").read_text()
    assert_same_run(reference, interrupted)
    resumed, _ = load_checkpoint(interrupted / "finetune" / "last.safetensors")
    for name in projector:
        assert torch.equal(resumed[name], tensors[name]), name


def test_bf16_steps_train_with_a_term(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    data = with_auxiliary(tiny_recipe, {"objective": CLUE})
    data["finetune"]["train"].update(epochs=1, precision="bf16")
    result = run(data, out=tmp_path / "run", console=quiet())
    _, meta = load_checkpoint(result.run_dir / "finetune" / "last.safetensors")
    row = meta["history"][-1]
    assert all(math.isfinite(row[key]) for key in ("loss", "head", "aux.clue"))


def test_a_user_level_head_trains_with_a_term(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    """``profile`` reads each user's sequence: the term views those same sequences."""
    lines = ["user,label"] + [f"{user},c{user % 3}" for user in range(400)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    data = with_auxiliary(tiny_recipe, {"objective": CLUE})
    data["finetune"]["head"] = {"kind": "profile", "labels": {"path": "labels.csv"}}
    data["finetune"]["train"]["epochs"] = 2
    result = run(data, out=tmp_path / "run", console=quiet(), data_root=tmp_path)
    _, meta = load_checkpoint(result.run_dir / "finetune" / "last.safetensors")
    assert all(math.isfinite(row["aux.clue"]) for row in meta["history"] if row["epoch"])


def test_a_non_finite_term_stops_the_run_naming_it(
    tiny_recipe: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clue_fw.components import LossOutput
    from clue_fw.errors import TrainingError
    from clue_fw.objectives.clue import ClueObjective

    data = with_auxiliary(tiny_recipe, {"objective": CLUE})
    del data["pretrain"]  # ClueObjective runs only as the auxiliary term
    original = ClueObjective.forward

    def forward(self: ClueObjective, *args: Any) -> LossOutput:
        output = original(self, *args)
        return LossOutput(output.loss * float("nan"), output.terms)

    monkeypatch.setattr(ClueObjective, "forward", forward)
    with pytest.raises(TrainingError) as info:
        run(data, out=tmp_path / "run", console=quiet())
    message = str(info.value)
    assert "Non-finite loss in finetune epoch 1/3, batch 1/" in message
    assert "non-finite terms: aux.clue=nan" in message
