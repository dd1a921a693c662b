"""Operating-system errors on the output side: a RunDirectoryError that names the path and
the reason, never a traceback, and a run that stays resumable (a full disk included)."""

from __future__ import annotations

import copy
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import clue_command, clue_env
from rich.console import Console

import clue_fw.running.run_directory as run_directory
import clue_fw.training.checkpoint as checkpoint
from clue_fw.errors import RunDirectoryError
from clue_fw.runner import run
from clue_fw.training.checkpoint import load_checkpoint


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.fixture
def short(tiny_recipe: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(tiny_recipe)
    data["finetune"]["train"]["epochs"] = 3
    data["finetune"]["patience"] = 5
    return data


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from clue_fw.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0), " ".join(capsys.readouterr().err.split())


def test_out_is_a_regular_file(
    tmp_path: Path,
    short: dict[str, Any],
    write_recipe: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    out.write_text("not a directory")
    code, err = cli(["run", str(write_recipe(short)), "--out", str(out)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"Output directory {out} is a file, not a directory" in err
    assert out.read_text() == "not a directory"
    code, err = cli(["run", str(write_recipe(short)), "--resume", str(out)], capsys)
    assert code == 2 and f"Cannot resume: {out} is a file, not a run directory" in err


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root writes to read-only directories"
)
def test_out_in_a_read_only_directory(tmp_path: Path, short: dict[str, Any]) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(RunDirectoryError, match=r"Cannot create the run directory .*denied"):
            run(short, out=parent / "run", console=quiet())
        (tmp_path / "ro-run").mkdir()
        (tmp_path / "ro-run").chmod(0o555)
        with pytest.raises(RunDirectoryError, match=r"Cannot create the lock file .*denied"):
            run(short, out=tmp_path / "ro-run", console=quiet())
    finally:
        parent.chmod(0o755)
        (tmp_path / "ro-run").chmod(0o755)


def test_a_read_only_file_system(
    tmp_path: Path, short: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """EROFS emulated below the target (root ignores permission bits)."""
    target = tmp_path / "ro"
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(target)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    target.mkdir()
    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(RunDirectoryError) as info:
        run(short, out=target, console=quiet())
    message = str(info.value)
    assert f"Cannot create the lock file {target / '.lock'}: Read-only file system (EROFS)" in (
        message
    )
    assert list(target.iterdir()) == []


def test_a_full_disk_in_a_real_process_then_resume(
    tmp_path: Path, short: dict[str, Any], write_recipe: Callable[..., Path]
) -> None:
    """``ulimit -f``: Python ignores SIGXFSZ, so the first checkpoint's write fails with
    EFBIG. The run stops with a clear message; after "freeing space" it resumes."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash for ulimit")
    recipe, run_dir = write_recipe(short), tmp_path / "run"
    command = " ".join(f"'{part}'" for part in clue_command("run", recipe, "--out", run_dir))
    limited = subprocess.run(
        ["bash", "-c", f"ulimit -f 24 && exec {command}"],  # 24 KiB: recipe.yaml and run.log fit
        env=clue_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = " ".join(limited.stderr.split())
    assert limited.returncode == 2, limited.stderr
    assert "Traceback" not in limited.stderr
    assert f"Cannot write {run_dir / 'pretrain' / 'last.safetensors'}: File too large" in err
    assert f"--resume {run_dir}" in err
    assert not (run_dir / "metrics.json").exists() and not list(run_dir.rglob("*.tmp"))
    resumed = subprocess.run(
        clue_command("run", recipe, "--resume", run_dir),
        env=clue_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "metrics.json").is_file()


def test_no_space_mid_run_keeps_the_last_checkpoint_and_resumes_exactly(
    tmp_path: Path, short: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = run(short, out=tmp_path / "reference", console=quiet()).metrics
    run_dir = tmp_path / "run"
    real_save = checkpoint.save_file
    finetune_lasts: list[str] = []

    def fill_the_disk(tensors: Any, filename: str, metadata: Any = None) -> None:
        if Path(filename).parent.name == "finetune" and Path(filename).name.startswith(".last."):
            finetune_lasts.append(filename)  # epochs 0, 1, 2, ...
        if len(finetune_lasts) == 3:
            Path(filename).write_bytes(b"\0" * 100)  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", fill_the_disk)
    last = run_dir / "finetune" / "last.safetensors"
    with pytest.raises(RunDirectoryError) as info:
        run(short, out=run_dir, console=quiet())
    message = str(info.value)
    assert f"Cannot write {last}: No space left on device (ENOSPC)" in message
    assert "Free disk space" in message and f"--resume {run_dir}" in message
    _, meta = load_checkpoint(last)  # the previous epoch's checkpoint, intact
    assert meta["epoch"] >= 1 and not meta["finished"]
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / "metrics.json").exists()
    monkeypatch.setattr(checkpoint, "save_file", real_save)  # space freed
    resumed = run(short, resume=run_dir, console=quiet()).metrics
    for key in ("valid", "test", "best_epoch", "epochs"):
        assert resumed[key] == reference[key], key


def test_no_space_for_metrics_json_leaves_no_metrics_and_resumes(
    tmp_path: Path, short: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(path: Path, value: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_directory, "atomic_write_json", full)
    with pytest.raises(RunDirectoryError, match=r"metrics.json: No space left on device"):
        run(short, out=tmp_path / "run", console=quiet())
    assert not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.undo()
    result = run(short, resume=tmp_path / "run", console=quiet())
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == result.metrics


def test_an_unwritable_run_log_is_a_run_directory_error(
    tmp_path: Path, short: dict[str, Any]
) -> None:
    run_dir = run(short, out=tmp_path / "run", console=quiet()).run_dir
    (run_dir / "metrics.json").unlink()
    (run_dir / "run.log").unlink()
    (run_dir / "run.log").mkdir()  # appending to it fails with EISDIR
    with pytest.raises(RunDirectoryError, match=r"Cannot write .*run.log: Is a directory"):
        run(short, resume=run_dir, console=quiet())
    assert not (run_dir / "metrics.json").exists()
