"""clue_fw.analysis.tensorboard, `clue tensorboard` and `clue run --tensorboard`: the event
files hold exactly the numbers of the run's history.csv files and metrics.json."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_main import main_exit
from rich.console import Console

from clue_fw import run
from clue_fw.analysis.history_csv import read_history

pytest.importorskip("tensorboard")


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files under ``log_dir``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[tuple[int, float]]] = {}
    for events in sorted({path.parent for path in log_dir.rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found.setdefault(tag, []).extend(
                (event.step, event.value) for event in accumulator.Scalars(tag)
            )
    return found


@pytest.fixture(scope="module")
def finished(
    tmp_path_factory: pytest.TempPathFactory, make_tiny_recipe: Callable[[], dict[str, Any]]
) -> Path:
    recipe = make_tiny_recipe()
    recipe["finetune"]["train"]["epochs"] = 2
    root = tmp_path_factory.mktemp("tb")
    return run(recipe, out=root / "run", console=Console(file=io.StringIO())).run_dir


def expected(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """What the run's own files say, as tag -> [(step, value)]."""
    want: dict[str, list[tuple[int, float]]] = {}
    for stage in ("pretrain", "finetune"):
        for row in read_history(run_dir / stage / "history.csv"):
            for column, value in row.items():
                if column != "epoch" and isinstance(value, float):
                    want.setdefault(f"{stage}/{column}", []).append((int(row["epoch"]), value))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("valid", "test"):
        for name, value in metrics[split].items():
            want[f"final/{split}/{name}"] = [(0, float(value))]
    return want


def test_clue_tensorboard_writes_every_history_column_and_the_final_metrics(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tb"
    code, stdout, stderr = main_exit(["tensorboard", str(finished), "--out", str(out)], capsys)
    assert code == 0, stderr
    assert stdout.strip() == str(out)
    found, want = scalars(out), expected(finished)
    assert set(found) == set(want)
    assert {"pretrain/loss", "pretrain/rep_erank", "pretrain/lr", "final/test/ndcg@10"} <= set(
        found
    )
    assert any(tag.startswith("finetune/valid ") for tag in found)
    for tag, values in want.items():
        assert [step for step, _ in found[tag]] == [step for step, _ in values], tag
        assert [v for _, v in found[tag]] == pytest.approx([v for _, v in values], rel=1e-6)


def test_a_sync_writes_each_epoch_once_and_new_epochs_as_they_come(
    finished: Path, tmp_path: Path
) -> None:
    from clue_fw.analysis.tensorboard import TensorBoardExport

    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "recipe.yaml").write_text((finished / "recipe.yaml").read_text())
    history = (finished / "finetune" / "history.csv").read_text().splitlines()
    (copy / "finetune").mkdir()
    (copy / "finetune" / "history.csv").write_text("\n".join(history[:3]) + "\n")  # 0, 1
    export = TensorBoardExport(copy, tmp_path / "log")
    assert export.sync() > 0 and export.sync() == 0  # nothing new: nothing written
    (copy / "finetune" / "history.csv").write_text("\n".join(history) + "\n")  # 0, 1, 2
    last = read_history(copy / "finetune" / "history.csv")[-1]
    numbers = sum(isinstance(v, float) for k, v in last.items() if k != "epoch")
    assert last["epoch"] == 2.0 and export.sync() == numbers  # epoch 2 alone
    export.close()
    valid = next(tag for tag in scalars(tmp_path / "log") if tag.startswith("finetune/valid "))
    assert [step for step, _ in scalars(tmp_path / "log")[valid]] == [0, 1, 2]


def test_clue_run_tensorboard_follows_the_run(
    make_tiny_recipe: Callable[[], dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import yaml

    recipe = make_tiny_recipe()
    recipe["finetune"]["train"]["epochs"] = 2
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    code, _, stderr = main_exit(["run", str(path), "--out", str(out), "--tensorboard"], capsys)
    assert code == 0, stderr
    found = scalars(out / "tensorboard")
    assert set(found) == set(expected(out))  # the last epoch and the final metrics too


def test_missing_package_and_bad_runs_exit_2(
    finished: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, stderr = main_exit(["tensorboard", str(tmp_path)], capsys)
    assert code == 2 and "has no recipe.yaml" in " ".join(stderr.split())
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    code, _, stderr = main_exit(["tensorboard", str(finished)], capsys)
    assert code == 2 and "pip install 'clue_fw[tensorboard]'" in " ".join(stderr.split())
    code, _, stderr = main_exit(["run", "recipes/quickstart.yaml", "--tensorboard"], capsys)
    assert code == 2 and "pip install 'clue_fw[tensorboard]'" in " ".join(stderr.split())
    assert not list(tmp_path.iterdir())
