"""train.compile: compiled and eager training steps agree; failures fall back to eager.

The equality tests compile with inductor on the CPU (a C++ compiler must work; they are
skipped, saying so, where it does not). Inductor draws dropout masks with its own
generator unless ``fallback_random`` is set; the tests set it, so both steps draw the
same masks and the losses differ only by float32 rounding: within 1e-5, relative.
"""

from __future__ import annotations

import copy
import functools
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo
import torch._inductor.config as inductor_config
from rich.console import Console
from torch import nn

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.data.loading import load_data
from clue_fw.recipe import validate_recipe
from clue_fw.running.assembly import run_context
from clue_fw.training.compile import StepCompiler, describe_failure

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


@functools.cache
def inductor_unavailable() -> str | None:
    """Why inductor cannot compile on this machine (no C++ compiler...), or None."""
    try:
        torch.compile(lambda x: torch.sin(x) + 1, dynamic=False)(torch.ones(3))
    except Exception as error:  # noqa: BLE001 - any failure means: skip, and say why
        return describe_failure(error)
    return None


@pytest.fixture
def inductor() -> Iterator[None]:
    reason = inductor_unavailable()
    if reason is not None:
        pytest.skip(f"torch.compile (inductor) cannot run here: {reason}")
    with inductor_config.patch(fallback_random=True):
        torch._dynamo.reset()
        yield
    torch._dynamo.reset()


@pytest.fixture
def parts(tiny_recipe: dict[str, Any]) -> dict[str, Any]:
    """The tiny recipe's encoder, CLUE objective, views and next-item head, with a batch."""
    recipe = validate_recipe(tiny_recipe)
    task_data = recipe.finetune.head.prepare(load_data(recipe.data, None), None)
    context = run_context(recipe, task_data, None)
    torch.manual_seed(0)
    encoder = recipe.backbone.build(context)
    task = recipe.finetune.head.make_task(task_data, context, "recent")
    return {
        "encoder": encoder,
        "objective": recipe.pretrain.objective.build(context, encoder),
        "views": ViewPipeline.from_specs(recipe.pretrain.views, context),
        "head": recipe.finetune.head.build(context, encoder, task_data),
        "batch": {name: value[:64] for name, value in task.train.tensors.items()},
        "items": task_data.sequences.sequences.recent_windows(10)[:64],
    }


def loss_and_gradients(
    step: Callable[[dict[str, torch.Tensor]], Any],
    batch: dict[str, torch.Tensor],
    module: nn.Module,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The step's loss and the gradients of ``module``'s parameters, in train mode with
    dropout drawn from a fixed seed."""
    module.train()
    module.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    loss = step(batch).loss
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in module.parameters() if p.grad is not None]


def assert_same_step(
    step: Callable[[dict[str, torch.Tensor]], Any],
    batch: dict[str, torch.Tensor],
    module: nn.Module,
) -> None:
    logged: list[str] = []
    compiled = StepCompiler("test", logged.append).wrap(step)
    eager_loss, eager_grads = loss_and_gradients(step, batch, module)
    for _ in range(2):  # the second call reuses the compiled graph
        loss, grads = loss_and_gradients(compiled, batch, module)
        assert torch.allclose(loss, eager_loss, **TOLERANCE), (float(loss), float(eager_loss))
        assert len(grads) == len(eager_grads)
        for found, expected in zip(grads, eager_grads, strict=True):
            assert torch.allclose(found, expected, rtol=1e-4, atol=1e-5)
    assert len(logged) == 1 and "compiled the training step" in logged[0]


def test_a_compiled_fine_tuning_step_gives_the_eager_loss(
    inductor: None, parts: dict[str, Any]
) -> None:
    """The next-item head's loss through a transformer with dropout: same loss, same
    gradients (within float32 rounding), with a graph that is compiled once."""
    head, encoder = parts["head"], parts["encoder"]
    module = nn.ModuleDict({"encoder": encoder, "head": head})

    def step(batch: dict[str, torch.Tensor]) -> Any:
        return head.loss(encoder, batch)

    assert_same_step(step, parts["batch"], module)


def test_a_compiled_clue_step_gives_the_eager_loss(inductor: None, parts: dict[str, Any]) -> None:
    """CLUE's pre-training loss: two dropout views from the epoch's view generator, the
    projector's BatchNorm, the stop-gradient; the generator advances as eagerly."""
    objective, encoder, views = parts["objective"], parts["encoder"], parts["views"]
    module = nn.ModuleDict({"encoder": encoder, "objective": objective})
    states = []

    def step(batch: dict[str, torch.Tensor]) -> Any:
        generator = torch.Generator().manual_seed(1)
        output = objective(encoder, batch["items"], views, generator)
        states.append(generator.get_state())
        return output

    assert_same_step(step, {"items": parts["items"]}, module)
    assert all(torch.equal(state, states[0]) for state in states)


def failing_backend(graph: Any, example_inputs: Any) -> Any:
    raise RuntimeError("no compiler here\nsecond line")


def test_a_failed_compilation_runs_the_step_eagerly_with_one_logged_line() -> None:
    logged: list[str] = []
    compiler = StepCompiler("pretrain", logged.append, backend=failing_backend)
    weight = nn.Parameter(torch.tensor([1.0, 2.0]))
    calls = []

    def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        calls.append(1)
        return (batch["x"] * weight).sum()

    first = compiler.wrap(step)
    assert float(first({"x": torch.tensor([3.0, 4.0])}).detach()) == 11.0
    assert compiler.eager
    second = compiler.wrap(step)  # the next epoch's step: eager, nothing logged again
    assert second is step
    assert float(second({"x": torch.tensor([1.0, 1.0])}).detach()) == 3.0
    assert len(logged) == 1
    assert logged[0].startswith("pretrain: train.compile: compiling the training step failed")
    assert "no compiler here" in logged[0] and "second line" not in logged[0]
    assert logged[0].endswith("the steps run eagerly")


def test_without_a_cxx_compiler_the_step_runs_eagerly_and_says_why(inductor: None) -> None:
    logged: list[str] = []
    compiler = StepCompiler("pretrain", logged.append)
    weight = nn.Parameter(torch.linspace(0.0, 1.0, 7))

    def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cos(batch["x"] * weight).sum() * 3

    with inductor_config.patch({"cpp.cxx": ("/nonexistent/c++",)}):
        loss = compiler.wrap(step)({"x": torch.full((7,), 0.5)})
    assert torch.equal(loss, step({"x": torch.full((7,), 0.5)}))
    assert len(logged) == 1 and "InvalidCxxCompiler" in logged[0]


def test_an_error_of_the_step_itself_is_raised_not_hidden() -> None:
    compiler = StepCompiler("finetune", lambda line: None, backend=failing_backend)

    def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise ValueError("a bad batch")

    with pytest.raises(ValueError, match="a bad batch"):
        compiler.wrap(step)({"x": torch.ones(1)})


def test_where_torch_compile_is_unsupported_the_steps_run_eagerly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    logged: list[str] = []
    compiler = StepCompiler("finetune", logged.append)

    def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["x"].sum()

    assert compiler.wrap(step) is step
    assert compiler.wrap(step) is step
    assert logged == [
        "finetune: train.compile: torch.compile is not supported on this Python version or "
        "platform; the steps run eagerly"
    ]


def test_compile_stays_out_of_dumps_at_its_default(tiny_recipe: dict[str, Any]) -> None:
    plain = validate_recipe(tiny_recipe).model_dump(mode="json")
    assert "compile" not in plain["finetune"]["train"]
    compiled = copy.deepcopy(tiny_recipe)
    compiled["finetune"]["train"]["compile"] = True
    dumped = validate_recipe(compiled).model_dump(mode="json")
    assert dumped["finetune"]["train"]["compile"] is True


@pytest.mark.slow
def test_a_compiled_run_trains_as_the_eager_run(
    inductor: None, tiny_recipe: dict[str, Any], tmp_path: Path
) -> None:
    """``train.compile: true`` in both stages of a whole run: each stage logs that it
    compiled, and every epoch's loss is the eager run's within float32 rounding (the
    same dropout masks: fallback_random), so are the final metrics."""
    from clue_fw import run

    compiled = copy.deepcopy(tiny_recipe)
    for stage in ("pretrain", "finetune"):
        compiled[stage]["train"]["compile"] = True
    results = {}
    for name, recipe in (("eager", tiny_recipe), ("compiled", compiled)):
        console = Console(file=io.StringIO())
        results[name] = run(recipe, out=tmp_path / name, console=console)
    log = (results["compiled"].run_dir / "run.log").read_text()
    for stage in ("pretrain", "finetune"):
        assert f"{stage}: train.compile: compiled the training step" in log
        eager = stage_losses(results["eager"].run_dir, stage)
        found = stage_losses(results["compiled"].run_dir, stage)
        assert found == pytest.approx(eager, rel=1e-4), stage
    # Losses agree within rounding; a test user whose target sits on a near tie may still
    # change rank, which moves recall by 1/200 (200 test users): at most one such user.
    assert results["compiled"].metrics["test"] == pytest.approx(
        results["eager"].metrics["test"], abs=1 / 200 + 1e-6
    )


def stage_losses(run_dir: Path, stage: str) -> list[float]:
    from clue_fw.training.checkpoint import load_checkpoint

    _, metadata = load_checkpoint(run_dir / stage / "last.safetensors")
    return [row["loss"] for row in metadata["history"] if "loss" in row]


def test_both_stages_pass_their_steps_through_the_compiler_when_asked(
    tiny_recipe: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring, without compiling: each stage with ``train.compile`` makes one
    StepCompiler and hands it every epoch's step; a stage without it makes none."""
    from clue_fw import run
    from clue_fw.running import stage as stage_module

    made: dict[str, int] = {}

    class Recording(StepCompiler):
        def wrap(self, step: Any) -> Any:
            made[self.where] = made.get(self.where, 0) + 1
            return step

    monkeypatch.setattr(stage_module, "StepCompiler", Recording)
    tiny_recipe["pretrain"]["train"].update({"epochs": 2, "compile": True})
    tiny_recipe["finetune"]["train"]["epochs"] = 2
    run(tiny_recipe, out=tmp_path / "run", console=Console(file=io.StringIO()))
    assert made == {"pretrain": 2}
