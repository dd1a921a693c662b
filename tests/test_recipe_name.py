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
    assert "without '/', '\\' or control characters, and not '.' or '..'" in message
