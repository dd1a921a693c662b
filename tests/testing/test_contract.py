"""clue_fw.testing catches components that break their contract, and says what to fix."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from pydantic import Field

from clue_fw.components import (
    Augmentation,
    AugmentationSpec,
    BackboneSpec,
    BuildContext,
    EncoderOutput,
    SequenceEncoder,
)
from clue_fw.data.dataset import SequenceData
from clue_fw.hookspecs import hookimpl
from clue_fw.testing import (
    ContractCase,
    ContractError,
    contract_cases,
    contract_test,
    example_spec,
    plugin_components,
)


def plugin_module(name: str, **hooks: Any) -> types.ModuleType:
    """A plugin module made in code: ``hooks`` maps a hook name to the specs it returns."""
    module = types.ModuleType(name)
    for hook, specs in hooks.items():
        setattr(module, hook, hookimpl(lambda specs=specs: specs))
        getattr(module, hook).__name__ = hook
    return module


def run_cases(module: types.ModuleType, check: str, folder: Path) -> list[ContractCase]:
    registry, entries = plugin_components(module)
    cases = [c for c in contract_cases(registry, entries) if c.check == check]
    assert cases
    for case in cases:
        case.run(folder)
    return cases


# ------------------------------------------------------------------------------ views


class FillsPadding(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.where(items == 0, torch.ones_like(items), items)


class FillsPaddingSpec(AugmentationSpec):
    """A broken view: writes item 1 into padding."""

    kind: Literal["fills_padding"] = "fills_padding"

    def build(self, context: BuildContext) -> FillsPadding:
        return FillsPadding()


class GlobalRandom(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        drop = (torch.rand(items.shape) < 0.5) & (items != 0)  # the global RNG: not seeded
        return torch.where(drop, torch.full_like(items, 31), items)


class GlobalRandomSpec(AugmentationSpec):
    """A broken view: draws from torch's global RNG, not from its generator."""

    kind: Literal["global_random"] = "global_random"

    def build(self, context: BuildContext) -> GlobalRandom:
        return GlobalRandom()


def test_a_view_that_fills_padding_fails_the_view_contract(tmp_path: Path) -> None:
    module = plugin_module("fills_padding", clue_register_augmentations=[FillsPaddingSpec])
    with pytest.raises(AssertionError, match="padding position"):
        run_cases(module, "contract", tmp_path)


def test_a_view_on_the_global_rng_fails_the_seeded_check(tmp_path: Path) -> None:
    module = plugin_module("global_random", clue_register_augmentations=[GlobalRandomSpec])
    with pytest.raises(AssertionError, match="global RNG"):
        run_cases(module, "seeded", tmp_path)


# ------------------------------------------------------------------------------ backbones


class Bidirectional(SequenceEncoder):
    """Every state is the row's mean embedding: sees the future, so not causal."""

    def __init__(self, context: BuildContext, dim: int) -> None:
        super().__init__()
        self.init_vocabulary(context.num_items, context.max_len, dim)

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        real = (items != 0).unsqueeze(-1)
        embedded = self.item_embedding(items) * real
        mean = embedded.sum(dim=1) / real.sum(dim=1).clamp(min=1)
        states = (mean.unsqueeze(1) + 0.0 * self.user_token) * real
        return EncoderOutput(states, mean + self.user_token)


class BidirectionalSpec(BackboneSpec):
    """A bidirectional backbone, which the causality check refuses."""

    kind: Literal["bidirectional"] = "bidirectional"
    dim: int = Field(8, gt=0)

    def build(self, context: BuildContext) -> Bidirectional:
        return Bidirectional(context, self.dim)


def test_a_bidirectional_backbone_fails_only_the_causal_check(tmp_path: Path) -> None:
    module = plugin_module("bidirectional", clue_register_backbones=[BidirectionalSpec])
    with pytest.raises(AssertionError):
        run_cases(module, "causal", tmp_path)
    run_cases(module, "shapes", tmp_path)
    run_cases(module, "left_padding", tmp_path)


class PooledKeepsToken(SequenceEncoder):
    """A pooled backbone that forgot to remove the [UR] token, and whose empty rows give
    a bias instead of zero states."""

    def __init__(self, context: BuildContext, dim: int) -> None:
        super().__init__()
        self.init_vocabulary(context.num_items, context.max_len, dim)
        self.bias = torch.nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        real = (items != 0).unsqueeze(-1)
        embedded = self.item_embedding(items) * real
        states = embedded + self.bias  # the bias lands on padding too
        return EncoderOutput(states, embedded.sum(dim=1))


class PooledKeepsTokenSpec(BackboneSpec):
    """A broken pooled backbone (unused user_token, non-zero padding states)."""

    kind: Literal["pooled_keeps_token"] = "pooled_keeps_token"
    dim: int = Field(8, gt=0)

    def build(self, context: BuildContext) -> PooledKeepsToken:
        return PooledKeepsToken(context, self.dim)


def test_contract_failures_of_a_pooled_backbone_say_what_to_do(tmp_path: Path) -> None:
    module = plugin_module("pooled", clue_register_backbones=[PooledKeepsTokenSpec])
    with pytest.raises(AssertionError, match=r"del self\.user_token"):
        run_cases(module, "backward", tmp_path)
    with pytest.raises(AssertionError, match="padding only .* must be exactly zero"):
        run_cases(module, "empty_row", tmp_path)


def test_skip_marks_the_named_check_with_its_reason() -> None:
    module = plugin_module("bidirectional", clue_register_backbones=[BidirectionalSpec])
    test = contract_test(module, skip={"backbone_causal": "bidirectional by design"})
    (mark,) = [m for m in test.pytestmark if m.name == "parametrize"]  # type: ignore[attr-defined]
    skipped = {p.id: [m.kwargs.get("reason") for m in p.marks] for p in mark.args[1]}
    assert skipped["backbone-bidirectional-causal"] == ["bidirectional by design"]
    assert skipped["backbone-bidirectional-shapes"] == []
    assert "objective-clue-on-bidirectional-trains" in skipped  # every objective meets it


def test_unknown_skip_names_are_refused_with_the_check_names() -> None:
    module = plugin_module("bidirectional", clue_register_backbones=[BidirectionalSpec])
    with pytest.raises(ValueError, match="backbone_causal"):
        contract_test(module, skip={"backbone_causality": "typo"})


# ------------------------------------------------------------------------------ specs


class NeedsWindow(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return items


class NoDefaultSpec(AugmentationSpec):
    """A view whose ``window`` has no default."""

    kind: Literal["no_default"] = "no_default"
    window: int = Field(gt=0)

    def build(self, context: BuildContext) -> NeedsWindow:
        return NeedsWindow()


class DeclaredExampleSpec(NoDefaultSpec):
    """The same view, with example fields for the contract."""

    kind: Literal["declared_example"] = "declared_example"  # type: ignore[assignment]

    @classmethod
    def contract_example(cls, data: SequenceData, root: Path) -> dict[str, Any]:
        return {"window": 3}


def test_a_field_without_default_needs_a_declared_example(tmp_path: Path) -> None:
    module = plugin_module("no_default", clue_register_augmentations=[NoDefaultSpec])
    _, (entry,) = plugin_components(module)
    with pytest.raises(ContractError, match="contract_example") as error:
        example_spec(entry, root=tmp_path)
    assert "window: Field required" in str(error.value)

    module = plugin_module("declared", clue_register_augmentations=[DeclaredExampleSpec])
    _, (entry,) = plugin_components(module)
    assert example_spec(entry, root=tmp_path).window == 3  # type: ignore[attr-defined]
    run_cases(module, "contract", tmp_path)


def test_a_module_that_registers_nothing_is_refused() -> None:
    with pytest.raises(ContractError, match="registers no component"):
        plugin_components(plugin_module("empty", clue_register_heads=[]))


def test_an_unknown_distribution_is_refused_with_the_fix() -> None:
    with pytest.raises(ContractError, match="pip install -e"):
        contract_test("clue-no-such-plugin")


def test_the_builtins_pass_by_distribution_name_too() -> None:
    _, entries = plugin_components("clue_fw")
    assert {e.kind for e in entries} >= {"transformer", "dropout", "clue", "next_item"}


def test_importing_needs_neither_pytest_nor_hypothesis() -> None:
    code = (
        "import sys; sys.modules['pytest'] = None; sys.modules['hypothesis'] = None\n"
        "import clue_fw.testing as t\n"
        "try:\n"
        "    t.contract_test('clue_fw')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pip install 'clue_fw[testing]'" in done.stdout
