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
    monkeypatch.setattr(resources, "available_memory", lambda device: (free, "free (test)"))
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
    """Every shipped recipe at ML-1M size stays under 1 GiB: never refused on real hardware."""
    for path in sorted((ROOT / "recipes").rglob("*.yaml")):
        recipe = load_recipe(path)
        context = BuildContext(3706, recipe.data.max_len)
        phases = estimate_phases(recipe, context, 6040, 1_000_209, CPU)
        assert max(phase.total for phase in phases) < GiB, path.name


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
