"""Who wrote a file of a run directory: a random run id and the recipe's sha256.

A new run draws a run id (``uuid4().hex``), hashes its recipe (:func:`recipe_sha256`)
and its prepared data (:meth:`~clue_fw.components.TaskData.fingerprint`).
``recipe.yaml`` starts with the line ``# clue_fw run <run id>, recipe sha256 <hash>,
data sha256 <hash> (<U> users, <I> items, <N> interactions)`` (a YAML comment: the file
still loads as a recipe), and every checkpoint (metadata key ``run``) and
``metrics.json`` (key ``run``) carries ``{"run_id": ..., "recipe_sha256": ...,
"data_sha256": ..., "data": {counts}}``. ``--resume`` and ``finetune.init_from`` check
what they load against it; ``--resume`` also refuses data that changed since the run
started.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clue_fw.errors import CheckpointError
from clue_fw.running.layout import RECIPE_FILE

_HEADER = re.compile(
    r"^# clue_fw run ([0-9a-f]{32}), recipe sha256 ([0-9a-f]{64})"
    r"(?:, data sha256 ([0-9a-f]{64})(?: \((\d+) users, (\d+) items, (\d+) interactions\))?)?$"
)
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
COUNTS = ("users", "items", "interactions")


def recipe_sha256(recipe_json: Any) -> str:
    """sha256 of a recipe's canonical JSON (sorted keys, no spaces, ASCII escapes: a
    string that UTF-8 cannot encode, such as a lone surrogate, still hashes)."""
    text = json.dumps(recipe_json, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class DataIdentity:
    """The data a run trains and evaluates on: the sha256 of its prepared task data
    (:meth:`~clue_fw.components.TaskData.fingerprint`) and its counts (for messages)."""

    sha256: str
    counts: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def of(cls, task_data: Any) -> DataIdentity:
        data = task_data.sequences
        counts = {
            "users": data.num_users,
            "items": data.num_items,
            "interactions": data.num_interactions,
        }
        return cls(task_data.fingerprint(), counts)

    def describe(self) -> str:
        if all(isinstance(self.counts.get(key), int) for key in COUNTS):
            return ", ".join(f"{self.counts[key]:,} {key}" for key in COUNTS)
        return f"sha256 {self.sha256[:12]}…"


@dataclass(frozen=True)
class RunIdentity:
    """Who wrote a file: a random run id, the sha256 of the run's recipe and that of its
    data (None only for runs started by a clue_fw that did not record it)."""

    run_id: str
    recipe_sha256: str
    data: DataIdentity | None = None

    @classmethod
    def new(cls, recipe_json: dict[str, Any], data: DataIdentity | None = None) -> RunIdentity:
        return cls(uuid.uuid4().hex, recipe_sha256(recipe_json), data)

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"run_id": self.run_id, "recipe_sha256": self.recipe_sha256}
        if self.data is not None:
            value["data_sha256"] = self.data.sha256
            value["data"] = dict(self.data.counts)
        return value

    @classmethod
    def from_json(cls, value: Any) -> RunIdentity | None:
        """The identity stored in a file's metadata; None when absent or malformed."""
        if not isinstance(value, dict):
            return None
        run_id, recipe, data = value.get("run_id"), value.get("recipe_sha256"), None
        if not (isinstance(run_id, str) and _RUN_ID.match(run_id)):
            return None
        if not (isinstance(recipe, str) and _SHA256.match(recipe)):
            return None
        if "data_sha256" in value:
            sha = value["data_sha256"]
            if not (isinstance(sha, str) and _SHA256.match(sha)):
                return None
            counts = value.get("data")
            counts = (
                {k: v for k, v in counts.items() if k in COUNTS and type(v) is int}
                if isinstance(counts, dict)
                else {}
            )
            data = DataIdentity(sha, counts)
        return cls(run_id, recipe, data)

    def header(self) -> str:
        """The first line of ``recipe.yaml``."""
        line = f"# clue_fw run {self.run_id}, recipe sha256 {self.recipe_sha256}"
        if self.data is not None:
            line += f", data sha256 {self.data.sha256}"
            if all(isinstance(self.data.counts.get(key), int) for key in COUNTS):
                line += " (" + ", ".join(f"{self.data.counts[k]} {k}" for k in COUNTS) + ")"
        return line

    @classmethod
    def from_header(cls, line: str) -> RunIdentity | None:
        """The identity of a ``recipe.yaml`` first line; ``data`` is None on the
        two-field line of older runs."""
        match = _HEADER.match(line.rstrip("\r"))
        if not match:
            return None
        data = None
        if match.group(3):
            counts = (
                dict(zip(COUNTS, (int(match.group(i)) for i in (4, 5, 6)), strict=True))
                if match.group(4)
                else {}
            )
            data = DataIdentity(match.group(3), counts)
        return cls(match.group(1), match.group(2), data)

    def __str__(self) -> str:
        text = f"run {self.run_id}, recipe sha256 {self.recipe_sha256[:12]}…"
        if self.data is not None:
            text += f", data sha256 {self.data.sha256[:12]}…"
        return text


def file_identity(path: Path, metadata: dict[str, Any]) -> RunIdentity:
    """The identity a checkpoint carries, checked against the recipe it carries."""
    found = RunIdentity.from_json(metadata.get("run"))
    if found is None:
        raise CheckpointError(
            f"{path} carries no clue_fw run identity (metadata key 'run'), so nothing shows "
            "which run wrote it: it comes from another program or an older clue_fw. "
            "Refusing to load it; start a new run (--out) instead."
        )
    if recipe_sha256(metadata.get("recipe")) != found.recipe_sha256:
        raise CheckpointError(
            f"{path} is inconsistent: the recipe in its metadata does not hash to the recipe "
            f"sha256 of its run identity ({found}), so it was changed after it was written. "
            "Refusing to load it."
        )
    return found


def check_identity(path: Path, metadata: dict[str, Any], expected: RunIdentity) -> None:
    """Refuse a checkpoint that another run wrote (a :class:`CheckpointError`)."""
    found = file_identity(path, metadata)
    if found != expected:
        raise CheckpointError(
            f"{path} was written by another run ({found}), not by the run of its directory "
            f"({expected}); it was copied in from another run, seed or recipe. Refusing to "
            "load it: put this run's own file back, or start a new run (--out)."
        )


def directory_identity(run_dir: Path) -> RunIdentity | None:
    """The identity on the first line of ``run_dir``'s ``recipe.yaml`` (None when that
    file is missing, unreadable or has no identity line). Reads the directory only."""
    path = run_dir / RECIPE_FILE
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None  # a named pipe would block the open
        with open(path, encoding="utf-8") as handle:
            first = handle.readline(1024)
    except (OSError, UnicodeDecodeError):
        return None
    return RunIdentity.from_header(first.rstrip("\n"))


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths at which two JSON-like values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = []
        for key in set(a) | set(b):
            keys += diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return keys
    return [] if a == b else [prefix.rstrip(".")]
