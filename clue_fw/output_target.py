"""Where an output file may go: a new path or an existing regular file.

clue_fw writes every output file (``--out`` of ``clue evaluate``, ``embed``,
``recommend``, ``schema``, ``data synth``, and a run's own files) through a temporary
file renamed over the target. Renamed over a device such as ``/dev/null``, run as root,
that would replace the device with a regular file; opened directly, a named pipe with
no reader would block for ever. So an existing target must be a regular file (or a
link to one), and anything else is refused before a byte is written.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clue_fw.data.files import file_kind


class NotRegularTarget(OSError):
    """The output path exists and is not a regular file."""


def check_output_target(path: Path | str) -> None:
    """Raise :class:`NotRegularTarget` (an ``OSError`` whose ``strerror`` says what
    ``path`` is) when ``path`` exists and is not a regular file."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # a new file (or a parent problem, which the write itself reports)
    except OSError:
        return  # unreadable metadata: the write reports its own error
    if stat.S_ISREG(mode):
        return
    raise NotRegularTarget(
        errno.EEXIST,
        f"it is {file_kind(mode)}, not a regular file, and clue_fw writes a file by "
        "renaming a new one over it, which would replace it; give a file path",
        str(path),
    )


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None], create_parent: bool = True) -> None:
    """Make ``path`` through ``write(temp)`` on a temp file beside it, fsync and rename; the
    temp file is removed if anything fails. Every file clue_fw writes goes through here.

    ``create_parent=False`` requires the folder to exist: a run directory deleted while
    its run is going is then not silently re-created.
    """
    check_output_target(path)
    if create_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(temp))
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
        _fsync_directory(path.parent)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, payload: bytes, create_parent: bool = True) -> None:
    """Write ``payload`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda temp: temp.write_bytes(payload), create_parent)


def atomic_write_json(path: Path, value: Any, create_parent: bool = True) -> None:
    """Write ``value`` as indented JSON text to ``path`` atomically (:func:`atomic_write`)."""
    text = json.dumps(value, indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, text.encode(), create_parent)


# --------------------------------------------------------------------------- user outputs
#
# The files a command writes for its user (``clue evaluate --out``, ``embed``,
# ``recommend``, ``baseline``, ``schema``, ``compare``/``sweep --markdown``, ``plot``,
# ``analyze``) go through :func:`write_output`. It refuses what the run writers accept
# only from their own run: a path inside a run directory that the run wrote or will
# write. ``clue evaluate R0 --out R0/metrics.json`` would otherwise replace the run's
# metrics with numbers no run identity vouches for.

RUN_OWN_FILES = ("recipe.yaml", ".lock", "run.log", "metrics.json")
RUN_OWN_FOLDERS = ("pretrain", "finetune")


def is_run_directory(folder: Path) -> bool:
    """Whether ``folder`` is a run directory: it holds a ``recipe.yaml`` whose first line
    is a run identity, or a run's lock file ``.lock`` beside another file or folder a run
    writes. (A recipe a user keeps in a project folder has no identity line, and other
    tools make ``.lock`` files too, pytest in its temporary folders for one.)"""
    from clue_fw.running.identity import directory_identity
    from clue_fw.running.lock import LOCK_FILE

    if directory_identity(folder) is not None:
        return True
    try:
        return os.path.lexists(folder / LOCK_FILE) and any(
            os.path.lexists(folder / name)
            for name in (*RUN_OWN_FILES, *RUN_OWN_FOLDERS)
            if name != LOCK_FILE
        )
    except (OSError, ValueError):
        return False


def run_directory_above(path: Path | str) -> Path | None:
    """The innermost run directory (:func:`is_run_directory`) that holds ``path``,
    following symbolic links; None when no folder above it is one."""
    try:
        resolved = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return None
    for folder in resolved.parents:
        if is_run_directory(folder):
            return folder
    return None


def check_user_output(path: Path | str, flag: str = "--out") -> None:
    """Raise a :class:`~clue_fw.errors.ClueError` when ``path`` cannot take a command's
    output: it exists and is not a regular file (:func:`check_output_target`), or it is a
    file of a run directory (an existing file there, or a name the run writes)."""
    from clue_fw.errors import ClueError, quote

    if not str(path).strip():
        raise ClueError(f"{flag} is empty; give the path of the file to write.")
    try:
        check_output_target(path)
    except NotRegularTarget as exc:
        raise ClueError(f"Cannot write {flag} {path}: {exc.strerror}.") from None
    run_dir = run_directory_above(path)
    if run_dir is None:
        return
    inside = Path(os.path.realpath(path)).relative_to(run_dir)
    own = inside.parts[0] in RUN_OWN_FOLDERS or str(inside) in RUN_OWN_FILES
    if own or os.path.lexists(path):
        what = "a file the run itself writes" if own else "a file that already exists there"
        raise ClueError(
            f"Refusing to write {flag} {quote(str(path), 200)}: it is {what} inside the run "
            f"directory {run_dir} (it holds a run's .lock or recipe.yaml), and only that run may "
            "replace its files. Write the output outside the run directory, or to a new file "
            "name."
        )


def write_output(path: Path | str, payload: bytes, flag: str = "--out") -> None:
    """Write a command's output file atomically (a temporary file renamed over it) after
    :func:`check_user_output`; an OS error is a ClueError naming ``flag`` and ``path``."""
    from clue_fw.errors import ClueError
    from clue_fw.running.os_errors import os_reason

    check_user_output(path, flag)
    try:
        atomic_write_bytes(Path(path), payload, create_parent=False)
    except OSError as exc:
        raise ClueError(
            f"Cannot write {flag} {path}: {os_reason(exc)}. Choose another {flag}."
        ) from None


__all__ = [
    "NotRegularTarget",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_output_target",
    "check_user_output",
    "is_run_directory",
    "run_directory_above",
    "write_output",
]
