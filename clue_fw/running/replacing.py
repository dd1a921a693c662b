"""What a run may do to a directory before it owns it: find the temp files a killed writer
left, tell a run directory from other folders, and clear one that ``--overwrite`` replaces.

Every refusal is a :class:`~clue_fw.errors.RunDirectoryError` that names the directory
and says what to do instead.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from clue_fw.errors import RunDirectoryError
from clue_fw.running.identity import directory_identity
from clue_fw.running.layout import (
    BEST_FILE,
    ENCODER_FILE,
    LAST_FILE,
    LOCK_FILE,
    METRICS_FILE,
    RECIPE_FILE,
    STAGES,
    stage_dir,
)
from clue_fw.running.lock import held_elsewhere
from clue_fw.running.os_errors import (
    exists,
    is_dir,
    is_file,
    is_symlink,
    os_reason,
    output_error,
)

# Names of the temporary files clue_fw's atomic writers create next to their targets
# (``.<name>.<random>.tmp``); a writer killed before its rename leaves one behind.
_WRITTEN = (RECIPE_FILE, METRICS_FILE, LAST_FILE, BEST_FILE, ENCODER_FILE)
_TEMP_FILE = re.compile(r"^\.(" + "|".join(map(re.escape, _WRITTEN)) + r")\..+\.tmp$")


def stale_temp_files(run_dir: Path) -> list[Path]:
    """Temp files of interrupted atomic writes in a run directory and its stage folders."""
    found = []
    for folder in (run_dir, *(stage_dir(run_dir, stage) for stage in STAGES)):
        if is_dir(folder) and not is_symlink(folder):
            found += [
                p for p in list_entries(folder, skip="") if _TEMP_FILE.match(p.name) and is_file(p)
            ]
    return sorted(found)


def list_entries(path: Path, skip: str) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.name != skip)
    except OSError as exc:
        raise RunDirectoryError(f"Cannot read the directory {path}: {os_reason(exc)}.") from None


def looks_like_a_run(path: Path) -> bool:
    """A run directory: it holds ``recipe.yaml``, or only what a run killed before its
    first file was complete leaves (its lock file, the temp file of ``recipe.yaml``)."""
    if not is_dir(path):
        return False
    if exists(path / RECIPE_FILE):
        return True
    entries = list_entries(path, skip="")
    temps = set(stale_temp_files(path))
    return bool(entries) and all(p in temps or p.name == LOCK_FILE for p in entries)


def replaceable(path: Path) -> bool:
    """Whether ``--overwrite`` may empty ``path``: a clue_fw run directory, whose
    ``recipe.yaml`` starts with a run identity line, or what a run killed before that
    file was complete leaves (its lock file, temp files). A file that is merely called
    ``recipe.yaml`` or ``.lock`` does not make a directory a run."""
    if directory_identity(path) is not None:
        return True
    temps = set(stale_temp_files(path))
    return all(p in temps or p.name == LOCK_FILE for p in list_entries(path, skip=""))


def not_empty(path: Path) -> RunDirectoryError:
    return RunDirectoryError(
        f"Output directory {path} exists and is not empty. Choose another --out, pass "
        "--overwrite to replace its contents (a clue_fw run directory only), or --resume it."
    )


def not_a_run(path: Path) -> RunDirectoryError:
    shown = str(path) if path.is_absolute() else f"{path} ({path.absolute()})"
    return RunDirectoryError(
        f"{shown} is not a clue_fw run directory; --overwrite only replaces runs (it is not "
        "empty and holds no recipe.yaml that starts with a clue_fw run identity line). "
        "Choose an empty or new --out."
    )


def remove_if_empty(path: Path) -> None:
    """Remove ``path`` if it is an empty directory (one this run created)."""
    try:
        path.rmdir()
    except OSError:
        pass


def refuse_live_runs_below(path: Path) -> None:
    """Refuse --overwrite of ``path`` while a run holds a lock file anywhere below it
    (a run nested in a sub-directory): each ``.lock`` found is tried with a non-blocking
    flock before anything is deleted."""
    own = path / LOCK_FILE

    def unreadable(exc: OSError) -> None:
        raise RunDirectoryError(
            f"Cannot replace the contents of {path} (--overwrite): cannot read "
            f"{exc.filename or path} ({os_reason(exc)}) to check it for live runs. Choose "
            "another --out."
        )

    for folder, _, files in os.walk(path, onerror=unreadable):
        if LOCK_FILE not in files or Path(folder) / LOCK_FILE == own:
            continue
        found = Path(folder) / LOCK_FILE
        if held_elsewhere(found):
            raise RunDirectoryError(
                f"Cannot replace the contents of {path} (--overwrite): a clue_fw run is "
                f"going in {found.parent} (it holds {found}). Wait until it ends or stop it, "
                "or choose another --out."
            )


def no_recipe(path: Path) -> RunDirectoryError:
    return RunDirectoryError(
        f"Cannot resume: {path} holds no recipe.yaml, so it is not a clue_fw run directory. "
        "If a run was killed before it wrote anything, start it again with --out (an empty "
        "directory is accepted)."
    )


def clear(path: Path, entries: list[Path]) -> None:
    """Delete ``entries`` of ``path`` (--overwrite), ``metrics.json`` first: a deletion
    that fails half-way never leaves a directory that looks finished."""
    entries = sorted(entries, key=lambda p: p.name != METRICS_FILE)
    try:
        for entry in entries:
            if is_dir(entry) and not is_symlink(entry):
                shutil.rmtree(entry)
            else:
                entry.unlink()
    except OSError as exc:
        raise RunDirectoryError(
            f"Cannot replace the contents of {path} (--overwrite): {os_reason(exc)} "
            f"({exc.filename or path}). Choose another --out."
        ) from None


def remove(paths: list[Path], run_dir: Path) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise output_error(path, exc, run_dir) from None
