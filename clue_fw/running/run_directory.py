"""The run directory: its paths, its owner and its identity.

Its layout (every file name and stage path) is :mod:`clue_fw.running.layout`; reading a
finished run is :class:`~clue_fw.running.run_reader.RunReader`, which this writer
extends. What a run may do to a directory it does not own yet (clear it, find stale
temp files) is :mod:`clue_fw.running.replacing`. Names that moved out
(``METRICS_FILE``, ``STAGES``, ``stale_temp_files``...) stay importable from here.

**Owner.** A run holds an exclusive lock on ``.lock`` (:mod:`clue_fw.running.lock`)
from the moment it opens the directory until :func:`clue_fw.run` returns or raises. A
second run that opens the directory (``--out``, ``--overwrite`` or ``--resume``) is
refused with a :class:`RunDirectoryError` naming the holder's PID, before it reads,
writes or deletes anything else.

**Identity.** ``recipe.yaml``'s first line, every checkpoint and ``metrics.json``
carry the run's identity, a random run id plus the recipe's sha256
(:mod:`clue_fw.running.identity`). ``--resume`` checks every file it loads against
the identity in ``recipe.yaml``, so a checkpoint copied in from another run or seed is
refused instead of being scored as this run's.

**Files.** Every file is written to a temp file beside its target, fsynced and renamed
into place (:mod:`clue_fw.training.checkpoint`): a full disk or a kill leaves the
previous file intact, and ``--resume`` removes the temp files a killed writer left. An
operating-system error on the output side (a full disk, a read-only directory) is a
:class:`RunDirectoryError` that names the path and the reason.
"""

from __future__ import annotations

import platform
import secrets
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel
from safetensors import SafetensorError

from clue_fw._version import __version__ as _clue_fw_version
from clue_fw.errors import RecipeError, RunDirectoryError
from clue_fw.file_safety import atomic_write_bytes, atomic_write_json
from clue_fw.recipe import MAX_RECIPE_BYTES, parse_yaml, recipe_to_yaml
from clue_fw.running.identity import (
    RECIPE_FILE,
    DataIdentity,
    RunIdentity,
    diff_keys,
    recipe_sha256,
)
from clue_fw.running.layout import LOG_FILE as LOG_FILE
from clue_fw.running.layout import METRICS_FILE as METRICS_FILE
from clue_fw.running.layout import STAGES as STAGES
from clue_fw.running.lock import LOCK_FILE, DirectoryLock
from clue_fw.running.os_errors import (
    exists,
    is_dir,
    is_symlink,
    kind_of,
    os_reason,
    output_error,
)
from clue_fw.running.replacing import (
    clear,
    list_entries,
    looks_like_a_run,
    no_recipe,
    not_a_run,
    not_empty,
    refuse_live_runs_below,
    remove,
    remove_if_empty,
    replaceable,
    stale_temp_files,
)
from clue_fw.running.run_reader import MAX_METRICS_BYTES as MAX_METRICS_BYTES
from clue_fw.running.run_reader import RunReader, read_run_file
from clue_fw.training.checkpoint import save_checkpoint

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import RecipeLike


def versions() -> dict[str, str]:
    """The versions that wrote a file: clue_fw, torch and Python."""
    return {
        "clue_fw": _clue_fw_version,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def default_run_dir(recipe: RecipeLike) -> Path:
    """``runs/<name>/<time>-<4 random hex digits>``: ``name`` is one path component (the
    recipe checks it); the random part keeps runs started in the same second apart."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    return Path("runs") / (recipe.name or "recipe") / stamp


def _kind(path: Path) -> str:
    if is_symlink(path):
        return "a symbolic link"
    kind = kind_of(path)
    return "a file" if kind == "a regular file" else kind


def _path_argument(value: Path | str | None, flag: str) -> Path | None:
    """``--out``/``--resume`` as a path; an empty one is refused (``Path("")`` is the
    current directory, which ``--overwrite`` would otherwise empty)."""
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        raise RunDirectoryError(
            f"{flag} is empty; give the run directory's path (an empty path would mean the "
            "current directory)."
        )
    return Path(value)


class RunDirectory(RunReader):
    """A run directory opened by this process: locked, with a known identity.

    Open one with :meth:`open` and use it as a context manager; leaving the ``with``
    block releases the lock. ``fresh`` means the run starts from scratch (``recipe.yaml``
    has just been written); ``restarted`` means ``--resume`` found a directory whose run
    was killed before it wrote its first file and started it again in place.
    """

    def __init__(
        self,
        path: Path,
        recipe_json: dict[str, Any],
        identity: RunIdentity,
        lock: DirectoryLock,
        fresh: bool,
        restarted: bool = False,
    ) -> None:
        super().__init__(path, identity)
        self.recipe_json = recipe_json
        self.lock = lock
        self.fresh = fresh
        self.restarted = restarted
        self.writable = True  # False: another process (rank 0) owns the directory

    @classmethod
    def follower(
        cls,
        path: Path,
        recipe_json: dict[str, Any],
        identity: RunIdentity,
        fresh: bool,
        restarted: bool = False,
    ) -> RunDirectory:
        """The run directory as a process other than rank 0 of a data-parallel run knows
        it (:mod:`clue_fw.distributed`): its path and identity, as rank 0 opened it. It
        never locks, reads or writes the directory; calling a method that would is a bug."""
        directory = cls(path, recipe_json, identity, DirectoryLock(path), fresh, restarted)
        directory.writable = False
        return directory

    def finished_metrics(self) -> dict[str, Any] | None:
        self._owner_only("read metrics.json")
        return super().finished_metrics()

    def load_checkpoint(
        self, path: Path, role: str | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        self._owner_only(f"read {path.name}")
        return super().load_checkpoint(path, role)

    def _owner_only(self, what: str) -> None:
        if not self.writable:
            raise RuntimeError(
                f"clue_fw bug: a data-parallel process other than rank 0 tried to {what} in "
                f"{self.path}; only rank 0 touches the run directory."
            )

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        recipe: BaseModel,
        out: Path | str | None = None,
        resume: Path | str | None = None,
        overwrite: bool = False,
        data: DataIdentity | None = None,
    ) -> RunDirectory:
        """Create (``out``, default ``runs/<name>/<time>``), replace (``overwrite``) or
        resume (``resume``) a run directory and lock it. ``data`` identifies the run's
        data (:meth:`~clue_fw.components.TaskData.fingerprint`); ``--resume`` refuses
        data other than the run started with."""
        out = _path_argument(out, "--out")
        resume = _path_argument(resume, "--resume")
        if out is not None and resume is not None:
            raise RunDirectoryError(
                "Use either --out (a new run) or --resume (an existing run), not both."
            )
        if resume is not None and overwrite:
            raise RunDirectoryError(
                "--overwrite replaces the contents of a new run's --out; it cannot be combined "
                "with --resume. Resume the run, or start it again with --out DIR --overwrite."
            )
        recipe_json = recipe.model_dump(mode="json")
        if resume is not None:
            return cls._resume(resume, recipe, recipe_json, data)
        path = out if out is not None else default_run_dir(recipe)
        return cls._create(path, recipe, recipe_json, overwrite, data)

    @classmethod
    def _create(
        cls,
        path: Path,
        recipe: BaseModel,
        recipe_json: dict[str, Any],
        overwrite: bool,
        data: DataIdentity | None,
    ) -> RunDirectory:
        lock = DirectoryLock(path)
        created = False
        if exists(path):
            if not is_dir(path):
                raise RunDirectoryError(
                    f"Output directory {path} is {_kind(path)}, not a directory. Choose "
                    "another --out."
                )
            others = list_entries(path, skip=LOCK_FILE)
            has_lock = exists(path / LOCK_FILE)
            if others and not overwrite and not has_lock:
                raise not_empty(path)  # nothing touched, nothing locked
            if others and overwrite and not has_lock and not replaceable(path):
                raise not_a_run(path)  # nothing touched, nothing locked
            lock.acquire()  # a live run there is refused here, before anything is deleted
            try:
                others = list_entries(path, skip=LOCK_FILE)
                if others and not overwrite:
                    raise not_empty(path)
                if others and not replaceable(path):
                    raise not_a_run(path)
                if others:
                    refuse_live_runs_below(path)
                clear(path, others)
            except BaseException:
                lock.release()
                raise
        else:
            try:
                path.mkdir(parents=True, exist_ok=False)
                created = True
            except OSError as exc:
                raise RunDirectoryError(
                    f"Cannot create the run directory {path}: {os_reason(exc)}. Choose "
                    "another --out."
                ) from None
            try:
                lock.acquire()
            except BaseException:
                remove_if_empty(path)
                raise
        identity = RunIdentity.new(recipe_json, data)
        directory = cls(path, recipe_json, identity, lock, fresh=True)
        directory._start(recipe, remove_directory=created)
        return directory

    @classmethod
    def _resume(
        cls,
        path: Path,
        recipe: BaseModel,
        recipe_json: dict[str, Any],
        data: DataIdentity | None,
    ) -> RunDirectory:
        if exists(path) and not is_dir(path):
            raise RunDirectoryError(
                f"Cannot resume: {path} is {_kind(path)}, not a run directory. Give --resume "
                "the directory a run wrote."
            )
        if not looks_like_a_run(path):  # checked before the lock file is created
            raise no_recipe(path)
        lock = DirectoryLock(path)
        lock.acquire()
        try:
            if not exists(path / RECIPE_FILE):
                if not looks_like_a_run(path):
                    raise no_recipe(path)
                # killed before its first file was complete: start from scratch in place
                remove(stale_temp_files(path), path)
                identity = RunIdentity.new(recipe_json, data)
                directory = cls(path, recipe_json, identity, lock, fresh=True, restarted=True)
                directory._start(recipe)
                return directory
            identity = _stored_identity(path, recipe_json, data)
            lock.claim()
            remove(stale_temp_files(path), path)
        except BaseException:
            lock.release()
            raise
        return cls(path, recipe_json, identity, lock, fresh=False)

    def _start(self, recipe: BaseModel, remove_directory: bool = False) -> None:
        """Claim the lock and write ``recipe.yaml``: from here on --resume can continue.

        A failure here leaves the directory as it was: the lock file goes if this run
        created it, and so does the directory when this run created it (and it is empty).
        """
        try:
            self.lock.claim()
            text = self.identity.header() + "\n" + recipe_to_yaml(recipe)
            self.write_bytes(self.path / RECIPE_FILE, text.encode("utf-8", "backslashreplace"))
        except BaseException:
            self.lock.release(remove=True)
            if remove_directory:
                remove_if_empty(self.path)
            raise

    # ----------------------------------------------------------------- life time

    def close(self) -> None:
        """Release the lock (idempotent)."""
        self.lock.release()

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- files

    def check_owned(self) -> None:
        """Refuse to go on when the directory was removed or replaced during the run
        (:meth:`DirectoryLock.check_owned`); called before every write."""
        self.lock.check_owned()

    def _prepare_write(self, path: Path) -> None:
        """Check ownership and create ``path``'s stage folder (never the run directory
        itself: one deleted during the run is not silently re-created)."""
        self._owner_only(f"write {path.name}")
        self.check_owned()
        parent = path.parent
        if parent != self.path and parent.parent == self.path and not is_dir(parent):
            try:
                parent.mkdir()
            except OSError as exc:
                raise output_error(parent, exc, self.path) from None

    def write_bytes(self, path: Path, payload: bytes) -> None:
        """Write ``payload`` atomically; an OS error is a :class:`RunDirectoryError`."""
        self._prepare_write(path)
        try:
            atomic_write_bytes(path, payload, create_parent=False)
        except OSError as exc:
            raise output_error(path, exc, self.path) from None

    def write_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Write ``metrics.json``, the last file of a run, stamped with the run identity."""
        stamped = {**metrics, "run": self.identity.to_json()}
        self._prepare_write(self.metrics_path)
        try:
            atomic_write_json(self.metrics_path, stamped, create_parent=False)
        except OSError as exc:
            raise output_error(self.metrics_path, exc, self.path) from None
        return stamped

    def save_checkpoint(
        self, path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]
    ) -> None:
        """Save a checkpoint stamped with the recipe, run identity and versions."""
        stamped = {
            "recipe": self.recipe_json,
            "run": self.identity.to_json(),
            **metadata,
            "versions": versions(),
        }
        self._prepare_write(path)
        try:
            save_checkpoint(path, tensors, stamped, create_parent=False)
        except (OSError, SafetensorError) as exc:
            raise output_error(path, exc, self.path) from None


def _stored_identity(
    path: Path, recipe_json: dict[str, Any], data: DataIdentity | None
) -> RunIdentity:
    """Read ``recipe.yaml``: it must parse, carry an identity, hold this recipe and have
    been started on this data."""
    remedy = "Start a new run with --out."
    text = read_run_file(path, RECIPE_FILE, MAX_RECIPE_BYTES, "", remedy)
    try:
        stored = parse_yaml(text, str(path / RECIPE_FILE))
    except RecipeError as exc:
        raise RunDirectoryError(
            f"Cannot resume {path}: its recipe.yaml is unreadable ({exc}) {remedy}"
        ) from None
    identity = RunIdentity.from_header(text.split("\n", 1)[0])
    if identity is None:
        raise RunDirectoryError(
            f"Cannot resume {path}: its recipe.yaml does not start with the run identity "
            "line (# clue_fw run <id>, recipe sha256 <hash>), so the files in the directory "
            "cannot be checked against it; it was written by an older clue_fw or edited. "
            "Start a new run with --out."
        )
    if stored != recipe_json:
        changed = sorted(diff_keys(stored, recipe_json))
        raise RunDirectoryError(
            f"Cannot resume {path}: the recipe differs from the one it was started with "
            f"(changed: {', '.join(changed[:8]) or 'structure'}). Resume with the same "
            "recipe and --set values, or start a new run."
        )
    if recipe_sha256(stored) != identity.recipe_sha256:
        raise RunDirectoryError(
            f"Cannot resume {path}: its recipe.yaml was edited after the run started (the "
            "recipe no longer hashes to the recipe sha256 on its first line). Start a new "
            "run with --out."
        )
    if data is not None and identity.data is None:
        raise RunDirectoryError(
            f"Cannot resume {path}: it was started by an older clue_fw that did not record a "
            "fingerprint of the data (recipe.yaml's first line has no data sha256), so the "
            "data cannot be checked to be the same. Start a new run with --out."
        )
    if data is not None and identity.data != data:
        assert identity.data is not None
        raise RunDirectoryError(
            f"Cannot resume {path}: the data differs from the data the run was started with "
            f"(then: {identity.data.describe()}; now: {data.describe()}; data sha256 "
            f"{identity.data.sha256[:12]}… then, {data.sha256[:12]}… now). Its checkpoints "
            "were trained on the old data; restore the data files (and data settings) the run "
            "used, or start a new run with --out."
        )
    return identity
