"""How the processes of a data-parallel launch (torchrun) leave ``clue``: one speaks.

Under torchrun every process runs the same command. An error that every process meets
is printed once; a process that fails tells the others through the process group's
store (:mod:`clue_fw.distributed.failure`), and they stop quietly with its exit status
instead of waiting in a collective. :func:`clue_fw.cli.main` uses these.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.text import Text

from clue_fw.errors import ClueError

stderr = Console(stderr=True, emoji=False)


def _data_parallel_process() -> bool:
    """Whether this process is one of several of a data-parallel launch (torchrun, or a
    launcher that sets WORLD_SIZE and RANK as torchrun does)."""
    return os.environ.get("WORLD_SIZE", "1") not in ("", "1") and "RANK" in os.environ


def _rank() -> int:
    text = os.environ.get("RANK", "0")
    return int(text) if text.isdigit() else 0


def _speaks(exc: ClueError) -> bool:
    """Whether this process prints ``exc``: always in a one-process run. Under a
    data-parallel launch, one process speaks for all: not a copy of another rank's error,
    not when another rank failed first, and only rank 0 for an error that every process
    meets before they have joined (a bad recipe: the same paragraph N times otherwise)."""
    if not _data_parallel_process():
        return True
    if exc.reported_by is not None:
        return False
    if "torch.distributed" not in sys.modules:  # no process group yet
        return _rank() == 0
    import torch.distributed as dist

    from clue_fw.distributed import failure_elsewhere

    if not (dist.is_available() and dist.is_initialized()):
        return _rank() == 0
    if failure_elsewhere(_rank()) is not None:
        return False
    _announce(exc.exit_code)
    return True


_ANNOUNCED: list[int] = []  # the exit status this process announced as the failing one


def _announce(code: int) -> None:
    """Tell the other processes that this one fails with ``code`` (the group's store)."""
    from clue_fw.distributed import announce_failure

    announce_failure(_rank(), code)
    _ANNOUNCED.append(code)


def _parallel_failure(exc: BaseException) -> int:
    """Report an exception that is not a ClueError in a data-parallel process; return the
    exit status. When another process failed first (this one lost it mid-collective), stop
    quietly with that process's status: its error is the one message."""
    import traceback

    if getattr(exc, "reported_by", None) is not None:
        return 1
    if "torch.distributed" in sys.modules:
        from clue_fw.distributed import failure_elsewhere, lost_a_process, store_reachable

        lost = lost_a_process(exc) and _rank() != 0
        if lost and not store_reachable():
            # The process hosting the group's store (rank 0) is gone with it, mid-run: it
            # reports its own failure, and this one stops with it.
            return 1
        other = failure_elsewhere(_rank())
        if other is not None:
            return other[1]
        if lost and not store_reachable():
            # ... or it went while this process read the store: a failing process's
            # connections may close only when it exits, with the store it hosts.
            return 1
        _announce(1)
    world = os.environ.get("WORLD_SIZE", "?")
    stderr.print(
        Text(
            f"error: process {_rank()} of {world} failed with {type(exc).__name__}: {exc}. "
            "Every process of the run stops; this is a bug, please report it with the "
            "traceback below."
        ),
        highlight=False,
        soft_wrap=True,
    )
    traceback.print_exception(exc, file=sys.stderr)
    return 1


def _exit_status(code: object) -> int:
    """The process exit status of ``SystemExit(code)``, as the interpreter maps it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1
