"""A finished run, read: its metrics and checkpoints, checked against its identity.

:class:`RunReader` holds the reads that a resumed run and the readers of a finished run
(``load_run``, ``clue evaluate``) share. It takes no lock and writes nothing; the writer,
:class:`~clue_fw.running.run_directory.RunDirectory`, is a reader that also owns the
directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from clue_fw.errors import CheckpointError, RunDirectoryError, short_repr
from clue_fw.running.identity import RunIdentity, check_identity
from clue_fw.running.layout import LOG_FILE, METRICS_FILE, RECIPE_FILE, metrics_path, stage_dir
from clue_fw.running.os_errors import exists, is_file, kind_of, os_reason
from clue_fw.training.checkpoint import load_checkpoint

MAX_METRICS_BYTES = 16 << 20
"""A ``metrics.json`` larger than this (16 MiB) is not one clue_fw wrote."""


class RunReader:
    """The run in ``path`` whose identity is ``identity`` (its ``recipe.yaml``'s first
    line), for reading: every file it reads must carry that identity."""

    def __init__(self, path: Path, identity: RunIdentity) -> None:
        self.path = path
        self.identity = identity

    # ----------------------------------------------------------------- paths

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def metrics_path(self) -> Path:
        return metrics_path(self.path)

    def stage_dir(self, stage: str) -> Path:
        return stage_dir(self.path, stage)

    def finished_metrics(self) -> dict[str, Any] | None:
        """The metrics of a finished run (None while ``metrics.json`` does not exist).

        A ``metrics.json`` that is unreadable or carries another run's identity is a
        :class:`RunDirectoryError`: nothing is taken for this run's result unchecked.
        """
        path = self.metrics_path
        if not exists(path):
            return None
        redo = f"Delete it and --resume {self.path} again to evaluate the best checkpoint anew."
        damaged = "; it was damaged after the run finished"
        text = read_run_file(self.path, METRICS_FILE, MAX_METRICS_BYTES, damaged, redo)
        try:
            metrics = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise unreadable(self.path, METRICS_FILE, exc, damaged, redo) from None
        found = RunIdentity.from_json(metrics.get("run")) if isinstance(metrics, dict) else None
        if found is None:
            raise RunDirectoryError(
                f"{path} carries no run identity, so nothing shows that the run of "
                f"{self.path} wrote it. {redo}"
            )
        if found != self.identity:
            raise RunDirectoryError(
                f"{path} and {self.path / RECIPE_FILE} name different runs ({found} against "
                f"{self.identity}): one of them was copied in from another run or edited by "
                f"hand (the identity line of {RECIPE_FILE}, say). Restore the run's own files; "
                f"if it is {METRICS_FILE} that came from elsewhere, delete it and --resume "
                f"{self.path} again to evaluate the best checkpoint anew."
            )
        assert isinstance(metrics, dict)
        return metrics

    def load_checkpoint(
        self, path: Path, role: str | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Read a checkpoint of this run; one that another run wrote is refused, and so is
        one whose ``role`` (``last``, ``best``, ``encoder``) is not ``role``: a run's
        ``last.safetensors`` copied over its ``best.safetensors`` is not its best."""
        tensors, metadata = load_checkpoint(path)
        check_identity(path, metadata, self.identity)
        if role is not None and metadata.get("role") != role:
            found = metadata.get("role")
            raise CheckpointError(
                f"{path} is not this run's {role} checkpoint (its metadata records role "
                f"{short_repr(found)}): it was copied or renamed from another file of the run. "
                f"Put the run's own {path.name} back, or start a new run (--out)."
            )
        return tensors, metadata


# --------------------------------------------------------------------------- helpers


def read_run_file(run_dir: Path, name: str, cap: int, damaged: str, remedy: str) -> str:
    """The text of a small file of a run (``recipe.yaml``, ``metrics.json``): a regular
    file of at most ``cap`` bytes, else a :class:`RunDirectoryError` that ends with
    ``remedy`` (``damaged`` is said after the reason it is unreadable)."""
    path = run_dir / name
    if not is_file(path):
        raise RunDirectoryError(
            f"Cannot resume {run_dir}: its {name} is not a regular file (it is "
            f"{kind_of(path)}). {remedy}"
        )
    try:
        if path.stat().st_size > cap:
            raise ValueError(f"larger than {cap >> 20} MiB")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise unreadable(run_dir, name, exc, damaged, remedy) from None


def unreadable(
    run_dir: Path, name: str, exc: BaseException, damaged: str, remedy: str
) -> RunDirectoryError:
    reason = os_reason(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
    return RunDirectoryError(
        f"Cannot resume {run_dir}: its {name} is unreadable ({reason}){damaged}. {remedy}"
    )
