"""Operating-system errors on the output side of a run, as one-paragraph messages."""

from __future__ import annotations

import errno
import re
from pathlib import Path

from clue_fw.errors import RunDirectoryError

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
    if code in _FULL:
        advice = (
            "Free disk space (or raise the file-size limit), then continue with `clue run "
            f"RECIPE --resume {run_dir}`"
        )
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = f"Make {run_dir} writable, then continue with `clue run RECIPE --resume {run_dir}`"
    else:
        advice = f"Fix the cause, then continue with `clue run RECIPE --resume {run_dir}`"
    return RunDirectoryError(
        f"{what} The run stopped; the files it had written are intact (each is written to "
        f"a temp file and renamed into place). {advice}."
    )
