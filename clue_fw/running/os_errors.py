"""Operating-system errors on the output side of a run, as one-paragraph messages."""

from __future__ import annotations

import errno
import os
import re
import shlex
import stat
from pathlib import Path

from clue_fw.errors import ClueError, RunDirectoryError
from clue_fw.file_safety import file_kind
from clue_fw.running.layout import recipe_path

_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def os_reason(exc: BaseException) -> str:
    """The operating system's reason, ``File too large (EFBIG)``, from an OSError or from
    the SafetensorError that wraps one."""
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0)
        return f"{exc.strerror or exc}" + (f" ({name})" if name else "")
    match = re.search(r"I/O error: (.+?) \(os error (\d+)\)", str(exc))
    if match:
        return f"{match.group(1)} ({errno.errorcode.get(int(match.group(2)), 'os error')})"
    return str(exc)


def os_errno(exc: BaseException) -> int | None:
    if isinstance(exc, OSError):
        return exc.errno
    match = re.search(r"\(os error (\d+)\)", str(exc))
    return int(match.group(1)) if match else None


def output_error(path: Path, exc: BaseException, run_dir: Path) -> RunDirectoryError:
    """The :class:`RunDirectoryError` for an OS error while writing ``path`` of ``run_dir``."""
    code = os_errno(exc)
    what = f"Cannot write {path}: {os_reason(exc)}."
    try:  # a run that stored its recipe is resumed; one that did not starts again
        started = os.path.isfile(recipe_path(run_dir))
    except (OSError, ValueError):
        started = False
    again = (
        f"continue with: clue run --resume {shlex.quote(str(run_dir))}"
        if started
        else f"start it again with `clue run RECIPE --out {run_dir}` (nothing of it was kept)"
    )
    if code in _FULL:
        advice = f"Free disk space (or raise the file-size limit), then {again}"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = f"Make {run_dir.parent if not started else run_dir} writable, then {again}"
    else:
        advice = f"Fix the cause, then {again}"
    return RunDirectoryError(
        f"{what} The run stopped; the files it had written are intact (each is written to "
        f"a temp file and renamed into place). {advice}."
    )


# --------------------------------------------------------------------------- probes
#
# ``Path.exists()`` and friends swallow only some OS errors (a missing file) and raise
# the rest (``File name too long``, ``Permission denied``) as a traceback. Every
# filesystem probe of the run-directory code goes through these instead: a missing path
# is ``None``/False, any other OS error a ClueError naming the path and the reason.

_MISSING = {errno.ENOENT, errno.ENOTDIR}


def probe(
    path: Path, follow: bool = True, error: type[ClueError] = RunDirectoryError
) -> os.stat_result | None:
    """``os.stat`` (``os.lstat`` unless ``follow``) of ``path``; None when it does not
    exist (a dangling or looping symbolic link, when followed, does not exist either)."""
    try:
        return os.stat(path) if follow else os.lstat(path)
    except OSError as exc:
        if exc.errno in _MISSING or (follow and exc.errno == errno.ELOOP):
            return None
        raise error(
            f"Cannot use the path {path}: {os_reason(exc)}. Check the path (each of its "
            "components must be at most 255 bytes) and its permissions."
        ) from None
    except ValueError as exc:  # an embedded NUL byte
        raise error(f"Cannot use the path {path!r}: {exc}.") from None


def exists(path: Path, error: type[ClueError] = RunDirectoryError) -> bool:
    """Whether anything (a dangling symbolic link too) is at ``path``."""
    return probe(path, follow=False, error=error) is not None


def is_symlink(path: Path, error: type[ClueError] = RunDirectoryError) -> bool:
    found = probe(path, follow=False, error=error)
    return found is not None and stat.S_ISLNK(found.st_mode)


def is_dir(path: Path, error: type[ClueError] = RunDirectoryError) -> bool:
    found = probe(path, error=error)
    return found is not None and stat.S_ISDIR(found.st_mode)


def is_file(path: Path, error: type[ClueError] = RunDirectoryError) -> bool:
    found = probe(path, error=error)
    return found is not None and stat.S_ISREG(found.st_mode)


def kind_of(path: Path, error: type[ClueError] = RunDirectoryError) -> str:
    """What ``path`` is, in words: ``a regular file``, ``a named pipe``, ``missing``..."""
    found = probe(path, error=error)
    if found is None:
        return "a dangling symbolic link" if exists(path, error) else "missing"
    return file_kind(found.st_mode, plain=False)
