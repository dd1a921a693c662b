"""Tests of the `clue` command line.

End-to-end runs and the main user errors go through real subprocesses of
`python -m clue_fw.cli` (started together where independent, to keep the suite fast);
the remaining commands and errors call `clue_fw.cli.main` in-process.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from cli_main import main_exit

from clue_fw.components import BackboneSpec, BuildContext, SequenceEncoder
from clue_fw.hookspecs import hookimpl
from clue_fw.recipe import load_recipe
from clue_fw.training.checkpoint import load_checkpoint

Spawn = Callable[..., subprocess.Popen[str]]


def dump(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cli(
    tmp_path_factory: pytest.TempPathFactory,
    clue_spawn: Spawn,
    clue_finish: Callable[..., Any],
    make_tiny_recipe: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cli")
    recipe = dump(root / "tiny.yaml", make_tiny_recipe())
    misspelt = make_tiny_recipe()
    misspelt["pretrain"]["objective"]["predictor_hiden"] = 32
    unknown = make_tiny_recipe()
    unknown["backbone"]["kind"] = "transfomer"
    missing = make_tiny_recipe()
    missing["data"] = {"format": "sequences", "path": "ml-1m/ml-1m_sequences.txt", "max_len": 10}
    data_root = root / "data_root"
    data_root.mkdir()
    paths = {
        "misspelt": dump(root / "misspelt.yaml", misspelt),
        "unknown": dump(root / "unknown.yaml", unknown),
        "missing": dump(root / "missing.yaml", missing),
    }
    nonempty = root / "nonempty"
    nonempty.mkdir()
    (nonempty / "keep.txt").write_text("precious")
    run_dir = root / "run"
    first = {
        "nonempty_out": clue_spawn("run", recipe, "--out", nonempty, cwd=root),
        "run": clue_spawn("run", recipe, "--out", run_dir, cwd=root),
        "misspelt_run": clue_spawn("run", paths["misspelt"], "--out", root / "m", cwd=root),
        "unknown_run": clue_spawn("run", paths["unknown"], "--out", root / "u", cwd=root),
        "missing_data": clue_spawn(
            "run",
            paths["missing"],
            "--out",
            root / "d",
            cwd=root,
            env={"CLUE_DATA_DIR": str(data_root)},
        ),
    }
    results = {name: clue_finish(process) for name, process in first.items()}
    # needs the finished run directory
    results["resume_changed"] = clue_finish(
        clue_spawn("run", recipe, "--resume", run_dir, "--set", "finetune.train.lr=0.01", cwd=root)
    )
    return {
        "root": root,
        "recipe": recipe,
        "run_dir": run_dir,
        "results": results,
    }


def test_run_writes_metrics_and_artifacts(cli: dict[str, Any]) -> None:
    result = cli["results"]["run"]
    assert result.returncode == 0, result
    run_dir: Path = cli["run_dir"]
    assert result.stdout.strip() == str(run_dir)
    assert "Traceback" not in result.stderr

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert set(metrics[split]) == {"mrr@10", "recall@10", "ndcg@10"}
        for value in metrics[split].values():
            assert 0.0 <= value <= 1.0
        assert metrics[split]["mrr@10"] <= metrics[split]["ndcg@10"] <= metrics[split]["recall@10"]
    assert metrics["recipe"] == "tiny"
    assert metrics["device"] == "cpu"
    assert metrics["epochs"] == 3 and 0 <= metrics["best_epoch"] <= 3
    assert metrics["monitor"] == "ndcg@10"
    assert metrics["data"]["users"] == 200 and metrics["data"]["items"] <= 50

    resolved = load_recipe(run_dir / "recipe.yaml")
    assert resolved.name == "tiny"
    assert resolved.backbone.dim == 16 and resolved.finetune.train.epochs == 3

    log = (run_dir / "run.log").read_text()
    assert "pretrain epoch 1" in log and "finetune epoch 3" in log
    # stderr is not a terminal: it says what run.log says, line by line, time stamps
    # included, unwrapped and without table boxes
    epoch_lines = [line for line in log.splitlines() if " epoch " in line]
    assert len(epoch_lines) == 4  # 1 pre-training + 3 fine-tuning epochs
    assert result.stderr.splitlines() == log.splitlines()
    assert not any(box in result.stderr for box in "┏━┃│└")
    assert "metrics written to" in log

    for stage, name in [
        ("pretrain", "last"),
        ("pretrain", "encoder"),
        ("finetune", "last"),
        ("finetune", "best"),
    ]:
        tensors, meta = load_checkpoint(run_dir / stage / f"{name}.safetensors")
        assert tensors and meta["stage"] == stage
    _, last = load_checkpoint(run_dir / "finetune" / "last.safetensors")
    assert last["finished"] is True and last["epoch"] == 3
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("misspelt_run", ["pretrain.objective.predictor_hiden: Extra inputs are not permitted"]),
        ("unknown_run", ["backbone: unknown kind 'transfomer'", "clue list"]),
        ("missing_data", ["Data file not found", "ml-1m_sequences.txt", "CLUE_DATA_DIR"]),
        ("nonempty_out", ["exists and is not empty", "--overwrite"]),
        ("resume_changed", ["differs", "finetune.train.lr"]),
    ],
)
def test_user_errors_exit_2_without_traceback(
    cli: dict[str, Any], case: str, fragments: list[str]
) -> None:
    result = cli["results"][case]
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr
    flat = " ".join(result.stderr.split())  # the console may wrap long paths
    for fragment in fragments:
        assert fragment in flat, result
    assert result.stdout == ""


def test_failed_runs_leave_no_run_directory(cli: dict[str, Any]) -> None:
    root: Path = cli["root"]
    for name in ("m", "u", "d"):
        assert not (root / name).exists(), name


def test_nonempty_out_is_untouched(cli: dict[str, Any]) -> None:
    nonempty: Path = cli["root"] / "nonempty"
    assert [p.name for p in nonempty.iterdir()] == ["keep.txt"]
    assert (nonempty / "keep.txt").read_text() == "precious"


# --------------------------------------------------------------------------- in-process


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import clue_fw

    code, out, _ = main_exit(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"clue_fw {clue_fw.__version__}"


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["validate", "{misspelt}"], ["pretrain.objective.predictor_hiden: Extra inputs"]),
        (["validate", "{broken}"], ["not valid YAML", "line 3"]),
        (
            ["validate", "{recipe}", "--set", "seed.deep=1"],
            ["--set 'seed.deep=1'", "not a mapping"],
        ),
        (["validate", "{recipe}", "-s", "finetune.train.epochs=-1"], ["finetune.train.epochs"]),
        (["validate", "{absent}"], ["Recipe file not found"]),
        (["run", "{recipe}", "--out", "{x}", "--resume", "{y}"], ["either --out", "--resume"]),
        (["run", "{recipe}", "--resume", "{y}"], ["Cannot resume", "no recipe.yaml"]),
    ],
)
def test_in_process_user_errors(
    tmp_path: Path,
    tiny_recipe: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    fragments: list[str],
) -> None:
    misspelt = {
        **tiny_recipe,
        "pretrain": {
            **tiny_recipe["pretrain"],
            "objective": {"kind": "clue", "predictor_hiden": 3},
        },
    }
    (tmp_path / "y").mkdir()
    (tmp_path / "broken.yaml").write_text("seed: 0\ndata: [1, 2\nbackbone: {}\n")
    names = {
        "recipe": dump(tmp_path / "tiny.yaml", tiny_recipe),
        "misspelt": dump(tmp_path / "misspelt.yaml", misspelt),
        "broken": tmp_path / "broken.yaml",
        "absent": tmp_path / "absent.yaml",
        "x": tmp_path / "x",
        "y": tmp_path / "y",
    }
    code, out, err = main_exit([a.format(**names) for a in argv], capsys)
    assert code == 2
    assert err.startswith("error:")
    flat = " ".join(err.split())
    for fragment in fragments:
        assert fragment in flat, err
    assert not (tmp_path / "x").exists()


def test_usage_errors_are_not_clue_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = main_exit(["run"], capsys)  # a usage error: no recipe and no --resume
    assert code == 2
    flat = " ".join(err.split())
    assert "RECIPE" in flat and "--resume RUN_DIR" in flat
    code, _, _ = main_exit(["frobnicate"], capsys)
    assert code == 2


def test_validate_prints_resolved_recipe(
    tmp_path: Path, tiny_recipe: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = dump(tmp_path / "tiny.yaml", tiny_recipe)
    code, out, err = main_exit(["validate", str(recipe), "--set", "backbone.dim=32"], capsys)
    assert code == 0
    assert "is valid" in " ".join(err.split())
    resolved = yaml.safe_load(out)
    assert resolved["name"] == "tiny"
    assert resolved["backbone"]["dim"] == 32  # --set applied
    assert resolved["finetune"]["patience"] == 5
    assert [view["kind"] for view in resolved["pretrain"]["views"]] == ["dropout"]
    assert resolved["finetune"]["eval"] == {"batch_size": 1024}  # defaults filled in


def test_list_shows_every_family(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = main_exit(["list"], capsys)
    assert code == 0
    for family, kind in [
        ("backbone", "transformer"),
        ("augmentation", "dropout"),
        ("objective", "clue"),
        ("head", "next_item"),
    ]:
        lines = [line for line in out.splitlines() if f" {kind} " in line]
        assert lines and family in lines[0], (family, kind, out)
    assert "built-in" in out


def test_resume_of_a_finished_run_keeps_metrics(
    cli: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir: Path = cli["run_dir"]
    before = (run_dir / "metrics.json").read_bytes()
    code, out, err = main_exit(["run", str(cli["recipe"]), "--resume", str(run_dir)], capsys)
    assert code == 0
    assert "nothing to resume" in err
    assert out.strip() == str(run_dir)
    assert (run_dir / "metrics.json").read_bytes() == before


def test_resume_without_the_recipe_uses_the_runs_own(
    cli: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_dir: Path = cli["run_dir"]
    before = (run_dir / "metrics.json").read_bytes()
    code, out, err = main_exit(["run", "--resume", str(run_dir)], capsys)
    assert code == 0, err
    assert "nothing to resume" in err and out.strip() == str(run_dir)
    assert (run_dir / "metrics.json").read_bytes() == before
    code, _, err = main_exit(["run", "--resume", str(run_dir), "--set", "seed=3"], capsys)
    assert code == 2 and "differs" in err and "seed" in err  # overrides must still match
    code, _, err = main_exit(["run", "--resume", str(tmp_path)], capsys)
    flat = " ".join(err.split())
    assert code == 2 and "holds no recipe.yaml" in flat and "clue run RECIPE --resume" in flat


# --------------------------------------------------------------------------- literal output


@pytest.mark.parametrize(
    "name",
    ["ratings:x:v2.txt", "[bold]x[/bold].txt", "a:smile:b[/].txt", "[red]:warning:[/red]"],
)
def test_messages_are_printed_literally(
    tmp_path: Path, tiny_recipe: dict[str, Any], capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """No console markup and no emoji codes: a path prints exactly as it is spelt."""
    data = {**tiny_recipe, "data": {"format": "sequences", "path": str(tmp_path / name)}}
    code, out, err = main_exit(["run", str(dump(tmp_path / "r.yaml", data))], capsys)
    assert code == 2 and out == ""
    assert str(tmp_path / name) in "".join(err.split()), err
    assert "\u274c" not in err and "\U0001f604" not in err and "\u26a0" not in err


def test_validate_and_list_print_literally(
    tmp_path: Path, tiny_recipe: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from types import SimpleNamespace

    from clue_fw.registry import build_registry, reset_registry

    folder = tmp_path / "[bold]:x:"
    folder.mkdir()
    recipe = dump(folder / "tiny.yaml", {**tiny_recipe, "name": "run :x: [b]"})
    code, out, err = main_exit(["validate", str(recipe)], capsys)
    assert code == 0
    assert "".join(f"{recipe} is valid.".split()) in "".join(err.split())
    assert yaml.safe_load(out)["name"] == "run :x: [b]"

    class Spec(BackboneSpec):
        """A [bold]loud[/bold] :x: description."""

        kind: Literal["loud"] = "loud"

        def build(self, context: BuildContext) -> SequenceEncoder:
            raise NotImplementedError

    plugin = SimpleNamespace(clue_register_backbones=hookimpl(lambda: [Spec]))
    reset_registry(build_registry(extra_plugins=[(plugin, "[red]evil[/red] :x: 1.0")]))
    code, out, _ = main_exit(["list"], capsys)
    assert code == 0
    assert "[red]evil[/red] :x: 1.0" in out
    assert "A [bold]loud[/bold] :x: description." in out


@pytest.mark.parametrize("flag", ["--out", "--resume"])
def test_an_empty_run_directory_flag_is_refused_and_nothing_is_deleted(
    tmp_path: Path,
    tiny_recipe: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
) -> None:
    """`--out "$UNSET" --overwrite` must not mean the current directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.txt").write_text("keep me")
    recipe = dump(tmp_path / "recipe.yaml", tiny_recipe)
    argv = ["run", str(recipe), flag, ""] + (["--overwrite"] if flag == "--out" else [])
    code, _, err = main_exit(argv, capsys)
    assert code == 2
    assert f"{flag} is empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml", "thesis.txt"]


def test_torchrun_processes_leave_through_their_exit_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clue_fw import cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert cli._data_parallel_process()  # torchrun, or a launcher that sets the same
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not cli._data_parallel_process()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK")
    assert not cli._data_parallel_process()
    assert [cli._exit_status(c) for c in (None, 0, 2, 143, 256 + 2)] == [0, 0, 2, 143, 2]
