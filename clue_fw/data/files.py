"""Read an input file safely: a regular file, under a size cap, through a bounded read.

Every reader of a recipe, data, label or target file goes through :func:`read_file`.
It opens the path without blocking (a named pipe would otherwise wait for a writer
for ever), checks on the open descriptor that it is a regular file (not a FIFO, a
device such as ``/dev/zero``, a socket or a directory), refuses a file larger than
the cap, and reads at most ``cap + 1`` bytes, so a file that grows or lies about its
size cannot exhaust memory either.

Caps: recipes 1 MiB (:data:`clue_fw.recipe.MAX_RECIPE_BYTES`); data, label and
target files :data:`DEFAULT_MAX_FILE_BYTES` (4 GiB), or ``$CLUE_MAX_FILE_BYTES``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from clue_fw.errors import ClueError, DataError, quote

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

    For plugins and core alike (``from clue_fw.data.files import read_json_file``): the
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
