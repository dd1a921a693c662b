"""Helpers of the run-directory cases (issue 9, part 2) of the bad-input corpus.

Setups get the case directory; damages get ``run/`` (a copy of a finished tiny run
without ``metrics.json``). A setup may return a clean-up function, which the harness
calls when the case ends (``hold_lock`` releases its lock there).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEEP_JSON = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError


def hold_lock(relative: str, *files: str) -> Callable[[Path], Callable[[], None]]:
    """A setup: another owner (a second open file description, as a second process would
    have) holds the lock of ``case_dir/relative``, which also holds ``files``."""

    def setup(case_dir: Path) -> Callable[[], None]:
        from clue_fw.running.lock import DirectoryLock

        folder = case_dir / relative
        folder.mkdir(exist_ok=True)
        for name in files:
            (folder / name).write_text("precious")
        lock = DirectoryLock(folder)
        lock.acquire()
        lock.claim()
        return lock.release

    return setup


def file_at(relative: str) -> Callable[[Path], None]:
    """A setup: ``case_dir/relative`` is a regular file (replacing a directory there)."""

    def setup(case_dir: Path) -> None:
        path = case_dir / relative
        if path.is_dir():
            shutil.rmtree(path)
        path.write_text("a file, not a directory")

    return setup


def directory_at(relative: str) -> Callable[[Path], None]:
    """A damage: ``run/relative`` is a directory instead of a file."""

    def damage(run_dir: Path) -> None:
        path = run_dir / relative
        path.unlink(missing_ok=True)
        path.mkdir()

    return damage


def edit_text(relative: str, change: Callable[[str], str]) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        path = run_dir / relative
        path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")

    return damage


def write_metrics(payload: bytes | Callable[[Path], bytes]) -> Callable[[Path], None]:
    """A damage: ``run/metrics.json`` holds ``payload`` (a resume then reads it)."""

    def damage(run_dir: Path) -> None:
        data = payload(run_dir) if callable(payload) else payload
        (run_dir / "metrics.json").write_bytes(data)

    return damage


def foreign_metrics(run_dir: Path) -> bytes:
    """A complete metrics.json, but another run's (another run id)."""
    identity = json.loads(_metadata_text(run_dir / "finetune" / "last.safetensors"))["run"]
    other = {**identity, "run_id": uuid.uuid4().hex}
    return json.dumps({"valid": {}, "test": {}, "run": other}).encode()


def _metadata_text(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return str((handle.metadata() or {})["clue_fw"])


def edit_metadata(
    relative: str, change: Callable[[dict[str, Any]], Any], raw: str | None = None
) -> Callable[[Path], None]:
    """A damage: re-save ``run/relative`` with its clue_fw metadata changed in place by
    ``change`` (or replaced by the text ``raw``); the tensors stay as they were."""

    def damage(run_dir: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import save_file

        path = run_dir / relative
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            meta = json.loads((handle.metadata() or {})["clue_fw"])
        if raw is None:
            change(meta)
        save_file(tensors, str(path), metadata={"clue_fw": raw or json.dumps(meta)})

    return damage


def another_run_id(meta: dict[str, Any]) -> None:
    meta["run"]["run_id"] = uuid.uuid4().hex


def drop_key(*keys: str) -> Callable[[dict[str, Any]], None]:
    def change(meta: dict[str, Any]) -> None:
        node = meta
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return change


def set_key(value: Any, *keys: str) -> Callable[[dict[str, Any]], None]:
    def change(meta: dict[str, Any]) -> None:
        node = meta
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def without_finetune(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    """Fine-tuning had not started: the damaged pre-training file is read next."""

    def both(run_dir: Path) -> None:
        shutil.rmtree(run_dir / "finetune")
        damage(run_dir)

    return both


def run_with_out_and_resume(case_dir: Path) -> object:
    from clue_fw.recipe import load_recipe
    from clue_fw.runner import run

    recipe = load_recipe(case_dir / "recipe.yaml")
    return run(recipe, out=case_dir / "out", resume=case_dir / "run")


def disk_full(case_dir: Path) -> Callable[[], None]:
    """A setup: every checkpoint write fails as on a full disk (ENOSPC) until the case ends."""
    import errno

    import clue_fw.training.checkpoint as checkpoint

    real = checkpoint.save_file

    def full(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"\0" * 64)  # a partial write, then no space is left
        raise OSError(errno.ENOSPC, "No space left on device")

    checkpoint.save_file = full  # type: ignore[assignment]

    def restore() -> None:
        checkpoint.save_file = real  # type: ignore[assignment]

    return restore


def read_only(relative: str) -> Callable[[Path], Callable[[], None]]:
    """A setup: ``case_dir/relative`` is an empty directory on a read-only file system
    (EROFS, emulated: root ignores permission bits) until the case ends."""

    def setup(case_dir: Path) -> Callable[[], None]:
        import errno
        import os

        folder = case_dir / relative
        folder.mkdir()
        real = os.open

        def guarded(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writes and str(path).startswith(str(folder)):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real(path, flags, *args, **kwargs)

        os.open = guarded

        def restore() -> None:
            os.open = real

        return restore

    return setup


def fifo_lock(case_dir: Path) -> None:
    """A setup: ``out/`` holds a named pipe as its ``.lock`` (a lock file must be regular)."""
    import os

    (case_dir / "out").mkdir()
    os.mkfifo(case_dir / "out" / ".lock")


def copy_file(source: str, target: str) -> Callable[[Path], None]:
    """A damage: ``run/target`` becomes a copy of the same run's ``run/source``."""

    def damage(run_dir: Path) -> None:
        shutil.copyfile(run_dir / source, run_dir / target)

    return damage


def run_with_out(name: str) -> Callable[[Path], object]:
    """An api call: run the case's recipe with ``--out case_dir/name`` (a path with a
    component too long for the file system, say)."""

    def call(case_dir: Path) -> object:
        from clue_fw.recipe import load_recipe
        from clue_fw.runner import run

        return run(load_recipe(case_dir / "recipe.yaml"), out=case_dir / name)

    return call


def resume_at(name: str) -> Callable[[Path], object]:
    """An api call: ``--resume case_dir/name``."""

    def call(case_dir: Path) -> object:
        from clue_fw.recipe import load_recipe
        from clue_fw.runner import run

        return run(load_recipe(case_dir / "recipe.yaml"), resume=case_dir / name)

    return call


def to_int32(key: str) -> Callable[[dict[str, Any]], None]:
    """A tensor change (for ``rewrite_tensors``): ``key`` stored as int32."""

    def change(tensors: dict[str, Any]) -> None:
        import torch

        tensors[key] = tensors[key].to(torch.int32)

    return change


def init_from_long_path(data: dict[str, Any]) -> None:
    """A recipe edit: no pre-training, ``finetune.init_from`` with a 300-byte component."""
    data["pretrain"] = None
    data["finetune"]["init_from"] = "x" * 300
