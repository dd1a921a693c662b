"""Run the bad-input corpus (``cases.py``) through the library API and the CLI.

Each error case must raise exactly its ClueError subclass with every message
fragment, and through ``clue_fw.cli.main`` exit with code 2, print the message on
stderr and no traceback. A failed run never writes a ``metrics.json`` (one that a
case put there as its bad input stays as it was), and a run that fails before its
directory exists leaves ``--out`` as it was.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from cases import ACCEPTED_CASES, CASES, ERROR_CASES, TINY_YAML, Case, probe_call, render_doc
from cli_main import main_exit
from rich.console import Console

import clue_fw.errors
from clue_fw.errors import ClueError

ROOT = Path(__file__).resolve().parents[2]
LIBRARY_CASES = [case for case in CASES if not case.cli_only and case.command != "cli"]
CLI_CASES = [case for case in CASES if case.command != "api"]


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the tiny recipe (made once); resume cases work on copies."""
    from clue_fw.recipe import load_recipe
    from clue_fw.runner import run

    folder = tmp_path_factory.mktemp("finished")
    recipe = folder / "recipe.yaml"
    recipe.write_text(TINY_YAML, encoding="utf-8")
    return run(load_recipe(recipe), out=folder / "run", console=quiet()).run_dir


@pytest.fixture
def case_dir(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    finished_run: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """The case's directory: recipe.yaml, data/ (the data root), out/ or run/."""
    case: Case = request.param
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("CLUE_DATA_DIR", str(tmp_path / "data"))
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if case.entry_points:
        install_entry_points(monkeypatch, case.entry_points)
    (tmp_path / "recipe.yaml").write_bytes(case.recipe_bytes())
    for name, payload in case.files.items():
        (tmp_path / "data" / name).write_bytes(payload)
    if case.command == "probe":  # a finished run, metrics.json and all
        shutil.copytree(finished_run, tmp_path / "run")
        INPUT_METRICS[tmp_path / "run"] = (tmp_path / "run" / "metrics.json").read_bytes()
    if case.command == "resume":
        shutil.copytree(finished_run, tmp_path / "run")
        (tmp_path / "run" / "metrics.json").unlink()  # interrupted before the end
        if case.damage is not None:
            case.damage(tmp_path / "run")
        if (tmp_path / "run" / "metrics.json").is_file():  # the damage put one there
            INPUT_METRICS[tmp_path / "run"] = (tmp_path / "run" / "metrics.json").read_bytes()
    if case.command == "cli":  # a finished run R0 (with metrics.json) for other commands
        shutil.copytree(finished_run, tmp_path / "R0")
    if case.setup is not None:
        cleanup = case.setup(tmp_path)
        if callable(cleanup):  # e.g. release a lock the setup holds
            request.addfinalizer(cleanup)
    return tmp_path


# metrics.json files that a case's damage wrote (a failed run must leave them as they were)
INPUT_METRICS: dict[Path, bytes] = {}


def install_entry_points(monkeypatch: pytest.MonkeyPatch, points: tuple[object, ...]) -> None:
    """Make ``points`` the installed ``clue_fw`` plugins and rebuild the registry lazily."""
    import clue_fw.registry as registry_module

    def entry_points(group: str) -> list[object]:
        return list(points) if group == registry_module.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry_module.metadata, "entry_points", entry_points)
    monkeypatch.delenv(registry_module.DISABLE_ENV, raising=False)
    monkeypatch.delenv(registry_module.ALLOW_ENV, raising=False)
    registry_module.reset_registry()


def snapshot(folder: Path) -> dict[str, bytes] | None:
    """Every regular file below ``folder`` (a named pipe is skipped: reading would block)."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def run_library(case: Case, folder: Path) -> object:
    from clue_fw.recipe import load_recipe
    from clue_fw.runner import run

    if case.api is not None:
        return case.api(folder)
    if case.command == "probe":
        return probe_call(case.cli_args, folder)
    recipe = load_recipe(folder / "recipe.yaml", list(case.sets))
    if case.command == "resume":
        return run(recipe, resume=folder / "run", console=quiet())
    overwrite = "--overwrite" in case.cli_args
    return run(recipe, out=folder / "out", overwrite=overwrite, console=quiet())


def cli_argv(case: Case, folder: Path) -> list[str]:
    if case.command == "probe":
        return ["probe", *(arg.format(case=folder) for arg in case.cli_args)]
    if case.command == "cli":
        return [arg.format(case=folder) for arg in case.argv]
    argv = ["run", str(folder / "recipe.yaml")]
    for override in case.sets:
        argv += ["--set", override]
    if case.command == "resume":
        argv += ["--resume", str(folder / "run")]
    else:
        argv += ["--out", str(folder / "out")]
    return argv + [arg.format(case=folder) for arg in case.cli_args]


def check_outcome(case: Case, folder: Path, out_before: dict[str, bytes] | None) -> None:
    """Success: metrics.json written. Failure: nothing left looking complete; a command
    other than ``clue run`` leaves every file of the case directory as it was."""
    if case.command == "cli":
        assert snapshot(folder) == out_before, "a refused command changed a file"
        return
    run_dir = folder / ("run" if case.command in ("resume", "probe") else "out")
    if case.error is None:
        assert (run_dir / "metrics.json").is_file()
        if case.command == "probe":  # read, never written
            assert (run_dir / "metrics.json").read_bytes() == INPUT_METRICS[run_dir]
        return
    for candidate in (folder / "out", folder / "run"):
        left = candidate / "metrics.json"
        assert not left.is_file() or left.read_bytes() == INPUT_METRICS.get(candidate), candidate
    if case.command == "run" and not case.creates_run_dir:
        assert snapshot(folder / "out") == out_before, "--out was changed by a failed run"


def flat(text: str) -> str:
    return " ".join(text.split())  # the console may wrap long lines


def ids(cases: list[Case] | tuple[Case, ...]) -> list[str]:
    return [case.id for case in cases]


@pytest.mark.parametrize("case_dir", LIBRARY_CASES, ids=ids(LIBRARY_CASES), indirect=True)
def test_library(case_dir: Path, request: pytest.FixtureRequest) -> None:
    case: Case = request.node.callspec.params["case_dir"]
    before = snapshot(case_dir / "out")
    if case.error is None:
        run_library(case, case_dir)
    else:
        with pytest.raises(ClueError) as info:
            run_library(case, case_dir)
        assert type(info.value).__name__ == case.error, info.value
        message = flat(str(info.value))
        for fragment in case.fragments:
            assert fragment in message, message
    check_outcome(case, case_dir, before)


@pytest.mark.parametrize("case_dir", CLI_CASES, ids=ids(CLI_CASES), indirect=True)
def test_cli(
    case_dir: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    case: Case = request.node.callspec.params["case_dir"]
    before = snapshot(case_dir if case.command == "cli" else case_dir / "out")
    code, out, err = main_exit(cli_argv(case, case_dir), capsys)
    assert "Traceback" not in err
    if case.error is None:
        assert code == 0, err
    else:
        assert code == 2, err
        assert "error:" in err, err  # after the run's log lines, if it got that far
        assert out == ""
        for fragment in case.fragments:
            assert fragment in flat(err), err
    check_outcome(case, case_dir, before)


def test_overwrite_replaced_the_old_contents(tmp_path: Path, finished_run: Path) -> None:
    from clue_fw.recipe import load_recipe
    from clue_fw.runner import run

    shutil.copytree(finished_run, tmp_path / "out")  # a run directory: replaceable
    (tmp_path / "out" / "keep.txt").write_text("old")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(TINY_YAML, encoding="utf-8")
    run(load_recipe(recipe), out=tmp_path / "out", overwrite=True, console=quiet())
    assert not (tmp_path / "out" / "keep.txt").exists()


# --------------------------------------------------------------------------- the corpus


def test_corpus_is_well_formed() -> None:
    assert len(ERROR_CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"
    for case in ERROR_CASES:
        error = getattr(clue_fw.errors, case.error or "", None)
        assert isinstance(error, type) and issubclass(error, ClueError), case.id
        assert case.fragments, case.id
    for case in CASES:
        assert (case.command == "api") == (case.api is not None), case.id
        assert (case.command == "cli") == bool(case.argv), case.id
    assert ACCEPTED_CASES and all(not case.fragments for case in ACCEPTED_CASES)


def test_docs_list_every_case() -> None:
    doc = (ROOT / "docs" / "bad-inputs.md").read_text(encoding="utf-8")
    assert f"**{len(ERROR_CASES)} error cases**" in render_doc()
    assert doc == render_doc(), (
        "docs/bad-inputs.md is stale: run `python tests/bad_inputs/cases.py > docs/bad-inputs.md`"
    )
