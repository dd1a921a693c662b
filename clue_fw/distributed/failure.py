"""When one process fails: it leaves its exit status in the process group's store,
and the others, instead of waiting in a collective until the group's timeout, read it
and stop quietly with the same status (``clue_fw.cli.main``)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import torch.distributed as dist

FAILURE_KEY = "clue_fw/failed"
"""Key of the process group's store under which the first process that fails leaves
``{"rank": R, "code": C}``: the others then stop quietly with the same exit status."""
STORE_TIMEOUT_S = 3


def _group_store() -> Any:
    """The default process group's key-value store (short timeouts), or None."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(timedelta(seconds=STORE_TIMEOUT_S))
    except Exception:  # no store, or one that cannot be reached any more
        return None
    return store


def announce_failure(rank: int, code: int) -> None:
    """Record in the group's store that process ``rank`` fails with exit status ``code``,
    unless another process did first (best effort: a lost store records nothing)."""
    store = _group_store()
    if store is None:
        return
    try:
        store.compare_set(FAILURE_KEY, "", json.dumps({"rank": rank, "code": code}))
    except Exception:
        pass


LEAVE_GRACE_S = 2.0
"""How long a failed process keeps the group's store up after leaving the group, so the
others (which notice when its connections close) can read who failed."""


def leave_after_failure() -> None:
    """Close this failed process's connections to the others, so a process waiting in a
    collective with it stops now, then keep the store (rank 0 may host it) up for
    :data:`LEAVE_GRACE_S` seconds while they read :data:`FAILURE_KEY`. Best effort,
    bounded in time: the process exits afterwards anyway."""
    import threading
    import time

    if not (dist.is_available() and dist.is_initialized()):
        return
    store = _group_store()  # held here: the group's teardown would drop (and stop) it
    closing = threading.Thread(target=_destroy_quietly, daemon=True)
    closing.start()
    closing.join(LEAVE_GRACE_S)
    time.sleep(LEAVE_GRACE_S)
    del store


def _destroy_quietly() -> None:
    try:
        dist.destroy_process_group()
    except Exception:
        pass


_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def lost_a_process(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another process left."""
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _LOST_PEER)


def store_reachable() -> bool:
    """Whether the group's store still takes connections (rank 0 hosts it, at
    ``MASTER_ADDR:MASTER_PORT``, unless torchrun's agent does: a refused connection means
    that process is gone). A plain socket: torch's store client would log a C++ warning
    with a stack on a dead store."""
    import socket

    address = os.environ.get("MASTER_ADDR", "")
    port = os.environ.get("MASTER_PORT", "")
    if not address or not port.isdigit():
        return _group_store() is not None
    try:
        with socket.create_connection((address, int(port)), timeout=STORE_TIMEOUT_S):
            return True
    except OSError:
        return False


def failure_elsewhere(rank: int) -> tuple[int, int] | None:
    """``(rank, code)`` of another process that failed first and said so (its error is
    its own to report), or None."""
    store = _group_store()
    if store is None:
        return None
    try:
        if not store.check([FAILURE_KEY]):
            return None
        found = json.loads(store.get(FAILURE_KEY).decode("utf-8"))
        other, code = int(found["rank"]), int(found["code"])
    except Exception:
        return None
    return (other, code) if other != rank else None
