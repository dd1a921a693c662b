"""Tests for clue_fw.registry: built-ins, plugins, duplicates, entry points and env vars."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import pytest
import torch
from pydantic import Field
from torch import nn

import clue_fw
import clue_fw.registry as registry_module
from clue_fw.components import (
    BackboneSpec,
    BuildContext,
    EncoderOutput,
    HeadSpec,
    LossOutput,
    SequenceEncoder,
)
from clue_fw.errors import RecipeError, RegistryError
from clue_fw.hookspecs import hookimpl
from clue_fw.recipe import recipe_model, validate_recipe
from clue_fw.registry import build_registry, get_registry, reset_registry

BUILTIN = f"clue_fw {clue_fw.__version__} (built-in)"


# --------------------------------------------------------------------------- a toy plugin


class MeanPoolEncoder(SequenceEncoder):
    """Mean of item embeddings (a real, trainable backbone in a dozen lines)."""

    def __init__(self, num_items: int, max_len: int, dim: int) -> None:
        super().__init__()
        self.num_items, self.max_len, self.dim = num_items, max_len, dim
        self.item_embedding = nn.Embedding(num_items + 2, dim, padding_idx=0)
        self.mix = nn.Linear(dim, dim)

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        real = (items != 0).unsqueeze(-1)
        states = self.mix(self.item_embedding(items)) * real
        user = states.sum(1) / real.sum(1).clamp(min=1)
        return EncoderOutput(states, user)


class MeanPoolSpec(BackboneSpec):
    """Mean pooling of item embeddings (test plugin)."""

    kind: Literal["meanpool"] = "meanpool"
    dim: int = Field(8, gt=0)

    def build(self, context: BuildContext) -> MeanPoolEncoder:
        return MeanPoolEncoder(context.num_items, context.max_len, self.dim)


class ClashingTransformerSpec(BackboneSpec):
    """Another backbone that calls itself transformer."""

    kind: Literal["transformer"] = "transformer"

    def build(self, context: BuildContext) -> SequenceEncoder:
        raise NotImplementedError


class MeanPoolPlugin:
    @hookimpl
    def clue_register_backbones(self) -> list[type[BackboneSpec]]:
        return [MeanPoolSpec]


class ClashingPlugin:
    @hookimpl
    def clue_register_backbones(self) -> list[type[BackboneSpec]]:
        return [ClashingTransformerSpec]


# --------------------------------------------------------------------------- built-ins


def builtin_kinds() -> set[str]:
    return {e.kind for e in build_registry().all_entries() if e.provider == BUILTIN}


def test_builtins_registered_with_builtin_provider() -> None:
    registry = build_registry()  # entry points are disabled (conftest)
    kinds = {(e.family, e.kind): e for e in registry.all_entries()}
    assert {
        ("backbone", "transformer"),
        ("augmentation", "dropout"),
        ("objective", "clue"),
        ("head", "next_item"),
    } <= set(kinds)
    for entry in kinds.values():
        assert entry.provider == BUILTIN
        assert entry.provider.startswith("clue_fw ") and entry.provider.endswith("(built-in)")
        assert entry.description  # first docstring line, shown by `clue list`
    assert registry.get("backbone", "transformer").description.startswith("SASRec Transformer")


def test_get_unknown_kind_lists_known() -> None:
    expected = r"No backbone named 'transfomer' .*known: .*transformer"
    with pytest.raises(RegistryError, match=expected):
        build_registry().get("backbone", "transfomer")


def test_get_registry_is_cached_and_reset() -> None:
    first = get_registry()
    assert get_registry() is first
    reset_registry()
    assert get_registry() is not first
    custom = build_registry(extra_plugins=[(MeanPoolPlugin(), "myplugin 1.0")])
    reset_registry(custom)
    assert get_registry() is custom


# --------------------------------------------------------------------------- plugins in code


def test_duplicate_kind_names_both_providers() -> None:
    with pytest.raises(RegistryError) as info:
        build_registry(extra_plugins=[(ClashingPlugin(), "myplugin 1.0")])
    message = str(info.value)
    assert "backbone named 'transformer'" in message
    assert BUILTIN in message
    assert "myplugin 1.0" in message
    assert "ClashingTransformerSpec" in message and "TransformerSpec" in message
    # the built-in registered first, so it is the one already there
    assert message.index(BUILTIN) < message.index("myplugin 1.0")


def test_duplicate_between_two_plugins() -> None:
    class Twin:
        @hookimpl
        def clue_register_backbones(self) -> list[type[BackboneSpec]]:
            return [MeanPoolSpec]

    with pytest.raises(RegistryError) as info:
        build_registry(extra_plugins=[(MeanPoolPlugin(), "first 1.0"), (Twin(), "second 2.0")])
    assert "first 1.0" in str(info.value) and "second 2.0" in str(info.value)


def test_plugin_backbone_becomes_valid_in_recipes(tiny_recipe: dict[str, Any]) -> None:
    data = copy.deepcopy(tiny_recipe)
    data["backbone"] = {"kind": "meanpool", "dim": 12}
    with pytest.raises(RecipeError, match="unknown kind 'meanpool'"):
        validate_recipe(data)

    registry = build_registry(extra_plugins=[(MeanPoolPlugin(), "myplugin 1.0")])
    assert registry.get("backbone", "meanpool").provider == "myplugin 1.0"
    assert registry.get("backbone", "transformer").provider == BUILTIN
    assert registry.specs("backbone")[0].kind_name() == "transformer"  # built-ins first
    recipe = recipe_model(registry).model_validate(data)
    assert isinstance(recipe.backbone, MeanPoolSpec)
    assert recipe.backbone.dim == 12
    assert validate_recipe(data, registry=registry).backbone.kind == "meanpool"
    # the plugin spec is as strict as a built-in one
    data["backbone"]["dimm"] = 3
    with pytest.raises(RecipeError, match=r"backbone\.dimm: Extra inputs are not permitted"):
        validate_recipe(data, registry=registry)


def test_plugin_backbone_runs_end_to_end(tiny_recipe: dict[str, Any], tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from clue_fw.runner import run

    data = copy.deepcopy(tiny_recipe)
    data["backbone"] = {"kind": "meanpool", "dim": 8}
    data["finetune"]["train"]["epochs"] = 1
    registry = build_registry(extra_plugins=[(MeanPoolPlugin(), "myplugin 1.0")])
    reset_registry(registry)
    recipe = validate_recipe(data)  # the process registry now knows the plugin
    result = run(recipe, out=tmp_path / "run", console=Console(file=io.StringIO()))
    assert set(result.metrics["test"]) == {"mrr@10", "recall@10", "ndcg@10"}
    assert (tmp_path / "run" / "pretrain" / "encoder.safetensors").is_file()


def test_clue_list_shows_plugin_and_provider(capsys: pytest.CaptureFixture[str]) -> None:
    from clue_fw.cli import main

    reset_registry(build_registry(extra_plugins=[(MeanPoolPlugin(), "myplugin 1.0")]))
    with pytest.raises(SystemExit) as info:
        main(["list"])
    assert info.value.code in (0, None)
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if " meanpool " in line)
    assert "backbone" in row and "myplugin 1.0" in row and "Mean pooling" in row


def test_hook_returning_a_non_list() -> None:
    class Broken:
        @hookimpl
        def clue_register_heads(self) -> Any:
            return MeanPoolSpec

    with pytest.raises(RegistryError, match="must return a list"):
        build_registry(extra_plugins=[(Broken(), "broken 0.1")])


def test_spec_through_the_wrong_hook() -> None:
    class WrongHook:
        @hookimpl
        def clue_register_heads(self) -> list[type[HeadSpec]]:
            return [MeanPoolSpec]  # type: ignore[list-item]

    with pytest.raises(RegistryError, match="clue_register_backbones"):
        build_registry(extra_plugins=[(WrongHook(), "wrong 0.1")])


def test_non_spec_and_kindless_spec_rejected() -> None:
    class NotASpec:
        @hookimpl
        def clue_register_backbones(self) -> list[Any]:
            return [dict]

    with pytest.raises(RegistryError, match="not a ComponentSpec subclass"):
        build_registry(extra_plugins=[(NotASpec(), "bad 0.1")])

    class NoKind(BackboneSpec):
        """No default kind."""

        def build(self, context: BuildContext) -> SequenceEncoder:
            raise NotImplementedError

    class KindlessPlugin:
        @hookimpl
        def clue_register_backbones(self) -> list[type[BackboneSpec]]:
            return [NoKind]

    with pytest.raises(RegistryError, match=r"kindless 0\.1.*kind: Literal"):
        build_registry(extra_plugins=[(KindlessPlugin(), "kindless 0.1")])


def test_module_plugin() -> None:
    module = SimpleNamespace()  # any object with hookimpl attributes works, modules included
    module.clue_register_backbones = hookimpl(lambda: [MeanPoolSpec])
    registry = build_registry(extra_plugins=[(module, "modplugin 3")])
    assert registry.get("backbone", "meanpool").provider == "modplugin 3"


# --------------------------------------------------------------------------- entry points


class FakeEntryPoint:
    def __init__(self, name: str, plugin: Any, dist: Any = None, fail: bool = False) -> None:
        self.name = name
        self.value = f"{name}_module:plugin"
        self.dist = dist
        self._plugin = plugin
        self._fail = fail

    def load(self) -> Any:
        if self._fail:
            raise ImportError("no module named toy_dependency")
        return self._plugin


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    points = [
        FakeEntryPoint(
            "meanpool", MeanPoolPlugin(), SimpleNamespace(name="clue-meanpool", version="2.0")
        )
    ]

    def entry_points(group: str) -> list[FakeEntryPoint]:
        return list(points) if group == "clue_fw" else []

    monkeypatch.setattr(registry_module.metadata, "entry_points", entry_points)
    monkeypatch.delenv("CLUE_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("CLUE_PLUGINS", raising=False)
    return points


def kinds(registry: registry_module.Registry) -> set[str]:
    return {e.kind for e in registry.all_entries()}


def test_entry_point_plugins_load(fake_entry_points: list[FakeEntryPoint]) -> None:
    registry = build_registry()
    assert registry.get("backbone", "meanpool").provider == "clue-meanpool 2.0"
    reset_registry()
    assert "meanpool" in kinds(get_registry())


def test_entry_point_without_distribution_uses_its_name(
    fake_entry_points: list[FakeEntryPoint],
) -> None:
    fake_entry_points[0].dist = None
    assert build_registry().get("backbone", "meanpool").provider == "meanpool"


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_disable_plugins(
    fake_entry_points: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CLUE_DISABLE_PLUGINS", value)
    assert "meanpool" not in kinds(build_registry())


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_disable_plugins_off_values(
    fake_entry_points: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CLUE_DISABLE_PLUGINS", value)
    assert "meanpool" in kinds(build_registry())


def test_allow_list(
    fake_entry_points: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points.append(FakeEntryPoint("clash", ClashingPlugin()))
    with pytest.raises(RegistryError, match="clash"):
        build_registry()
    monkeypatch.setenv("CLUE_PLUGINS", "meanpool")
    assert "meanpool" in kinds(build_registry())
    monkeypatch.setenv("CLUE_PLUGINS", " meanpool , ")
    assert "meanpool" in kinds(build_registry())


@pytest.mark.parametrize("allow", ["other", " other , meanpool ", "meanpool,nope"])
def test_allow_list_names_that_match_no_entry_point_are_errors(
    fake_entry_points: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch, allow: str
) -> None:
    """A name in CLUE_PLUGINS that no entry point has would silently load nothing."""
    monkeypatch.setenv("CLUE_PLUGINS", allow)
    with pytest.raises(RegistryError) as info:
        build_registry()
    message = str(info.value)
    assert "CLUE_PLUGINS" in message and "Entry-point names: 'meanpool'" in message
    unknown = next(n.strip() for n in allow.split(",") if n.strip() != "meanpool")
    assert repr(unknown) in message


def test_allow_list_with_a_distribution_name_names_its_entry_point(
    fake_entry_points: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUE_PLUGINS", "Clue_MeanPool")
    with pytest.raises(
        RegistryError, match=r"is a distribution; its entry point is named 'meanpool'"
    ):
        build_registry()


def test_broken_entry_point_is_a_registry_error(
    fake_entry_points: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points.append(FakeEntryPoint("broken", None, fail=True))
    with pytest.raises(RegistryError) as info:
        build_registry()
    message = str(info.value)
    assert "'broken'" in message and "ImportError" in message and "CLUE_DISABLE_PLUGINS" in message
    monkeypatch.setenv("CLUE_DISABLE_PLUGINS", "1")
    build_registry()  # the documented way out works


def test_hermetic_default_ignores_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    # conftest sets CLUE_DISABLE_PLUGINS=1: entry points are not even listed
    def explode(group: str) -> list[Any]:
        raise AssertionError("entry points must not be read")

    monkeypatch.setattr(registry_module.metadata, "entry_points", explode)
    assert kinds(build_registry()) == builtin_kinds()


# ------------------------------------------------------------------ plugins that break rules


def test_a_hook_that_raises_names_the_plugin_and_the_hook() -> None:
    class Raising:
        @hookimpl
        def clue_register_objectives(self) -> list[Any]:
            raise KeyError("projector")

    with pytest.raises(RegistryError) as info:
        build_registry(extra_plugins=[(Raising(), "raising 0.3")])
    message = str(info.value)
    assert "Plugin raising 0.3: its hook clue_register_objectives raised KeyError" in message
    assert "'projector'" in message and "CLUE_DISABLE_PLUGINS=1" in message


def test_pluggy_validation_failures_name_the_plugin() -> None:
    class WrongArguments:
        @hookimpl
        def clue_register_heads(self, registry: Any) -> list[Any]:
            return []

    with pytest.raises(RegistryError, match=r"Plugin args 1\.0 has a hook implementation that "):
        build_registry(extra_plugins=[(WrongArguments(), "args 1.0")])

    class Misspelt:
        @hookimpl
        def clue_register_head(self) -> list[Any]:
            return []

    with pytest.raises(RegistryError) as info:
        build_registry(extra_plugins=[(Misspelt(), "typo 2.0")])
    message = str(info.value)
    assert "Plugin typo 2.0" in message and "clue_register_head" in message
    assert "clue_register_heads" in message  # the real hook names, to compare


def test_two_distributions_with_one_entry_point_name(
    fake_entry_points: list[FakeEntryPoint],
) -> None:
    fake_entry_points.append(
        FakeEntryPoint("meanpool", MeanPoolPlugin(), SimpleNamespace(name="other", version="9"))
    )
    with pytest.raises(RegistryError) as info:
        build_registry()
    message = str(info.value)
    assert "entry-point name 'meanpool'" in message
    assert "clue-meanpool 2.0" in message and "other 9" in message


def test_one_distribution_seen_twice_loads_once(fake_entry_points: list[FakeEntryPoint]) -> None:
    first = fake_entry_points[0]
    fake_entry_points.append(FakeEntryPoint(first.name, first._plugin, first.dist))
    assert build_registry().get("backbone", "meanpool").provider == "clue-meanpool 2.0"


def test_describe_component_and_provider_of() -> None:
    reset_registry(build_registry(extra_plugins=[(MeanPoolPlugin(), "myplugin 1.0")]))
    encoder = MeanPoolSpec().build(BuildContext(num_items=5, max_len=4))
    assert registry_module.describe_component(encoder) == (
        f"MeanPoolEncoder (module {__name__}, plugin myplugin 1.0)"
    )
    assert registry_module.provider_of("backbone", "meanpool") == "myplugin 1.0"
    assert registry_module.provider_of("backbone", "transformer") == BUILTIN
    assert registry_module.provider_of("head", "nothing") is None


class WideEncoder(MeanPoolEncoder):
    """Returns user vectors one wider than its states (breaks the contract)."""

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        states, user = super().forward(items)
        return EncoderOutput(states, torch.cat([user, user[:, :1]], dim=1))


class TupleEncoder(MeanPoolEncoder):
    def forward(self, items: torch.Tensor) -> EncoderOutput:
        return tuple(super().forward(items))  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("encoder_class", "fragment"),
    [
        (WideEncoder, "its user vector has shape [3, 9], not [3, 8]"),
        (TupleEncoder, "it returned tuple, not EncoderOutput(states, user)"),
    ],
)
def test_a_backbone_that_breaks_its_contract(encoder_class: type, fragment: str) -> None:
    from clue_fw.errors import PluginError

    reset_registry(build_registry(extra_plugins=[(MeanPoolPlugin(), "myplugin 1.0")]))
    encoder = encoder_class(num_items=5, max_len=4, dim=8)
    with pytest.raises(PluginError) as info:
        encoder(torch.tensor([[0, 1, 2], [3, 4, 5], [0, 0, 1]]))
    message = str(info.value)
    assert f"Backbone {encoder_class.__name__} (module {__name__}, plugin myplugin 1.0)" in message
    assert fragment in message


def test_every_builtin_backbone_keeps_the_contract() -> None:
    context = BuildContext(num_items=9, max_len=6)
    items = torch.tensor([[0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 1]])
    for entry in build_registry().entries["backbone"].values():
        output = entry.spec().build(context)(items)  # type: ignore[call-arg]
        assert output.states.shape[:2] == (2, 6), entry.kind


def loss_step(output: Any) -> Any:
    return lambda batch: output


@pytest.mark.parametrize(
    ("output", "fragment"),
    [
        (torch.tensor(1.0, requires_grad=True), "it returned Tensor, not LossOutput"),
        ((torch.tensor(1.0), {}), "it returned tuple, not LossOutput"),
        (LossOutput(1.0, {}), "its loss is float, not a tensor"),  # type: ignore[arg-type]
        (
            LossOutput(torch.ones(3, requires_grad=True), {}),
            "its loss is a torch.float32 tensor of shape [3], not a scalar float",
        ),
        (LossOutput(torch.tensor(1.0), {}), "does not require gradients"),
        (LossOutput(torch.tensor(1.0, requires_grad=True), []), "its terms are list"),  # type: ignore[arg-type]
        (
            LossOutput(torch.tensor(1.0, requires_grad=True), {"z": torch.ones(2)}),
            "its term 'z' is not a named scalar",
        ),
    ],
)
def test_a_loss_that_breaks_its_contract(output: Any, fragment: str) -> None:
    import io

    from rich.console import Console

    from clue_fw.errors import PluginError
    from clue_fw.training.loop import train_epoch
    from clue_fw.training.report import Reporter

    reset_registry(build_registry(extra_plugins=[(MeanPoolPlugin(), "myplugin 1.0")]))
    parameter = nn.Parameter(torch.ones(()))
    with pytest.raises(PluginError) as info:
        train_epoch(
            loss_step(output),
            [parameter],
            torch.optim.SGD([parameter], lr=0.1),
            [{"items": torch.ones(2, 3, dtype=torch.long)}],
            1,
            None,
            Reporter(Console(file=io.StringIO())),
            "finetune epoch 1/1",
            loss_name="next_item head",
        )
    message = str(info.value)
    assert f"The next_item head (plugin {BUILTIN}) broke the loss contract: " in message
    assert fragment in message
