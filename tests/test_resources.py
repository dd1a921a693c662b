"""The memory guard: recipes that plainly cannot fit are refused before they start."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import nn

import clue_fw.memory as memory
import clue_fw.resources as resources
from clue_fw.components import BuildContext
from clue_fw.errors import ResourceError
from clue_fw.recipe import load_recipe, validate_recipe
from clue_fw.resources import check_memory, estimate_phases
from clue_fw.runner import run

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
GiB = 1 << 30


def fake_data(num_items: int, num_users: int = 6040, interactions: int = 1_000_209) -> Any:
    return SimpleNamespace(num_items=num_items, num_users=num_users, num_interactions=interactions)


def with_memory(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda device: (free, "free (test)"))
    monkeypatch.delenv(resources.SKIP_ENV, raising=False)


def parts(phases: list[resources.Phase]) -> dict[str, dict[str, int]]:
    return {
        phase.name: {part.what.split(" (")[0]: part.bytes for part in phase.parts}
        for phase in phases
    }


def test_estimate_terms(tiny_recipe: dict[str, Any]) -> None:
    recipe = validate_recipe(tiny_recipe)
    context = BuildContext(num_items=50, max_len=10)
    phases = parts(
        estimate_phases(recipe, context, num_users=200, num_interactions=2000, device=CPU)
    )
    finetune = phases["a fine-tuning step"]
    assert finetune["next-item logits"] == 64 * 11 * 51 * 4 * 2  # B (n + 1) (N + 1) 4 B x 2
    assert finetune["attention weights"] == 64 * 2 * 11**2 * 1 * 4  # B heads (n + 1)^2 blocks 4 B
    assert phases["an evaluation batch"]["full-ranking scores"] == 200 * 51 * 13  # 200 users < 1024
    # parameters are counted exactly (on the meta device) as in the real model
    torch.manual_seed(0)
    encoder = recipe.backbone.build(context)
    model = nn.ModuleDict(
        {"encoder": encoder, "head": recipe.finetune.head.build(context, encoder, None)}
    )
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert finetune["fine-tuning parameters with gradients and Adam state"] == 16 * count


def test_huge_catalogue_is_refused_with_the_numbers(
    tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_memory(monkeypatch, 16 * GiB)
    recipe = load_recipe(ROOT / "recipes" / "ml30_dropout.yaml")
    data = fake_data(num_items=5_000_000)
    with pytest.raises(ResourceError) as info:
        check_memory(recipe, data, BuildContext(5_000_000, recipe.data.max_len), CPU)
    message = str(info.value)
    # 256 x 31 rows x 5,000,001 items x 8 B = 295.7 GiB of logits + 4.8 GiB for 5M x 64 weights
    assert "needs at least 300.4 GiB of cpu memory for a fine-tuning step" in message
    assert "only 16.0 GiB is free (test)" in message
    assert "next-item logits (7,936 rows x 5,000,001 items" in message
    assert "Lower finetune.train.batch_size, finetune.head.loss_positions (ur), data.max_len" in (
        message
    )
    assert "CLUE_SKIP_MEMORY_CHECK=1" in message


def test_a_huge_evaluation_batch_points_at_eval_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    with_memory(monkeypatch, 8 * GiB)
    recipe = load_recipe(
        ROOT / "recipes" / "ml30_zero.yaml",
        ["finetune.train.batch_size=8", "finetune.eval.batch_size=1000000"],
    )
    data = fake_data(num_items=2_000_000, num_users=1_000_000)
    with pytest.raises(
        ResourceError, match=r"for an evaluation batch.*Lower finetune\.eval\.batch_size"
    ):
        check_memory(recipe, data, BuildContext(2_000_000, 30), CPU)


def test_shipped_recipes_are_far_from_the_limit() -> None:
    """Every shipped recipe at ML-1M size stays under 2 GiB: never refused on real hardware
    (the largest is ml50_fast_zero's batch of 1,024 windows with a full softmax, 1.5 GiB)."""
    for path in sorted((ROOT / "recipes").rglob("*.yaml")):
        if path.stem.endswith("_s3rec"):
            continue  # needs the clue-s3rec plugin and an attribute file to build
        recipe = load_recipe(path)
        context = BuildContext(3706, recipe.data.max_len)
        phases = estimate_phases(recipe, context, 6040, 1_000_209, CPU)
        assert max(phase.total for phase in phases) < 2 * GiB, path.name


def test_run_refuses_before_creating_the_run_directory(
    tmp_path: Path, tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_memory(monkeypatch, 100 << 10)  # 100 KiB
    out = tmp_path / "run"
    with pytest.raises(ResourceError, match="Refusing to start"):
        run(copy.deepcopy(tiny_recipe), out=out, console=Console(file=io.StringIO()))
    assert not out.exists()
    monkeypatch.setenv(resources.SKIP_ENV, "1")  # the documented way past a wrong estimate
    tiny = copy.deepcopy(tiny_recipe)
    tiny["pretrain"] = None
    tiny["finetune"]["train"]["epochs"] = 1
    run(tiny, out=out, console=Console(file=io.StringIO()))
    assert (out / "metrics.json").is_file()


def test_normal_recipes_pass_on_this_machine(tiny_recipe: dict[str, Any]) -> None:
    recipe = validate_recipe(tiny_recipe)
    check_memory(recipe, fake_data(50, 200, 2000), BuildContext(50, 10), CPU)


def test_available_memory_on_cpu() -> None:
    found = resources.available_memory(CPU)
    if found is None:
        pytest.skip("no way to read memory on this platform")
    free, source = found
    assert free > 0 and source
    assert resources.available_memory(torch.device("meta")) is None  # unknown device: no check


def test_cgroup_limits(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("1073741824\n")
    (tmp_path / "memory.current").write_text("268435456\n")
    assert resources._cgroup_headroom(tmp_path) == 768 << 20
    (tmp_path / "memory.max").write_text("max\n")
    assert resources._cgroup_headroom(tmp_path) is None
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable: 42 kB\n")
    assert resources._meminfo_available(meminfo) == 42 * 1024


def test_size() -> None:
    assert resources.size(512) == "512 B"
    assert resources.size(1536) == "1.5 KiB"
    assert resources.size(3 * GiB) == "3.0 GiB"
    assert resources.size(5000 * GiB) == "5000.0 GiB"


# --------------------------------------------------------------------------- what else is counted


def test_data_windows_are_counted(tiny_recipe: dict[str, Any]) -> None:
    data = copy.deepcopy(tiny_recipe)
    data["finetune"]["train"]["history"] = "all"
    data["finetune"]["head"]["loss_positions"] = "ur"  # every prefix: one window per item
    recipe = validate_recipe(data)
    phases = parts(
        estimate_phases(
            recipe, BuildContext(50, 10), num_users=200, num_interactions=20_000, device=CPU
        )
    )
    windows = 20_000 - 200 * 3  # (interactions - users (1 + min_items)) / stride 1
    step = phases["a fine-tuning step"]
    assert step["fine-tuning windows"] == windows * 11 * 8
    assert step["evaluation inputs"] == 2 * 200 * 10 * 8
    assert phases["an evaluation batch"]["fine-tuning windows"] == windows * 11 * 8
    cutting = phases["cutting the fine-tuning windows"]
    assert cutting == {f"cutting {windows:,} windows of 11": windows * 11 * 41}
    # pre-training (history recent): one window of n per user
    assert phases["a pre-training step"]["pre-training windows"] == 200 * 10 * 8


def test_cutting_windows_is_checked_against_host_memory(
    tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU the windows are still cut on the CPU: that phase meets the CPU's memory."""
    data = copy.deepcopy(tiny_recipe)
    data["finetune"]["train"]["history"] = "all"
    data["finetune"]["head"]["loss_positions"] = "ur"
    recipe = validate_recipe(data)
    seen: list[str] = []

    def available(device: torch.device) -> tuple[int, str]:
        seen.append(device.type)
        return (100 * GiB, "free (test)") if device.type == "cuda" else (GiB, "host (test)")

    monkeypatch.setattr(memory, "available_memory", available)
    monkeypatch.delenv(resources.SKIP_ENV, raising=False)
    context = BuildContext(50, 200)
    with pytest.raises(ResourceError) as info:
        check_memory(recipe, fake_data(50, 1000, 10_000_000), context, torch.device("cuda"))
    assert seen == ["cuda", "cpu"]
    message = str(info.value)
    assert "of cpu memory for cutting the fine-tuning windows" in message
    assert "Lower finetune.train.history (recent), data.max_len" in message


def test_convolution_padding_and_dilations_are_counted(tiny_recipe: dict[str, Any]) -> None:
    data = copy.deepcopy(tiny_recipe)
    data["backbone"] = {
        "kind": "cnn",
        "dim": 16,
        "dilations": [1, 4],
        "repeats": 2,
        "kernel_size": 3,
    }
    recipe = validate_recipe(data)
    phases = parts(estimate_phases(recipe, BuildContext(50, 10), 200, 2000, CPU))
    # 4 convolutions, each keeps [B, d, n + 1 + (k - 1) dilation] floats for backward
    positions = 4 * 11 + 2 * (1 + 4 + 1 + 4)
    assert phases["a fine-tuning step"]["padded convolution inputs"] == 64 * 16 * positions * 4
    assert phases["a pre-training step"]["padded convolution inputs"] == 128 * 16 * positions * 4
    # evaluation (no backward): one convolution at a time, the widest
    assert phases["an evaluation batch"]["padded convolution inputs"] == 200 * 16 * (11 + 8) * 4


def test_a_huge_dilation_is_refused_before_the_run(
    tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with_memory(monkeypatch, 64 * GiB)
    data = copy.deepcopy(tiny_recipe)
    data["backbone"] = {"kind": "cnn", "dim": 16, "dilations": [1, 2**40], "repeats": 1}
    with pytest.raises(ResourceError) as info:
        run(data, out=tmp_path / "run", console=Console(file=io.StringIO()))
    assert "padded convolution inputs" in str(info.value)
    assert "Lower backbone.dilations, backbone.kernel_size, backbone.repeats" in str(info.value)
    assert not (tmp_path / "run").exists()


def test_synthetic_generation_is_checked_before_it_runs(
    tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from clue_fw.data import loading

    with_memory(monkeypatch, GiB)
    generated: list[int] = []
    monkeypatch.setattr(loading, "generate_sequences", lambda **kw: generated.append(1))
    data = copy.deepcopy(tiny_recipe)
    data["data"]["num_users"] = 10**9
    recipe = validate_recipe(data)
    with pytest.raises(ResourceError) as info:
        loading.load_data(recipe.data)
    message = str(info.value)
    assert "Refusing to generate synthetic data" in message
    assert "generated sequences (1,000,000,000 users x 15 positions" in message
    assert "only 1.0 GiB is free (test)" in message
    assert "Lower data.num_users, data.max_length" in message
    assert not generated
    monkeypatch.setenv(resources.SKIP_ENV, "1")
    loading.read_raw(recipe.data)  # switched off: the generator runs
    assert generated


def test_check_memory_returns_its_estimate(tiny_recipe: dict[str, Any]) -> None:
    recipe = validate_recipe(tiny_recipe)
    estimate = check_memory(recipe, fake_data(50, 200, 2000), BuildContext(50, 10), CPU)
    assert estimate is not None and estimate.worst.name == "a fine-tuning step"
    assert estimate.describe().startswith("at least ")
    assert "next-item logits" in estimate.describe()


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 1099511627776 bytes. Error code 12"
        ),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    ],
)
def test_running_out_of_memory_names_the_estimate(
    tiny_recipe: dict[str, Any], error: BaseException
) -> None:
    recipe = validate_recipe(tiny_recipe)
    estimate = check_memory(recipe, fake_data(50, 200, 2000), BuildContext(50, 10), CPU)
    with pytest.raises(ResourceError) as info:
        with resources.translate_memory_errors(estimate, CPU, "fine-tuning"):
            raise error
    message = str(info.value)
    assert message.startswith("Out of cpu memory during fine-tuning (")
    assert f"Before it started, clue_fw estimated {estimate.describe()}" in message
    assert "Lower finetune.train.batch_size" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_without_an_estimate_and_other_errors() -> None:
    with pytest.raises(ResourceError, match="No estimate was made .*Lower the batch sizes"):
        with resources.translate_memory_errors(None, torch.device("cuda"), "evaluation"):
            raise torch.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(RuntimeError, match="shape mismatch"):  # a bug stays a bug
        with resources.translate_memory_errors(None, CPU):
            raise RuntimeError("shape mismatch")


def test_a_tensor_too_large_to_size_is_out_of_memory() -> None:
    """torch refuses a tensor whose byte count overflows 64 bits with a RuntimeError."""
    with pytest.raises(RuntimeError) as raised:
        torch.empty(2**62, 4, dtype=torch.long)
    with pytest.raises(ResourceError, match="Out of cpu memory during the run"):
        with resources.translate_memory_errors(None, CPU):
            raise raised.value


def test_sampled_softmax_logits_are_counted_by_the_head(tiny_recipe: dict[str, Any]) -> None:
    """The head reports its own logits: with ``loss: sampled`` they are the target, the
    in-batch targets and the negatives, not the catalogue."""
    tiny_recipe["finetune"]["head"].update({"loss": "sampled", "negatives": 100})
    recipe = validate_recipe(tiny_recipe)
    phases = parts(estimate_phases(recipe, BuildContext(50_000, 10), 200, 2000, CPU))
    rows = 64 * 11
    assert (
        phases["a fine-tuning step"]["sampled next-item logits"] == rows * (1 + rows + 100) * 4 * 2
    )


def test_a_plugin_components_own_estimate_is_counted(
    tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard adds what each spec's hook reports, so a plugin backbone with huge
    activations is refused like a built-in one (no ``kind ==`` checks)."""
    from clue_fw.backbones.transformer import TransformerSpec
    from clue_fw.memory import Part, StepSizes

    class HungryBackbone(TransformerSpec):
        def activation_parts(self, sizes: StepSizes) -> list[Part]:
            return [Part("hungry activations", 40 * GiB, ("backbone.hunger",))]

    recipe = validate_recipe(tiny_recipe)
    hungry = HungryBackbone(**recipe.backbone.model_dump(exclude={"kind"}))
    recipe = recipe.model_copy(update={"backbone": hungry})
    with_memory(monkeypatch, 16 * GiB)
    with pytest.raises(
        ResourceError, match=r"hungry activations: 40\.0 GiB.*Lower backbone\.hunger"
    ):
        check_memory(recipe, fake_data(50, 200, 2000), BuildContext(50, 10), CPU)
