"""The owner of a run directory: one run at a time, refused with the holder's PID."""

from __future__ import annotations

import copy
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from clue_fw.errors import RecipeError, RunDirectoryError
from clue_fw.runner import run
from clue_fw.running.lock import LOCK_FILE, DirectoryLock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="runs are not locked on Windows")

HOLDER = """
import sys
from pathlib import Path
from clue_fw.running.lock import DirectoryLock
lock = DirectoryLock(Path(sys.argv[1]))
lock.acquire()
lock.claim()
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes our stdin (or kills us)
lock.release()
"""


def quiet() -> Console:
    return Console(file=io.StringIO())


@contextmanager
def held_by_another_process(run_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """A second process that holds the lock of ``run_dir`` while the block runs."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "locked\n"
        yield process
    finally:
        if process.poll() is None:
            process.communicate(input="", timeout=30)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from clue_fw.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0), " ".join(capsys.readouterr().err.split())


@pytest.fixture
def short(tiny_recipe: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(tiny_recipe)
    data["pretrain"] = None
    data["finetune"]["train"]["epochs"] = 1
    return data


@pytest.fixture
def finished(tmp_path: Path, short: dict[str, Any]) -> Path:
    return run(short, out=tmp_path / "run", console=quiet()).run_dir


@pytest.mark.parametrize(
    "flags",
    [["--out", "{dir}"], ["--out", "{dir}", "--overwrite"], ["--resume", "{dir}"]],
    ids=["out", "overwrite", "resume"],
)
def test_a_locked_directory_is_refused_naming_the_holder(
    tmp_path: Path,
    finished: Path,
    short: dict[str, Any],
    write_recipe: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
) -> None:
    (finished / "metrics.json").unlink()  # an interrupted run: --resume would continue it
    recipe = write_recipe(short)
    before = snapshot(finished)
    with held_by_another_process(finished) as holder:
        argv = ["run", str(recipe), *(f.format(dir=finished) for f in flags)]
        code, err = cli(argv, capsys)
        assert code == 2, err
        assert f"is in use by another clue_fw run (PID {holder.pid})" in err
        assert str(finished / LOCK_FILE) in err and "Traceback" not in err
        assert (finished / "finetune").is_dir()  # --overwrite deleted nothing
    assert snapshot(finished) == before  # the holder emptied .lock again; nothing else changed


def test_two_open_file_descriptions_in_one_process_conflict(tmp_path: Path) -> None:
    first, second = DirectoryLock(tmp_path), DirectoryLock(tmp_path)
    first.acquire()
    first.claim()
    with pytest.raises(RunDirectoryError, match=rf"another clue_fw run \(PID {os.getpid()}\)"):
        second.acquire()
    first.release()
    assert (tmp_path / LOCK_FILE).read_bytes() == b""  # emptied on release
    second.acquire()  # free again
    second.release()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    with held_by_another_process(tmp_path) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    lock = DirectoryLock(tmp_path)
    lock.acquire()  # the kernel dropped the dead holder's lock
    lock.claim()
    assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    lock.release()


def test_the_lock_is_released_when_run_returns_or_raises(
    tmp_path: Path, short: dict[str, Any]
) -> None:
    run_dir = run(short, out=tmp_path / "ok", console=quiet()).run_dir
    failing = copy.deepcopy(short)
    failing["finetune"]["monitor"] = "auc"  # fails after the run directory exists
    with pytest.raises(RecipeError, match="finetune.monitor"):
        run(failing, out=tmp_path / "failed", console=quiet())
    for folder in (run_dir, tmp_path / "failed"):
        assert (folder / LOCK_FILE).read_bytes() == b""
        lock = DirectoryLock(folder)
        lock.acquire()
        lock.release()


def test_a_second_run_cannot_write_a_running_runs_directory(
    tmp_path: Path,
    short: dict[str, Any],
    write_recipe: Callable[..., Path],
    clue_spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    """A real `clue run` owns its directory: an in-process run with another seed that
    targets it (--out --overwrite) is refused, and the first run finishes unharmed."""
    slow = copy.deepcopy(short)
    slow["finetune"]["train"]["epochs"] = 40
    slow["finetune"]["patience"] = 40
    run_dir = tmp_path / "run"
    first = clue_spawn("run", write_recipe(slow, "slow.yaml"), "--out", run_dir)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "finetune" / "last.safetensors").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never started training"
            time.sleep(0.02)
        other = copy.deepcopy(slow)
        other["seed"] = 7
        with pytest.raises(RunDirectoryError, match=rf"\(PID {first.pid}\)"):
            run(other, out=run_dir, overwrite=True, console=quiet())
        with pytest.raises(RunDirectoryError, match=rf"\(PID {first.pid}\)"):
            run(slow, resume=run_dir, console=quiet())
        _, stderr = first.communicate(timeout=300)
        assert first.returncode == 0, stderr
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["seed"] == slow["seed"]
    assert (run_dir / "metrics.json").is_file()


def test_a_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).symlink_to(target)
    with pytest.raises(RunDirectoryError, match="is a symbolic link"):
        DirectoryLock(run_dir).acquire()
    assert target.read_text() == "keep me"


def test_out_and_resume_together_are_refused_by_the_library(
    tmp_path: Path, short: dict[str, Any]
) -> None:
    with pytest.raises(RunDirectoryError, match=r"either --out .* or --resume .*not both"):
        run(short, out=tmp_path / "a", resume=tmp_path / "b", console=quiet())
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_resume_with_overwrite_is_refused(finished: Path, short: dict[str, Any]) -> None:
    (finished / "metrics.json").unlink()
    before = snapshot(finished)
    with pytest.raises(RunDirectoryError, match="cannot be combined with --resume"):
        run(short, resume=finished, overwrite=True, console=quiet())
    assert snapshot(finished) == before
