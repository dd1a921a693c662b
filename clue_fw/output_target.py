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
import os
import stat
from pathlib import Path

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


__all__ = ["NotRegularTarget", "check_output_target"]
