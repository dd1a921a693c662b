"""Documentation stays true: every hook is documented and tested, the recipe
reference matches the code, and the README's library example runs."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from clue_fw import hookspecs
from clue_fw.reference import render
from clue_fw.registry import build_registry

ROOT = Path(__file__).resolve().parents[1]
HOOKS = [
    name
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("clue_")
]


def test_there_are_four_hooks_with_the_project_prefix() -> None:
    assert sorted(HOOKS) == [
        "clue_register_augmentations",
        "clue_register_backbones",
        "clue_register_heads",
        "clue_register_objectives",
    ]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_documentation_section(hook: str) -> None:
    assert f"## `{hook}`" in (ROOT / "docs" / "plugins.md").read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_implemented_by_the_builtins(hook: str) -> None:
    from clue_fw import builtins

    assert callable(getattr(builtins, hook, None)), f"clue_fw.builtins does not implement {hook}"


def test_recipe_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "recipe-reference.md").read_text()
    assert committed == render(build_registry()), (
        "docs/recipe-reference.md is stale: run "
        "`python -m clue_fw.reference > docs/recipe-reference.md`"
    )


def test_readme_library_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    example = next(b for b in blocks if "recipe_model()" in b)
    example = example.replace('"runs/from_python"', repr(str(tmp_path / "run")))
    example = example.replace('"epochs": 10', '"epochs": 2').replace('"epochs": 3', '"epochs": 1')
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_readme_result_tables_are_the_benchmark_outputs() -> None:
    """A table under ``<!-- results:NAME -->`` in the README is copied verbatim from
    ``docs/results/NAME.md``, which a benchmark script wrote: no hand-edited numbers."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    markers = [i for i, line in enumerate(readme) if line.startswith("<!-- results:")]
    assert len(markers) >= 3
    for index in markers:
        name = readme[index].removeprefix("<!-- results:").removesuffix(" -->").strip()
        table = []
        for line in readme[index + 1 :]:
            if not line.startswith("|"):
                break
            table.append(line)
        assert len(table) >= 3, f"no table under the {name} marker"
        source = (ROOT / "docs" / "results" / f"{name}.md").read_text(encoding="utf-8")
        assert "\n".join(table) in source, f"README table {name} differs from its source"


def test_readme_own_data_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The "Your own data" section: its CSV format and its recipe, as written, through
    `clue validate` and `clue run` (a longer log in the same format; fewer epochs)."""
    import random

    from cli_main import main_exit

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    csv_head = re.findall(r"```text\n(.*?)```", section, flags=re.S)[0]
    recipe_text = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)[0]
    rows = csv_head.strip().splitlines()
    assert rows[0] == "user,item,timestamp"
    rng = random.Random(0)
    for user in range(3, 63):  # users 1 and 2 of the README, then 60 more like them
        for step in range(rng.randint(4, 12)):
            rows.append(f"{user},{rng.randint(1, 40)},{1700000000 + 100 * step + user}")
    rows += ["1,5,1700000300", "2,4,1700000300"]  # README users get 3 interactions each
    (tmp_path / "my_log.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "my_data.yaml").write_text(recipe_text)
    monkeypatch.setenv("CLUE_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code, _, stderr = main_exit(["validate", "my_data.yaml"], capsys)
    assert code == 0, stderr
    argv = ["run", "my_data.yaml", "--out", "runs/mine", "--set", "device=cpu"]
    argv += ["--set", "pretrain.train.epochs=1", "--set", "finetune.train.epochs=1"]
    code, _, stderr = main_exit(argv, capsys)
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "runs" / "mine" / "metrics.json").read_text())
    assert metrics["data"]["users"] == 62 and "ndcg@10" in metrics["test"]
