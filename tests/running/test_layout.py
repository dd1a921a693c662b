"""One owner of the run directory (issue 19): every file name of a run is defined in
clue_fw/running/layout.py and nowhere else, a finished run is read by a plain reader (no
lock, no writes), and ``run(resume=DIR)`` continues a run without being given its recipe."""

from __future__ import annotations

import ast
import copy
import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clue_fw.errors import ClueError
from clue_fw.inference.run_files import read_recipe, run_reader
from clue_fw.runner import run, stored_recipe
from clue_fw.running import layout
from clue_fw.running.run_directory import RunDirectory
from clue_fw.running.run_reader import RunReader

PACKAGE = Path(layout.__file__).resolve().parent.parent
NAMES = {
    value
    for name, value in vars(layout).items()
    if name.endswith("_FILE") and isinstance(value, str)
}


def test_the_layout_names_every_file() -> None:
    assert NAMES == {
        "recipe.yaml",
        ".lock",
        "run.log",
        "metrics.json",
        "last.safetensors",
        "best.safetensors",
        "encoder.safetensors",
        "history.csv",
    }


@pytest.mark.parametrize(
    "path", sorted(p for p in PACKAGE.rglob("*.py") if p.name != "layout.py"), ids=str
)
def test_no_module_but_the_layout_spells_a_run_file_name(path: Path) -> None:
    """A run file's name as a whole string constant (``run_dir / "recipe.yaml"``) is
    spelt in layout.py only; messages may mention it inside longer text."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    spelt = [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in NAMES
    ]
    assert spelt == []


@pytest.fixture
def finished(tmp_path: Path, tiny_recipe: dict[str, Any]) -> Path:
    data = copy.deepcopy(tiny_recipe)
    data["pretrain"] = None
    data["finetune"]["train"]["epochs"] = 1
    quiet = Console(file=io.StringIO())
    return run(data, out=tmp_path / "run", console=quiet).run_dir


def test_a_finished_run_is_read_without_its_writer(finished: Path) -> None:
    _, identity = read_recipe(finished)
    reader = run_reader(finished, identity)
    assert isinstance(reader, RunReader) and not isinstance(reader, RunDirectory)
    assert reader.finished_metrics() is not None
    tensors, _ = reader.load_checkpoint(
        layout.stage_file(finished, layout.FINETUNE, layout.BEST_FILE), "best"
    )
    assert tensors
    assert not hasattr(reader, "lock")  # a reader takes no lock and writes nothing


def test_resume_needs_no_recipe(finished: Path, tmp_path: Path) -> None:
    before = layout.metrics_path(finished).read_bytes()
    result = run(resume=finished, console=Console(file=io.StringIO()))
    assert result.run_dir == finished
    assert layout.metrics_path(finished).read_bytes() == before
    assert stored_recipe(finished).name == read_recipe(finished)[0].name
    with pytest.raises(ClueError, match="holds no recipe.yaml"):
        run(resume=tmp_path, console=Console(file=io.StringIO()))
