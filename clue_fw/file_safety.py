"""File safety: every file clue_fw reads or writes goes through this module.

**Reading** (:func:`read_file`, :func:`read_json_file`). Every reader of a recipe, data,
label or target file goes through :func:`read_file`. It opens the path without blocking
(a named pipe would otherwise wait for a writer for ever), checks on the open descriptor
that it is a regular file (not a FIFO, a device such as ``/dev/zero``, a socket or a
directory), refuses a file larger than the cap, and reads at most ``cap + 1`` bytes, so a
file that grows or lies about its size cannot exhaust memory either.

Caps: recipes 1 MiB (:data:`clue_fw.recipe.MAX_RECIPE_BYTES`); data, label and
target files :data:`DEFAULT_MAX_FILE_BYTES` (4 GiB), or ``$CLUE_MAX_FILE_BYTES``.

**Writing** (:func:`atomic_write`, the one atomic writer). clue_fw writes every output
file (``--out`` of ``clue evaluate``, ``embed``, ``recommend``, ``schema``, ``data
synth``, and a run's own files) through a temporary file renamed over the target.
Renamed over a device such as ``/dev/null``, run as root, that would replace the device
with a regular file; opened directly, a named pipe with no reader would block for ever.
So an existing target must be a regular file (or a link to one), and anything else is
refused before a byte is written (:func:`check_output_target`). A command's own output
also may not replace a file of a run directory (:func:`write_output`).

This module used to be two, ``clue_fw.data.files`` and ``clue_fw.output_target``; their
names still import from there, with a DeprecationWarning.
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

from clue_fw.errors import ClueError, DataError, quote
from clue_fw.running.layout import LOCK_FILE, RUN_OWN_FILES, RUN_OWN_FOLDERS

MAX_FILE_ENV = "CLUE_MAX_FILE_BYTES"
DEFAULT_MAX_FILE_BYTES = 4 << 30
"""Data, label and target files larger than this (4 GiB) are refused unless
``$CLUE_MAX_FILE_BYTES`` raises the cap. A sequence file takes about 7 bytes per
interaction (6-digit ids), so the cap admits several hundred million interactions: 1M
users x 1M items with 50M interactions (``clue data synth``) is a 350 MB file."""
_CHUNK = 1 << 20
_MAX_DIGITS = 30


def max_file_bytes() -> int:
    """The cap on data, label and target files: ``$CLUE_MAX_FILE_BYTES`` or 4 GiB."""
    configured = os.environ.get(MAX_FILE_ENV, "").strip()
    if not configured:
        return DEFAULT_MAX_FILE_BYTES
    digits = configured.lstrip("0")
    if not (configured.isascii() and configured.isdigit() and digits):
        raise DataError(
            f"{MAX_FILE_ENV} must be a positive number of bytes, got {quote(configured)}."
        )
    if len(digits) > _MAX_DIGITS:  # int() refuses very long strings; no file is that large
        raise DataError(
            f"{MAX_FILE_ENV} has {len(digits):,} digits; give a number of bytes below "
            f"10**{_MAX_DIGITS}."
        )
    return int(digits)


def human_size(n_bytes: int) -> str:
    """``1048576`` -> ``'1 MiB'``; ``1536`` -> ``'1.5 KiB'``; ``3 * 2**50`` -> ``'3 PiB'``."""
    value = float(n_bytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            text = f"{value:.1f}".removesuffix(".0")
            return f"{text} {unit}" if unit != "bytes" else f"{n_bytes:,} bytes"
        value /= 1024
    raise AssertionError("unreachable")


def file_kind(mode: int, plain: bool = True) -> str:
    """What a file is, in words, from its ``st_mode`` (for error messages); ``plain=False``
    for use inside parentheses (no nested "(FIFO)")."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)" if plain else "a named pipe"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_file(
    path: Path,
    noun: str,
    limit: int | None = None,
    error: type[ClueError] = DataError,
    limit_hint: str | None = None,
) -> bytes:
    """The bytes of the regular file ``path``; ``error`` for anything else.

    ``noun`` names the file in messages (``"data file"``, ``"recipe file"``); ``limit``
    is the cap in bytes (default :func:`max_file_bytes`); ``limit_hint`` says how to
    raise it (default: set ``$CLUE_MAX_FILE_BYTES``).
    """
    if limit is None:
        limit = max_file_bytes()
        limit_hint = limit_hint or f"set {MAX_FILE_ENV} to a larger number of bytes to raise it"
    title = noun[:1].upper() + noun[1:]
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{title} not found: {path}.") from None
    except IsADirectoryError:
        raise error(f"Cannot read {noun} {path}: it is a directory, not a regular file.") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise error(f"Cannot read {noun} {path}: {reason}.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(
                f"Cannot read {noun} {path}: it is {file_kind(info.st_mode)}, not a regular "
                "file. clue_fw reads only regular files (a pipe or a device may never end)."
            )
        too_large = error(
            f"{title} {path} is refused: it is larger than {human_size(limit)}"
            + (f"; {limit_hint}" if limit_hint else "")
            + "."
        )
        if info.st_size > limit:
            raise too_large
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # the file grew while it was read
                raise too_large
    except OSError as exc:
        raise error(f"Cannot read {noun} {path}: {exc.strerror or exc}.") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_json_file(
    path: Path | str,
    noun: str = "JSON file",
    error: type[ClueError] = DataError,
    limit: int | None = None,
) -> object:
    """The JSON value in the file ``path``, read with :func:`read_file`'s guards.

    For plugins and core alike (``from clue_fw.file_safety import read_json_file``): the
    file must be a regular file under the cap (``limit``, default
    ``$CLUE_MAX_FILE_BYTES`` or 4 GiB), UTF-8, and valid JSON. Nesting deeper than
    Python's parser allows and integers longer than its digit limit (4,300 digits) are
    refused too. Every problem is ``error`` (a :class:`~clue_fw.errors.ClueError`
    subclass, :class:`~clue_fw.errors.DataError` by default) naming ``noun`` and the
    path, never a traceback.

    >>> import json, tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    ...     _ = f.write(json.dumps({"4": [1, 2]}))
    >>> read_json_file(f.name)
    {'4': [1, 2]}
    """
    import json

    path = Path(path)
    title = noun[:1].upper() + noun[1:]
    raw = read_file(path, noun, limit=limit, error=error)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"Cannot read {noun} {path}: it is not UTF-8 ({exc.reason}).") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{title} {path} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})."
        ) from None
    except RecursionError:
        raise error(
            f"{title} {path} is refused: it nests arrays or objects too deeply for the JSON reader."
        ) from None
    except ValueError as exc:  # an integer beyond Python's digit limit, and the like
        raise error(f"{title} {path} is refused: {str(exc)[:200]}.") from None


# --------------------------------------------------------------------------- writing
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


def is_run_directory(folder: Path) -> bool:
    """Whether ``folder`` is a run directory: it holds a ``recipe.yaml`` whose first line
    is a run identity, or a run's lock file ``.lock`` beside another file or folder a run
    writes. (A recipe a user keeps in a project folder has no identity line, and other
    tools make ``.lock`` files too, pytest in its temporary folders for one.)"""
    from clue_fw.running.identity import directory_identity

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
    write_output_with(path, lambda temp: temp.write_bytes(payload), flag)


def write_output_with(path: Path | str, write: Callable[[Path], None], flag: str = "--out") -> None:
    """:func:`write_output` for an output made by ``write(temp)`` (streamed to the temp
    file piece by piece, e.g. ``clue embed``'s vectors): checked, atomic, OS errors named."""
    from clue_fw.running.os_errors import os_reason

    check_user_output(path, flag)
    try:
        atomic_write(Path(path), write, create_parent=False)
    except OSError as exc:
        raise ClueError(
            f"Cannot write {flag} {path}: {os_reason(exc)}. Choose another {flag}."
        ) from None
