"""Who wrote a file of a run directory: a random run id and the recipe's sha256.

A new run draws a run id (``uuid4().hex``) and hashes its recipe
(:func:`recipe_sha256`). ``recipe.yaml`` starts with the line
``# clue_fw run <run id>, recipe sha256 <hash>`` (a YAML comment: the file still loads
as a recipe), and every checkpoint (metadata key ``run``) and ``metrics.json`` (key
``run``) carries ``{"run_id": ..., "recipe_sha256": ...}``. ``--resume`` and
``finetune.init_from`` check what they load against it.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clue_fw.errors import CheckpointError

RECIPE_FILE = "recipe.yaml"
_HEADER = re.compile(r"^# clue_fw run ([0-9a-f]{32}), recipe sha256 ([0-9a-f]{64})$")


def recipe_sha256(recipe_json: Any) -> str:
    """sha256 of a recipe's canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(recipe_json, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RunIdentity:
    """Who wrote a file: a random run id and the sha256 of the run's recipe."""

    run_id: str
    recipe_sha256: str

    @classmethod
    def new(cls, recipe_json: dict[str, Any]) -> RunIdentity:
        return cls(uuid.uuid4().hex, recipe_sha256(recipe_json))

    def to_json(self) -> dict[str, str]:
        return {"run_id": self.run_id, "recipe_sha256": self.recipe_sha256}

    @classmethod
    def from_json(cls, value: Any) -> RunIdentity | None:
        """The identity stored in a file's metadata; None when absent or malformed."""
        if not isinstance(value, dict):
            return None
        found = cls(str(value.get("run_id")), str(value.get("recipe_sha256")))
        return found if _HEADER.match(found.header()) else None

    def header(self) -> str:
        """The first line of ``recipe.yaml``."""
        return f"# clue_fw run {self.run_id}, recipe sha256 {self.recipe_sha256}"

    @classmethod
    def from_header(cls, line: str) -> RunIdentity | None:
        match = _HEADER.match(line.rstrip("\r"))
        return cls(match.group(1), match.group(2)) if match else None

    def __str__(self) -> str:
        return f"run {self.run_id}, recipe sha256 {self.recipe_sha256[:12]}…"


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
    try:
        with open(run_dir / RECIPE_FILE, encoding="utf-8") as handle:
            first = handle.readline(256)
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
