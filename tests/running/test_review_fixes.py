"""Run-directory defects found in review: each test fails without its fix."""

from __future__ import annotations

import copy
import io
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

from clue_fw.components import TaskData
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.errors import CheckpointError, RecipeError, RunDirectoryError
from clue_fw.runner import run
from clue_fw.running.identity import RunIdentity, recipe_sha256
from clue_fw.running.lock import LOCK_FILE, DirectoryLock
from clue_fw.running.run_directory import RunDirectory

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="runs are not locked on Windows")


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.fixture
def short(tiny_recipe: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(tiny_recipe)
    data["pretrain"] = None
    data["finetune"]["train"]["epochs"] = 1
    return data


# ------------------------------------------------------------------ 1: --out "" --overwrite


@pytest.mark.parametrize("flag", ["out", "resume"])
def test_an_empty_path_is_refused(
    tmp_path: Path, short: dict[str, Any], monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "precious.txt").write_text("keep")
    kwargs: dict[str, Any] = {flag: ""}
    with pytest.raises(RunDirectoryError, match=f"--{flag} is empty"):
        run(short, overwrite=flag == "out", console=quiet(), **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_overwrite_refuses_a_directory_that_is_not_a_run(
    tmp_path: Path, short: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "precious.txt").write_text("keep")
    with pytest.raises(RunDirectoryError, match="is not a clue_fw run directory; --overwrite"):
        run(short, out=Path(""), overwrite=True, console=quiet())  # Path("") is "."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


# ------------------------------------------------------------------ 2: live nested runs


def test_overwrite_refuses_a_parent_of_a_live_run(tmp_path: Path, short: dict[str, Any]) -> None:
    parent = tmp_path / "par"
    (parent / "sub").mkdir(parents=True)
    # an old run (its recipe.yaml starts with an identity line): the nested lock decides
    (parent / "recipe.yaml").write_text(f"{RunIdentity.new({}).header()}\nseed: 0\n")
    other = DirectoryLock(parent / "sub")
    other.acquire()  # another open file description, as another process would hold
    try:
        with pytest.raises(RunDirectoryError, match="a clue_fw run is going in"):
            run(short, out=parent, overwrite=True, console=quiet())
    finally:
        other.release()
    assert (parent / "sub" / LOCK_FILE).exists() and (parent / "recipe.yaml").exists()


def test_a_run_whose_directory_was_replaced_writes_nothing_more(
    tmp_path: Path, short: dict[str, Any]
) -> None:
    from clue_fw.recipe import validate_recipe

    recipe = validate_recipe(short)
    path = tmp_path / "run"
    directory = RunDirectory.open(recipe, out=path)
    try:
        os.rename(path, tmp_path / "moved")
        path.mkdir()  # someone else's directory now
        with pytest.raises(RunDirectoryError, match="removed or replaced by someone else"):
            directory.write_metrics({"valid": {}})
        assert list(path.iterdir()) == []
        import shutil

        shutil.rmtree(path)
        with pytest.raises(RunDirectoryError, match="removed or replaced"):
            directory.save_checkpoint(path / "finetune" / "last.safetensors", {}, {})
        assert not path.exists()  # not silently re-created
    finally:
        directory.close()


# ------------------------------------------------------------------ 3: data fingerprint


def _task(values: list[int]) -> TaskData:
    csr = Csr(torch.tensor([0, len(values)]), torch.tensor(values))
    return TaskData(SequenceData(csr, 3, np.array([7]), np.array([10, 11, 12])))


def test_fingerprint_covers_every_tensor_and_array() -> None:
    base = _task([1, 2, 3]).fingerprint()
    assert base == _task([1, 2, 3]).fingerprint()
    assert base != _task([1, 3, 2]).fingerprint()
    other_ids = TaskData(
        SequenceData(_task([1, 2, 3]).sequences.sequences, 3, np.array([8]), np.array([10, 11, 12]))
    )
    assert base != other_ids.fingerprint()


def test_resume_refuses_changed_data(tmp_path: Path, short: dict[str, Any]) -> None:
    data_file = tmp_path / "seq.txt"
    lines = [f"{u} " + " ".join(str(1 + (u + i) % 9) for i in range(6)) for u in range(30)]
    data_file.write_text("\n".join(lines) + "\n")
    recipe = copy.deepcopy(short)
    recipe["data"] = {"format": "sequences", "path": str(data_file), "max_len": 8}
    run_dir = run(recipe, out=tmp_path / "run", console=quiet()).run_dir
    assert ", data sha256 " in (run_dir / "recipe.yaml").read_text().split("\n", 1)[0]
    (run_dir / "metrics.json").unlink()
    data_file.write_text("\n".join(lines[:-1]) + "\n")  # one user fewer
    with pytest.raises(RunDirectoryError, match=r"the data differs .*30 users.*29 users"):
        run(recipe, resume=run_dir, console=quiet())


def test_an_older_two_field_header_cannot_be_resumed(tmp_path: Path, short: dict[str, Any]) -> None:
    run_dir = run(short, out=tmp_path / "run", console=quiet()).run_dir
    (run_dir / "metrics.json").unlink()
    text = (run_dir / "recipe.yaml").read_text()
    first, rest = text.split("\n", 1)
    old = RunIdentity.from_header(first)
    assert old is not None and old.data is not None
    (run_dir / "recipe.yaml").write_text(
        RunIdentity(old.run_id, old.recipe_sha256).header() + "\n" + rest
    )
    with pytest.raises(RunDirectoryError, match="did not record a fingerprint of the data"):
        run(short, resume=run_dir, console=quiet())


def test_recipe_sha256_of_a_surrogate() -> None:
    assert len(recipe_sha256({"name": "\udc80"})) == 64


# ------------------------------------------------------------------ 4: checkpoint roles


def test_best_replaced_by_an_older_best_is_refused(tmp_path: Path, short: dict[str, Any]) -> None:
    """A best.safetensors of another epoch of the same run is not the recorded best."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    run_dir = run(short, out=tmp_path / "run", console=quiet()).run_dir
    (run_dir / "metrics.json").unlink()
    best = run_dir / "finetune" / "best.safetensors"
    with safe_open(str(best), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        meta = json.loads((handle.metadata() or {})["clue_fw"])
    meta["epoch"] = 7
    save_file(tensors, str(best), metadata={"clue_fw": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="holds the weights of epoch 7"):
        run(short, resume=run_dir, console=quiet())


# ------------------------------------------------------------------ 6, 7: paths


def test_init_from_a_fifo_is_not_a_regular_file(tmp_path: Path, short: dict[str, Any]) -> None:
    fifo = tmp_path / "encoder.safetensors"
    os.mkfifo(fifo)
    recipe = copy.deepcopy(short)
    recipe["finetune"]["init_from"] = str(fifo)
    with pytest.raises(CheckpointError, match=r"is not a regular file \(it is a named pipe\)"):
        run(recipe, out=tmp_path / "run", console=quiet())


def test_init_from_too_long_is_a_recipe_error(tmp_path: Path, short: dict[str, Any]) -> None:
    recipe = copy.deepcopy(short)
    recipe["finetune"]["init_from"] = str(tmp_path / ("x" * 300))
    with pytest.raises(RecipeError, match="File name too long"):
        run(recipe, out=tmp_path / "run", console=quiet())


def test_metrics_fifo_is_named(tmp_path: Path, short: dict[str, Any]) -> None:
    run_dir = run(short, out=tmp_path / "run", console=quiet()).run_dir
    (run_dir / "metrics.json").unlink()
    os.mkfifo(run_dir / "metrics.json")
    with pytest.raises(RunDirectoryError, match=r"not a regular file \(it is a named pipe\)"):
        run(short, resume=run_dir, console=quiet())


def test_a_run_refused_in_start_leaves_no_lock_behind(
    tmp_path: Path, short: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from clue_fw.running import run_directory

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_directory, "atomic_write_bytes", refuse)
    with pytest.raises(RunDirectoryError):
        run(short, out=tmp_path / "new" / "run", console=quiet())
    assert not (tmp_path / "new" / "run").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirectoryError):
        run(short, out=tmp_path / "empty", console=quiet())
    assert list((tmp_path / "empty").iterdir()) == []
