"""Optimisers and learning-rate schedules (clue_fw.training.optim) and their recipe keys:
schedule values, which optimiser a recipe builds, the default left bit-identical, the
numerical guard for every optimiser, exact resumption under a schedule, and the recipe's
refusals of combinations that make no sense."""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from test_resume import assert_same_outcome
from torch import nn

import clue_fw.running.stage as finetune_module  # both stages build their optimiser there
import clue_fw.running.stage as pretrain_module
from clue_fw.analysis.history_csv import read_history
from clue_fw.components import LossOutput
from clue_fw.data.examples import ExampleSet
from clue_fw.errors import RecipeError, TrainingError
from clue_fw.recipe import TrainSpec, validate_recipe
from clue_fw.runner import run
from clue_fw.running.stage import Stage
from clue_fw.training.checkpoint import load_checkpoint
from clue_fw.training.loop import train_epoch
from clue_fw.training.optim import build_optimizer, lr_schedule
from clue_fw.training.report import Reporter

OPTIMIZERS = ["adam", "adamw", "sgd"]


def quiet() -> Console:
    return Console(file=io.StringIO())


# --------------------------------------------------------------------------- schedules


def test_the_default_schedule_is_the_constant_lr_and_leaves_the_optimiser_alone() -> None:
    schedule = lr_schedule(TrainSpec(epochs=3, lr=2e-3), steps_per_epoch=7)
    assert not schedule.varies  # the loop never touches the optimiser's lr
    assert {schedule(step) for step in range(25)} == {2e-3}


def test_warmup_rises_linearly_to_the_peak() -> None:
    train = TrainSpec(epochs=4, lr=1e-3, warmup_epochs=1)
    schedule = lr_schedule(train, steps_per_epoch=10)
    assert schedule.warmup_steps == 10 and schedule.varies
    assert schedule(0) == pytest.approx(1e-4)  # warm-up start: lr / warm-up steps
    assert schedule(4) == pytest.approx(5e-4)
    assert schedule(9) == 1e-3  # warm-up end: the peak
    assert schedule(10) == schedule(39) == 1e-3  # constant after it


@pytest.mark.parametrize(
    ("kind", "quarter"), [("cosine", 0.5 + 0.5 * math.sqrt(0.5)), ("linear", 0.75)]
)
def test_decay_midpoint_and_floor(kind: str, quarter: float) -> None:
    train = TrainSpec(epochs=5, lr=1e-3, schedule=kind, warmup_epochs=1, min_lr=1e-4)
    schedule = lr_schedule(train, steps_per_epoch=10)  # 10 warm-up steps, 40 decay steps
    assert schedule.total_steps == 50
    assert schedule(9) == schedule(10) == 1e-3  # warm-up end, decay start
    assert schedule(20) == pytest.approx(1e-4 + 0.9e-3 * quarter)
    assert schedule(30) == pytest.approx(5.5e-4)  # the midpoint: halfway to min_lr
    assert 1e-4 < schedule(49) < schedule(48)  # the last step is above the floor
    assert schedule(50) == schedule(500) == pytest.approx(1e-4)  # the floor holds
    steps = [schedule(step) for step in range(10, 50)]
    assert steps == sorted(steps, reverse=True)


def test_fractional_warmup_is_rounded_and_never_zero() -> None:
    assert lr_schedule(TrainSpec(epochs=2, warmup_epochs=0.25), 10).warmup_steps == 3  # 2.5
    assert lr_schedule(TrainSpec(epochs=2, warmup_epochs=0.01), 10).warmup_steps == 1
    assert lr_schedule(TrainSpec(epochs=2, warmup_epochs=2), 10).warmup_steps == 20
    # a stage without batches (refused by the loop) still has a rate to report
    assert lr_schedule(TrainSpec(epochs=2, warmup_epochs=1, schedule="cosine"), 0)(-1) == 1e-3


def test_linear_lr_scale_uses_the_global_batch() -> None:
    assert TrainSpec(epochs=1, lr=1e-3, batch_size=64, lr_scale="linear").peak_lr == 2.5e-4
    assert TrainSpec(epochs=1, lr=1e-3, batch_size=256, lr_scale="linear").peak_lr == 1e-3
    assert TrainSpec(epochs=1, lr=1e-3, batch_size=64).peak_lr == 1e-3
    scaled = TrainSpec(epochs=2, lr=0.05, batch_size=512, lr_scale="linear", schedule="cosine")
    assert lr_schedule(scaled, 4)(0) == 0.1
    optimizer = build_optimizer([nn.Parameter(torch.zeros(2))], scaled)
    assert optimizer.param_groups[0]["lr"] == 0.1


# --------------------------------------------------------------------------- optimisers


def test_each_optimizer_is_built_with_its_settings() -> None:
    def build(**train: Any) -> torch.optim.Optimizer:
        return build_optimizer([nn.Parameter(torch.zeros(2))], TrainSpec(epochs=1, **train))

    adam = build()
    assert type(adam) is torch.optim.Adam
    group = adam.param_groups[0]
    assert group["betas"] == (0.9, 0.999) and group["weight_decay"] == 0.0
    assert not group["fused"]  # fused on CUDA only
    adamw = build(optimizer="adamw", weight_decay=0.05, betas=[0.8, 0.99])
    assert type(adamw) is torch.optim.AdamW
    assert adamw.param_groups[0]["betas"] == (0.8, 0.99)
    assert adamw.param_groups[0]["weight_decay"] == 0.05
    sgd = build(optimizer="sgd", lr=0.1)
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.9
    assert build(optimizer="sgd", momentum=0.0).param_groups[0]["momentum"] == 0.0
    fused = build_optimizer([nn.Parameter(torch.zeros(2))], TrainSpec(epochs=1), fused=True)
    assert fused.param_groups[0]["fused"]


def test_adamw_decays_the_weights_and_adam_adds_the_decay_to_the_gradient() -> None:
    """A zero gradient: AdamW only shrinks the weight by lr x weight_decay; Adam's L2
    term becomes the gradient, normalised to a step of about lr."""

    def one_step(optimizer: str) -> float:
        weight = nn.Parameter(torch.tensor([1.0]))
        train = TrainSpec(epochs=1, lr=0.1, weight_decay=0.5, optimizer=optimizer)
        built = build_optimizer([weight], train)
        weight.grad = torch.zeros(1)
        built.step()
        return weight.item()

    assert one_step("adamw") == pytest.approx(1.0 - 0.1 * 0.5)
    assert one_step("adam") == pytest.approx(1.0 - 0.1, abs=1e-6)


def test_sgd_with_momentum_accumulates_the_gradient() -> None:
    weight = nn.Parameter(torch.tensor([0.0]))
    optimizer = build_optimizer([weight], TrainSpec(epochs=1, lr=0.1, optimizer="sgd"))
    for _ in range(2):
        weight.grad = torch.ones(1)
        optimizer.step()
    # buffer 1, then 0.9 + 1: steps of 0.1 and 0.19
    assert weight.item() == pytest.approx(-0.29)


def old_adam(parameters: list[nn.Parameter], train: Any) -> torch.optim.Adam:
    """The optimiser every stage built before optimiser options existed."""
    fused = bool(parameters) and parameters[0].device.type == "cuda"
    return torch.optim.Adam(
        parameters, lr=train.lr, weight_decay=train.weight_decay, fused=fused or None
    )


def test_a_recipe_without_the_new_keys_trains_exactly_as_before(
    tmp_path: Path, tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_recipe["finetune"]["train"]["weight_decay"] = 0.01
    recipe = validate_recipe(tiny_recipe)
    now = run(recipe, out=tmp_path / "now", console=quiet()).run_dir
    monkeypatch.setattr(pretrain_module, "build_optimizer", old_adam)
    monkeypatch.setattr(finetune_module, "build_optimizer", old_adam)
    before = run(recipe, out=tmp_path / "before", console=quiet()).run_dir
    assert_same_outcome(before, now)
    history = read_history(now / "finetune" / "history.csv")
    assert [row["lr"] for row in history[1:]] == [1e-3] * 3  # epoch 0 evaluates only


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_recipe_trains_with_the_optimizer_and_schedule_it_names(
    tmp_path: Path, tiny_recipe: dict[str, Any], optimizer: str
) -> None:
    train = {"optimizer": optimizer, "lr": 0.01, "schedule": "linear", "warmup_epochs": 1}
    tiny_recipe["finetune"]["train"].update(train)
    run_dir = run(validate_recipe(tiny_recipe), out=tmp_path / "run", console=quiet()).run_dir
    tensors, meta = load_checkpoint(run_dir / "finetune" / "last.safetensors")
    state = {name.rsplit(".", 1)[-1] for name in tensors if name.startswith("optim.")}
    sgd = optimizer == "sgd"
    assert state == ({"momentum_buffer"} if sgd else {"exp_avg", "exp_avg_sq", "step"})
    lrs = [row["lr"] for row in read_history(run_dir / "finetune" / "history.csv")[1:]]
    # warm-up over epoch 1 reaches 0.01 at its last step; then 2 epochs of linear decay
    assert lrs[0] == 0.01 and 0 < lrs[2] < lrs[1] < 0.01
    if not sgd:  # Adam counts its steps: 3 epochs of n batches
        n = int(tensors["optim.0.step"].item()) // 3
        assert lrs[1] == pytest.approx(0.01 * (1 - (n - 1) / (2 * n)))
    assert meta["history"][1]["lr"] == lrs[0]


# --------------------------------------------------------------------------- the guard


def reporter() -> Reporter:
    return Reporter(Console(file=io.StringIO()))


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize(("fused", "check_every"), [(False, 1), (False, 4), (True, 4)])
def test_no_step_changes_the_weights_from_the_first_non_finite_batch(
    optimizer: str, fused: bool, check_every: int
) -> None:
    """Immediate checks (CPU), a plain optimiser under deferred checks (read every step
    all the same), and a fused optimiser under deferred checks (steps skipped on the
    device), for every optimiser and with a varying lr: the weights stay those after
    batch 1, and the error names batch 2."""
    weight = nn.Parameter(torch.tensor([1.0, 2.0]))
    train = TrainSpec(epochs=2, lr=0.1, optimizer=optimizer, schedule="cosine", warmup_epochs=1)
    built = build_optimizer([weight], train, fused=fused)
    x = torch.tensor([[1.0], [float("nan")], [1.0], [1.0], [1.0]])
    after_first: list[torch.Tensor] = []
    calls: list[int] = []

    def step(batch: dict[str, torch.Tensor]) -> LossOutput:
        if len(calls) == 1:
            after_first.append(weight.detach().clone())
        calls.append(1)
        return LossOutput((batch["x"] * weight).sum(), {})

    with pytest.raises(TrainingError, match=r"batch 2/5 \(global step 2\)"):
        train_epoch(
            step,
            [weight],
            built,
            ExampleSet({"x": x}).batches(1),
            5,
            None,
            reporter(),
            "t",
            check_every=check_every,
            learning_rate=lr_schedule(train, 5),
        )
    assert len(calls) == (4 if fused else 2)  # deferred reads only where steps can be skipped
    assert not torch.equal(after_first[0], torch.tensor([1.0, 2.0]))  # batch 1 stepped
    assert torch.equal(weight.detach(), after_first[0])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_deferred_checks_give_the_same_epoch_as_immediate_ones(optimizer: str) -> None:
    def train(check_every: int) -> torch.Tensor:
        torch.manual_seed(0)
        weight = nn.Parameter(torch.randn(3))
        spec = TrainSpec(epochs=1, lr=0.1, optimizer=optimizer, schedule="linear")
        built = build_optimizer([weight], spec, fused=True)
        examples = ExampleSet({"x": torch.randn(7, 3)})

        def step(batch: dict[str, torch.Tensor]) -> LossOutput:
            return LossOutput(((batch["x"] @ weight) ** 2).mean(), {})

        train_epoch(
            step,
            [weight],
            built,
            examples.batches(2),
            4,
            None,
            reporter(),
            "t",
            check_every=check_every,
            learning_rate=lr_schedule(spec, 4),
        )
        return weight.detach().clone()

    assert torch.equal(train(1), train(3))


# --------------------------------------------------------------------------- resume


class _Stopped(Exception):
    """Stands in for a kill right after a checkpoint was written."""


@pytest.mark.parametrize("finetune_optimizer", ["adamw", "sgd"])
def test_interrupted_under_cosine_warmup_resumes_bit_for_bit(
    tmp_path: Path,
    tiny_recipe: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    finetune_optimizer: str,
) -> None:
    """Stopped after pre-training epoch 1 (mid-decay) and again after fine-tuning
    epoch 1 (the end of warm-up): the resumed run ends exactly like the uninterrupted
    one, because the schedule is a function of the global step only."""
    data = copy.deepcopy(tiny_recipe)
    data["pretrain"]["train"].update(
        epochs=3,
        optimizer="adamw",
        weight_decay=0.01,
        schedule="cosine",
        warmup_epochs=0.5,
        min_lr=1e-4,
    )
    data["finetune"]["head"]["tie_weights"] = False  # a head with its own optimiser state
    data["finetune"]["train"].update(
        epochs=3,
        optimizer=finetune_optimizer,
        lr=0.02,
        schedule="cosine",
        warmup_epochs=1,
        lr_scale="linear",
    )
    recipe = validate_recipe(data)
    reference = run(recipe, out=tmp_path / "reference", console=quiet()).run_dir
    interrupted = tmp_path / "interrupted"
    original = Stage.save
    stops = [("pretrain", 1), ("finetune", 1)]

    def save(self: Stage, report: Any = None) -> None:
        original(self, report)
        if stops and stops[0] == (self.name, self.epoch):
            stops.pop(0)
            raise _Stopped

    monkeypatch.setattr(Stage, "save", save)
    with pytest.raises(_Stopped):
        run(recipe, out=interrupted, console=quiet())
    with pytest.raises(_Stopped):
        run(recipe, resume=interrupted, console=quiet())
    assert not stops and not (interrupted / "metrics.json").exists()
    run(recipe, resume=interrupted, console=quiet())
    log = (interrupted / "run.log").read_text()
    assert "pretrain: resumed after epoch 1\n" in log
    assert "finetune: resumed after epoch 1\n" in log
    assert_same_outcome(reference, interrupted)
    for stage in ("pretrain", "finetune"):
        rows = read_history(interrupted / stage / "history.csv")
        assert [row["lr"] for row in rows if row["epoch"]] == [
            row["lr"] for row in read_history(reference / stage / "history.csv") if row["epoch"]
        ]


# --------------------------------------------------------------------------- the recipe


@pytest.mark.parametrize(
    ("train", "fragment"),
    [
        ({"momentum": 0.9}, "momentum is a setting of optimizer sgd, not adam"),
        ({"optimizer": "adamw", "momentum": 0.5}, "momentum is a setting of optimizer sgd"),
        ({"optimizer": "sgd", "betas": [0.9, 0.99]}, "betas is a setting of optimizer adam"),
        (
            {"optimizer": "sgd", "momentum": 1.0},
            "finetune.train.momentum: Input should be less than 1",
        ),
        (
            {"optimizer": "sgd", "momentum": -0.1},
            "finetune.train.momentum: Input should be greater",
        ),
        ({"betas": [0.9, 1.0]}, "finetune.train.betas.1: Input should be less than 1"),
        ({"betas": [0.9]}, "finetune.train.betas: List should have at least 2 items"),
        (
            {"optimizer": "lamb"},
            "finetune.train.optimizer: Input should be 'adam', 'adamw' or 'sgd'",
        ),
        ({"schedule": "step"}, "finetune.train.schedule: Input should be 'constant'"),
        (
            {"min_lr": 1e-5},
            "min_lr (1e-05) is the floor of a decaying schedule, and schedule is constant",
        ),
        (
            {"schedule": "cosine", "min_lr": 0.01},
            "min_lr (0.01) must be below the peak learning rate 0.001",
        ),
        (
            {"schedule": "linear", "min_lr": 5e-4, "lr_scale": "linear"},
            "peak learning rate 0.00025 (lr x batch_size / 256, lr_scale linear)",
        ),
        ({"warmup_epochs": 4}, "warmup_epochs (4) is longer than the stage (3 epochs)"),
        ({"schedule": "cosine", "warmup_epochs": 3}, "warmup_epochs (3) leaves no epoch of the 3"),
        (
            {"warmup_epochs": -1},
            "finetune.train.warmup_epochs: Input should be greater than or equal to 0",
        ),
        ({"lr_scale": "sqrt"}, "finetune.train.lr_scale: Input should be 'none' or 'linear'"),
    ],
)
def test_bad_optimisation_settings_are_recipe_errors(
    tiny_recipe: dict[str, Any], train: dict[str, Any], fragment: str
) -> None:
    tiny_recipe["finetune"]["train"].update(train)
    with pytest.raises(RecipeError) as info:
        validate_recipe(tiny_recipe)
    assert fragment in str(info.value)


def test_good_combinations_validate_and_round_trip(tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["finetune"]["train"].update(
        optimizer="sgd", momentum=0.0, schedule="cosine", warmup_epochs=0.5, min_lr=1e-5
    )
    tiny_recipe["pretrain"]["train"].update(optimizer="adamw", betas=[0.9, 0.95], warmup_epochs=1)
    recipe = validate_recipe(tiny_recipe)
    # the stored recipe (defaults written out) validates again to the same recipe
    assert validate_recipe(recipe.model_dump(mode="json")) == recipe
    assert recipe.finetune.train.momentum == 0.0 and recipe.pretrain.train.betas == [0.9, 0.95]


def test_default_optimisation_keys_stay_out_of_stored_recipes() -> None:
    """Runs started before the keys existed keep their recipe sha256 and still resume."""
    from clue_fw.recipe import OPTIMISATION_DEFAULTS, TrainSpec

    plain = TrainSpec(epochs=3).model_dump(mode="json")
    assert not set(OPTIMISATION_DEFAULTS) & set(plain)
    assert set(plain) == {
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "grad_clip",
        "history",
        "precision",
    }
    cosine = TrainSpec(epochs=3, schedule="cosine", warmup_epochs=1).model_dump(mode="json")
    assert {k for k in OPTIMISATION_DEFAULTS if k in cosine} == {"schedule", "warmup_epochs"}
    assert TrainSpec.model_validate(cosine) == TrainSpec(
        epochs=3, schedule="cosine", warmup_epochs=1
    )
