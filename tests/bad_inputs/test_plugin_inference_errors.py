"""A plugin's exception at inference time names the plugin, as it does in ``clue run``.

A backbone that raises in ``forward`` (only once the run has finished, when
``$CLUE_TEST_BACKBONE_RAISES`` is set) must give every command one paragraph that names
the component and its plugin, exit code 2 and no traceback, and change no file.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from cases import TINY, put
from cli_main import main_exit
from input_paths import FLAKY, FLAKY_PROVIDER, RAISE_ENV
from rich.console import Console
from test_bad_inputs import install_entry_points, snapshot

from clue_fw.errors import PluginError

MESSAGE = (
    f"FlakyEncoder (module input_paths, plugin {FLAKY_PROVIDER}) raised RuntimeError in "
    "forward: the flaky encoder lost its weights"
)


@pytest.fixture
def flaky_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A finished tiny run whose backbone is the flaky plugin's (not raising yet)."""
    import copy

    from clue_fw.runner import run

    install_entry_points(monkeypatch, FLAKY)
    monkeypatch.delenv(RAISE_ENV, raising=False)
    recipe = copy.deepcopy(TINY)
    put("backbone", {"kind": "flaky", "dim": 16})(recipe)
    done = run(recipe, out=tmp_path / "run", console=Console(file=io.StringIO()))
    return done.run_dir


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "{run}"],
        ["embed", "{run}", "--out", "{tmp}/users.npy"],
        ["analyze", "{run}", "--out", "{tmp}/analysis"],
        ["run", "{run}/recipe.yaml", "--out", "{tmp}/again"],
    ],
    ids=["evaluate", "embed", "analyze", "run"],
)
def test_a_plugin_backbone_that_raises_is_named(
    flaky_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    before = snapshot(tmp_path)
    monkeypatch.setenv(RAISE_ENV, "1")
    args = [a.format(run=flaky_run, tmp=tmp_path) for a in argv]
    code, out, err = main_exit(args, capsys)
    assert code == 2, err
    assert "Traceback" not in err and out == ""
    assert MESSAGE in " ".join(err.split()), err
    assert "This is a bug in the plugin" in " ".join(err.split())
    after = snapshot(tmp_path)
    assert after is not None and before is not None
    assert {k: v for k, v in after.items() if k.startswith("run/")} == {
        k: v for k, v in before.items() if k.startswith("run/")
    }


def test_the_library_raises_a_plugin_error(
    flaky_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clue_fw import load_run

    loaded = load_run(flaky_run, device="cpu")
    monkeypatch.setenv(RAISE_ENV, "1")
    with pytest.raises(PluginError, match="raised RuntimeError in forward") as info:
        loaded.embed_users({"ann": [1, 2, 3]})
    assert isinstance(info.value.__cause__, RuntimeError)  # the plugin's own error, chained
