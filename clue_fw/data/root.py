"""Where datasets live: ``CLUE_DATA_DIR`` or a per-user cache directory."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from clue_fw.errors import DataError, quote
from clue_fw.file_safety import file_kind

DATA_DIR_ENV = "CLUE_DATA_DIR"


def default_cache_dir() -> Path:
    """The per-user cache directory used when ``CLUE_DATA_DIR`` is unset."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "clue_fw" / "data"


def expand_home(path: str | Path, what: str) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded (DataError when that fails).

    ``what`` names the setting in the error, e.g. ``"data.path"`` or ``CLUE_DATA_DIR``.
    """
    try:
        return Path(path).expanduser()
    except RuntimeError:  # no such user, or no home directory to expand "~" to
        head = quote(str(path).split("/", 1)[0])
        raise DataError(
            f"{what}: cannot expand {head} in {quote(str(path))} (no such user or no home "
            "directory); write the path out in full."
        ) from None


def data_root() -> Path:
    """The data root: ``$CLUE_DATA_DIR`` if set, else :func:`default_cache_dir`."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return expand_home(configured, DATA_DIR_ENV)
    try:
        return default_cache_dir()
    except RuntimeError:
        raise DataError(
            f"There is no home directory to hold the data cache; set {DATA_DIR_ENV} to the "
            "folder that holds the data."
        ) from None


def resolve_data_path(
    relative: str | Path, root: Path | None = None, what: str = "data path"
) -> Path:
    """Resolve a recipe's data path against the data root and check it exists.

    Absolute paths are used as they are. ``what`` names the recipe key in errors.
    """
    path = expand_home(relative, what)
    base = root if root is not None else data_root()
    full = path if path.is_absolute() else base / path
    make = (
        "or generate it with `clue data synth` (the command is in the recipe's comments; "
        "docs/synthetic.md)"
        if path.parts[:1] == ("synth",)
        else "or fetch it with `clue data download ml-1m` / `clue data download ml-100k`"
    )
    hint = f"Set {DATA_DIR_ENV} to the folder that holds it (now: {base}), {make}."
    try:
        mode = full.stat().st_mode  # follows links, as reading does
    except (FileNotFoundError, NotADirectoryError, ValueError):
        raise DataError(f"Data file not found: {full}. {hint}") from None
    except OSError as exc:
        raise DataError(f"Cannot read data file {full}: {exc.strerror or exc}.") from None
    if not stat.S_ISREG(mode):
        raise DataError(
            f"Data path {full} is not a file: it is {file_kind(mode)}, and clue_fw reads data "
            f"only from regular files. {hint}"
        )
    return full
