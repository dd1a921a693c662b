"""`clue list FILTER`, `clue show`, `clue schema` and `clue validate`'s data check.

One real `clue` process per command (started together, stderr not a terminal); the
variations of each command run `clue_fw.cli.main` in-process, to keep the suite fast.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from cli_main import main_exit

from clue_fw.recipe import recipe_model
from clue_fw.reference import field_rows
from clue_fw.registry import build_registry

Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory,
    clue_spawn: Spawn,
    clue_finish: Callable[..., Any],
    make_tiny_recipe: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("discover")
    missing = make_tiny_recipe()
    missing["data"] = {"format": "sequences", "path": "nowhere/seq.txt", "max_len": 10}
    recipe = root / "missing.yaml"
    recipe.write_text(yaml.safe_dump(missing), encoding="utf-8")
    env = {"CLUE_DATA_DIR": str(root)}
    started = {
        "list_head": clue_spawn("list", "head"),
        "show": clue_spawn("show", "transformer"),
        "schema_out": clue_spawn("schema", "--out", root / "recipe.schema.json"),
        "validate": clue_spawn("validate", recipe, env=env),
        "validate_strict": clue_spawn("validate", recipe, "--strict", env=env),
    }
    return {"root": root, **{name: clue_finish(p) for name, p in started.items()}}


def table_kinds(text: str) -> set[str]:
    return {row.split("│")[2].strip() for row in text.splitlines() if row.count("│") >= 4}


def test_list_filters_by_family_kind_or_provider(
    results: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    heads = results["list_head"]
    assert heads.returncode == 0, heads
    assert table_kinds(heads.stdout) == {"next_item", "profile", "cold_start"}
    code, out, _ = main_exit(["list", "TRANSF"], capsys)
    assert code == 0 and table_kinds(out) == {"transformer"}  # case-insensitive substring
    code, out, _ = main_exit(["list", "built-in"], capsys)  # the provider
    assert code == 0 and "transformer" in table_kinds(out) and "clue" in table_kinds(out)
    code, out, _ = main_exit(["list", "views"], capsys)  # the recipe key of the family
    assert code == 0 and {"dropout", "mask", "crop", "permute"} <= table_kinds(out)
    assert "transformer" not in table_kinds(out)
    code, _, err = main_exit(["list", "no-such-thing"], capsys)
    assert code == 2 and "no-such-thing" in err and "clue list" in err


def test_show_prints_every_field_with_type_default_and_description(
    results: dict[str, Any],
) -> None:
    shown = results["show"]
    assert shown.returncode == 0, shown
    entry = build_registry().get("backbone", "transformer")
    assert shown.stdout.startswith(f"backbone transformer: {entry.description}")
    for name, type_name, default, description in field_rows(entry.spec, skip=("kind",)):
        assert f"  {name}: {type_name} = {default.strip('`')}" in shown.stdout
        assert description in shown.stdout
    assert "clue_fw" in shown.stdout and "built-in" in shown.stdout


def test_show_family_kind_and_unknown_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = main_exit(["show", "objective", "clue"], capsys)
    assert code == 0 and out.startswith("objective clue:") and "projector_dim" in out
    code, _, err = main_exit(["show", "transfomer"], capsys)
    assert code == 2 and "'transfomer'" in err and "clue list" in err
    code, _, err = main_exit(["show", "views", "dropout"], capsys)
    assert code == 2 and "Unknown component family 'views'" in err and "augmentation" in err
    code, _, err = main_exit(["show", "a", "b", "c"], capsys)
    assert code == 2 and "KIND or FAMILY KIND" in err


def test_show_asks_for_the_family_of_an_ambiguous_kind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from types import SimpleNamespace
    from typing import Literal

    from clue_fw.components import BackboneSpec, BuildContext, SequenceEncoder
    from clue_fw.hookspecs import hookimpl
    from clue_fw.registry import reset_registry

    class Clue(BackboneSpec):
        """A backbone that shares its kind with the clue objective."""

        kind: Literal["clue"] = "clue"

        def build(self, context: BuildContext) -> SequenceEncoder:
            raise NotImplementedError

    plugin = SimpleNamespace(clue_register_backbones=hookimpl(lambda: [Clue]))
    reset_registry(build_registry(extra_plugins=[(plugin, "twin 1.0")]))
    code, _, err = main_exit(["show", "clue"], capsys)
    flat = " ".join(err.split())
    assert (
        code == 2 and "`clue show backbone clue`" in flat and "`clue show objective clue`" in flat
    )
    code, out, _ = main_exit(["show", "backbone", "clue"], capsys)
    assert code == 0 and out.startswith("backbone clue:") and "twin 1.0" in out


def test_schema_is_the_recipe_models_json_schema(
    results: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, printed, _ = main_exit(["schema"], capsys)
    assert code == 0
    schema = json.loads(printed)
    expected = recipe_model(build_registry()).model_json_schema()
    assert {k: v for k, v in schema.items() if k != "$schema"} == expected
    assert schema["$schema"].startswith("https://json-schema.org/")
    written = results["schema_out"]
    assert written.returncode == 0, written
    path = results["root"] / "recipe.schema.json"
    assert written.stdout.strip() == str(path)
    assert json.loads(path.read_text()) == schema


def test_validate_warns_of_a_missing_data_file(results: dict[str, Any]) -> None:
    warned = results["validate"]
    assert warned.returncode == 0, warned
    flat = " ".join(warned.stderr.split())
    assert "is valid" in flat and "warning:" in flat and "nowhere/seq.txt" in flat
    assert yaml.safe_load(warned.stdout)["data"]["path"] == "nowhere/seq.txt"
    strict = results["validate_strict"]
    assert strict.returncode == 2, strict
    assert "Data file not found" in " ".join(strict.stderr.split()) and strict.stdout == ""
