"""A recipe ``name`` is one safe folder name: it names runs/<name>/<time>."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clue_fw.errors import RecipeError
from clue_fw.recipe import validate_recipe

BAD_NAMES = ["/abs/dir", "../../x", "a/b", "..", ".", "", "   ", "a\\b", "a\x00b", "tab\tname",
             "new\nline", " padded", "x" * 101]  # fmt: skip


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n)[:20] for n in BAD_NAMES])
def test_unsafe_names_are_refused_by_clue_validate(
    name: str,
    tiny_recipe: dict[str, Any],
    write_recipe: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from clue_fw.cli import main

    tiny_recipe["name"] = name
    with pytest.raises(SystemExit) as info:
        main(["validate", str(write_recipe(tiny_recipe))])
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 2, err
    assert "name:" in err and "a name must be one folder name" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["ml30_dropout", "coldrec3_nfm_recent", "my run (v2)", "Ünïcode"])
def test_folder_names_are_accepted(name: str, tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["name"] = name
    assert validate_recipe(tiny_recipe).name == name


def test_the_message_says_what_is_allowed(tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["name"] = "../../x"
    with pytest.raises(RecipeError) as info:
        validate_recipe(tiny_recipe)
    message = str(info.value)
    assert "name: Value error, '../../x' is not a single folder name (it contains '/')" in message
    assert "without '/', '\\', control or invisible format characters" in message
    assert "and not '.' or '..'" in message


@pytest.mark.parametrize(
    ("stem", "expected"),
    [("ml30_dropout", "ml30_dropout"), (".", "recipe"), ("a" * 200, "a" * 100)],
)
def test_a_recipe_file_without_name_runs_whatever_its_file_is_called(
    tmp_path: Path, tiny_recipe: dict[str, Any], stem: str, expected: str
) -> None:
    """The name defaults to the file's stem, made valid; the file's name is no recipe key."""
    import yaml

    from clue_fw.recipe import load_recipe

    data = {key: value for key, value in tiny_recipe.items() if key != "name"}
    path = tmp_path / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_recipe(path).name == expected


@pytest.mark.parametrize("name", ["a\u200bb", "evil\u202etxt.yaml"])
def test_invisible_format_characters_are_refused(name: str) -> None:
    from clue_fw.recipe import validate_recipe

    with pytest.raises(RecipeError, match="not a single folder name"):
        validate_recipe({"name": name, "data": {"format": "synthetic"}})


def test_a_mask_view_that_masks_everything_is_refused() -> None:
    from clue_fw.augmentations.mask import MaskViewSpec

    with pytest.raises(ValueError, match="less than 1"):
        MaskViewSpec(rho=1.0)
    assert MaskViewSpec(rho=0.9).rho == 0.9
