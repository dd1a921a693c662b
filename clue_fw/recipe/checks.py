"""Checks of single recipe values: the device, the run name, objective sizes, view order.

Also :func:`pretrains`, the one place that decides whether a recipe pre-trains, and
:func:`freezes_encoder`, whether a fine-tuning mode freezes the encoder for some epochs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from clue_fw.errors import quote

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import RecipeLike
    from clue_fw.registry import Registry

MAX_CUDA_INDEX = 127
"""The largest N of a ``cuda:N`` device (torch stores device indices in 8 bits)."""
MAX_OBJECTIVE_DIM = 65536
"""The largest ``projector_dim`` / ``predictor_dim`` of a pre-training objective."""
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:(?P<index>0|[1-9][0-9]{0,2}))?)", re.ASCII)


def check_device(value: str) -> str:
    match = _DEVICE.fullmatch(value)
    index = match and match.group("index")
    if not match or (index and int(index) > MAX_CUDA_INDEX):
        raise ValueError(
            f"device must be auto, cpu, mps, cuda or cuda:N, got {quote(value)} (N is a GPU "
            f"index from 0 to {MAX_CUDA_INDEX}, written without leading zeros)"
        )
    return value


def not_empty(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("an empty string is not a value; leave the key out or write null")
    return value


MAX_NAME_LENGTH = 100
"""A recipe ``name`` is at most this many characters (it names a folder under runs/)."""


def check_run_name(value: str | None) -> str | None:
    """A recipe name is one safe path component: the default run directory is
    ``runs/<name>/<time>``, so ``/abs``, ``../x`` or ``a/b`` would write elsewhere."""
    if value is None:
        return value
    allowed = (
        f"a name must be one folder name of 1 to {MAX_NAME_LENGTH} characters: letters, "
        "digits, spaces and punctuation, without '/', '\\', control or invisible format "
        "characters, and not '.' or '..'"
    )
    if not value.strip():
        raise ValueError(f"the name is empty; {allowed}")
    bad = sorted({c for c in value if _unsafe_in_name(c)})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValueError(
            f"{quote(value)} is not a single folder name (it contains {shown}); {allowed}"
        )
    if value in (".", "..") or len(value) > MAX_NAME_LENGTH or value != value.strip():
        raise ValueError(f"{quote(value)} is not a safe folder name; {allowed}")
    return value


def _unsafe_in_name(character: str) -> bool:
    """Path separators, control characters and invisible format characters (zero-width
    spaces, right-to-left overrides) have no place in a folder name."""
    return character in "/\\" or unicodedata.category(character) in ("Cc", "Cf")


def default_name(stem: str) -> str:
    """The ``name`` of a recipe that gives none: its file's stem, made into a valid name
    when it is not one (``..yaml``, a stem of 300 characters), so that such a file still
    runs instead of failing on a key it never set."""
    try:
        return check_run_name(stem) or "recipe"
    except ValueError:
        cleaned = "".join("_" if _unsafe_in_name(c) else c for c in stem)
        return cleaned[:MAX_NAME_LENGTH].strip(" .") or "recipe"


def pretrains(recipe: RecipeLike) -> bool:
    """Whether ``recipe`` pre-trains its encoder: the one place that decides it.

    True when it has a ``pretrain`` section whose objective trains (``none`` does not).
    The runner, the recipe's own checks and the memory estimate all ask this function.
    """
    return recipe.pretrain is not None and bool(recipe.pretrain.objective.trains)


FROZEN_ENCODER_MODES = ("probe", "probe_then_full")
"""The ``finetune.mode`` values that train the head alone on a frozen encoder for some
epochs (all of them, or the first ``probe_epochs``)."""


def freezes_encoder(mode: str) -> bool:
    """Whether fine-tuning in ``mode`` trains the head on a frozen encoder at some point:
    the one place that decides it. Such a mode needs a head that can train on a frozen
    encoder (``HeadSpec.probe_ready``) and no auxiliary terms (they train the encoder)."""
    return mode in FROZEN_ENCODER_MODES


def training_batch_sizes(recipe: RecipeLike) -> dict[str, int]:
    """The global ``batch_size`` of each stage of ``recipe`` that trains, by section
    (``pretrain`` when it pre-trains, then ``finetune``)."""
    stages = (["pretrain"] if pretrains(recipe) else []) + ["finetune"]
    return {stage: getattr(recipe, stage).train.batch_size for stage in stages}


def check_objective_dims(objective: Any, where: str) -> None:
    """Refuse a ``projector_dim`` / ``predictor_dim`` above :data:`MAX_OBJECTIVE_DIM`."""
    for name in ("projector_dim", "predictor_dim"):
        value = getattr(objective, name, None)
        if isinstance(value, int) and value > MAX_OBJECTIVE_DIM:
            raise ValueError(f"{where}.{name} must be at most {MAX_OBJECTIVE_DIM}, got {value}")


def check_pairing_views(views: list[Any], where: str) -> None:
    """Refuse a pairing view (``split``) anywhere but first in a views list."""
    for index, view in enumerate(views):
        if getattr(view, "pairs", False) and index > 0:
            raise ValueError(
                f"{where}.{index}: the {view.kind!r} view makes the two branches of a pair "
                "(each gets its own part of the sequence), so it must be the first entry of "
                "the views list, and there can be only one; move it to the top (the views "
                "after it then change each part on its own)"
            )


def _state_readers(recipe: Any) -> Iterator[tuple[str, Any]]:
    """``(recipe key, spec)`` of every objective and head of ``recipe`` that gets encoder
    outputs: the pre-training objective, the fine-tuning head and each auxiliary term."""
    if pretrains(recipe):
        yield "pretrain.objective", recipe.pretrain.objective
    yield "finetune.head", recipe.finetune.head
    for index, term in enumerate(recipe.finetune.auxiliary):
        yield f"finetune.auxiliary.{index}.objective", term.objective


def position_states_problem(recipe: Any, registry: Registry) -> str | None:
    """Why ``recipe`` cannot run because its backbone has no per-position states
    (``BackboneSpec.position_states``) and an objective or head reads them
    (``position_states_use``); None when it can. The one place that decides it."""
    backbone = recipe.backbone
    if getattr(backbone, "position_states", True):
        return None
    for where, spec in _state_readers(recipe):
        reads = getattr(spec, "position_states_use", None)
        use = reads(where) if callable(reads) else None
        if use:
            others = sorted(
                entry.kind
                for entry in registry.entries["backbone"].values()
                if getattr(entry.spec, "position_states", True)
            )
            alternative = f" ({', '.join(others)})" if others else ""
            return (
                f"backbone {backbone.kind!r} has no per-position states (it encodes a "
                f"sequence into one user vector), but {use}; or use a backbone with "
                f"per-position states{alternative}"
            )
    return None
