"""The files of ``clue data synth``: their lines, sizes, targets and publishing.

:func:`format_lines` turns a chunk of users into the lines of a sequence file,
:func:`estimated_sizes` says about how large each output will be, :func:`check_target`
refuses an output that exists (without ``--overwrite``) or cannot be written, and the
finished files are renamed into place with the interrupt signals held back
(:func:`signals_deferred`), or removed (:func:`remove_files`); :func:`write_published`
does both around the writing. :class:`SynthStats` is what a run of the generator
reports. :mod:`clue_fw.data.synth` draws what goes in them.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np

from clue_fw.data.synth_planted import (
    ATTRIBUTES,
    TARGET_MAX_PER_USER,
    latent_layout,
    latent_metadata,
    latent_shapes,
)
from clue_fw.errors import DataError
from clue_fw.file_safety import check_output_target

_Result = TypeVar("_Result")


@dataclass(frozen=True)
class SynthStats:
    """What :func:`write_synthetic_sequences` wrote."""

    path: Path
    users: int
    items: int  # distinct items that occur in the file
    interactions: int
    repeats: int  # interactions whose item the user had before
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)  # every file written, by role
    target_interactions: int = 0  # lines of the cold-start target file (0: none)

    @property
    def mean_length(self) -> float:
        return self.interactions / max(self.users, 1)

    def summary(self) -> str:
        return (
            f"{self.users:,} users, {self.items:,} items, {self.interactions:,} interactions "
            f"(mean length {self.mean_length:.1f}, "
            f"{self.repeats / max(self.interactions, 1):.1%} repeats)"
            + (
                f", {self.target_interactions:,} target-domain interactions"
                if self.target_interactions
                else ""
            )
            + f" in {self.seconds:.1f} s"
        )


def format_lines(
    users: np.ndarray, offsets: np.ndarray, items: np.ndarray, separator: str = " "
) -> np.ndarray:
    """``user item item ...\\n`` for every row, as ASCII bytes (uint8), vectorised;
    ``separator`` between the numbers of a row (``,`` for a CSV)."""
    rows = users.size
    tokens = np.empty(rows + items.size, dtype=np.int64)
    user_slot = offsets[:-1] + np.arange(rows)
    is_user = np.zeros(tokens.size, dtype=bool)
    is_user[user_slot] = True
    tokens[user_slot] = users
    tokens[~is_user] = items
    powers = 10 ** np.arange(1, 19, dtype=np.int64)
    digits = 1 + np.searchsorted(powers, tokens, side="right")
    ends = np.cumsum(digits + 1) - 1  # the separator after each token
    out = np.empty(int(ends[-1]) + 1, dtype=np.uint8)
    out[ends] = ord(separator)
    out[ends[np.append(user_slot[1:] - 1, tokens.size - 1)]] = ord("\n")
    remaining = tokens.copy()
    for place in range(int(digits.max())):
        present = digits > place
        out[(ends - 1 - place)[present]] = ord("0") + remaining[present] % 10
        remaining //= 10
    return out


def check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise DataError(
            f"{path} already exists; pass --overwrite (overwrite=True) to replace it, or "
            "choose another --out."
        )
    try:
        check_output_target(path)
    except OSError as exc:
        raise DataError(f"Cannot write {path}: {exc.strerror}. Choose another --out.") from None


def _digit_sum(n: int) -> int:
    """The number of decimal digits in ``1, 2, ..., n`` together."""
    total, width, low = 0, 1, 1
    while low <= n:
        total += (min(n, 10 * low - 1) - low + 1) * width
        width, low = width + 1, 10 * low
    return total


def estimated_sizes(
    paths: dict[str, Path],
    num_users: int,
    num_items: int,
    mean_length: float,
    repeat_rate: float,
    target_items: int,
    clusters_per_user: int,
    num_clusters: int,
) -> dict[str, int]:
    """About how many bytes each file of ``paths`` (:func:`output_paths`) will take.

    Exact for the attribute and latent files; the sequence and target files hold random
    numbers of items, estimated at their means (a user's distinct items at most
    ``num_items``; item ids evenly spread over the digits, as popularity is shuffled).
    Small catalogues cut long users short, so there the estimate is high (up to about
    20% for 5,000 items); at a million items it is within a few percent.
    """
    user_digits = _digit_sum(num_users)
    length = mean_length if repeat_rate > 0 else min(mean_length, num_items)
    item_digits = _digit_sum(num_items) / num_items
    sizes = {"sequences": int(user_digits + num_users * (1 + length * (1 + item_digits)))}
    for name in ATTRIBUTES:
        if name in paths:
            sizes[name] = len(f"user,{name}\n") + user_digits + 3 * num_users
    if "target" in paths:
        pairs = (1 + TARGET_MAX_PER_USER) / 2
        target_digits = _digit_sum(target_items) / target_items
        sizes["target"] = int(pairs * (user_digits + num_users * (2 + target_digits)))
    if "latent" in paths:
        shapes = latent_shapes(num_users, clusters_per_user, num_items, num_clusters, target_items)
        sizes["latent"] = latent_layout(shapes, latent_metadata(0))[2]
    return sizes


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM while the block runs, then drop them.

    The block renames the finished files into place: an interrupt in the middle would
    leave some published and some not. A signal that comes during these few renames
    is dropped, as the work it would stop is done. Only in the main thread (which
    receives the signals), and only where ``sigtimedwait`` exists (not on macOS).
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "sigtimedwait"
    ):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        while signal.sigtimedwait(held, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def remove_files(*paths: Path) -> None:
    """Delete half-written files, where there are any."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def write_published(
    paths: dict[str, Path], write: Callable[[dict[str, BinaryIO]], _Result]
) -> _Result:
    """Call ``write`` with every file of ``paths`` (by role) open for writing, then publish.

    Each file is written to its name + ``.tmp``; once ``write`` has returned, all are
    renamed into place, the sequences last. On any error or interrupt the temporary
    files (and any file already renamed) are removed; an ``OSError`` is raised as a
    :class:`~clue_fw.errors.DataError` naming the file it is about.
    """
    temporaries = {role: path.with_name(path.name + ".tmp") for role, path in paths.items()}
    published: list[Path] = []
    try:
        paths["sequences"].parent.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            handles = {r: stack.enter_context(open(t, "wb")) for r, t in temporaries.items()}
            result = write(handles)
        with signals_deferred():  # the renames publish every file, or none is interrupted
            for role in sorted(paths, key=lambda r: r == "sequences"):  # the sequences last
                os.replace(temporaries[role], paths[role])
                published.append(paths[role])
    except OSError as exc:
        remove_files(*temporaries.values(), *published)
        failed = exc.filename or paths["sequences"]  # the file that the error is about
        raise DataError(f"Cannot write {failed}: {exc.strerror or exc}.") from None
    except BaseException:
        remove_files(*temporaries.values(), *published)
        raise
    return result
