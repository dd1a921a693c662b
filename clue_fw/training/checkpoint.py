"""Checkpoints: safetensors tensors plus JSON metadata, written atomically.

No pickle anywhere: model weights, optimiser state and RNG states are tensors;
everything else (recipe, stage, epoch, optimiser hyper-parameters) is JSON in the
safetensors header metadata under the key ``clue_fw``.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from clue_fw._deprecated import moved_names
from clue_fw.errors import CheckpointError
from clue_fw.file_safety import atomic_write, file_kind

FORMAT = "clue_fw.checkpoint/1"
METADATA_KEY = "clue_fw"

# The atomic writers live with the one atomic write they use.
__getattr__ = moved_names(
    __name__,
    {"atomic_write_json": "clue_fw.file_safety", "atomic_write_bytes": "clue_fw.file_safety"},
)


def save_checkpoint(
    path: Path,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, Any],
    create_parent: bool = True,
) -> None:
    """Save tensors (made contiguous, on CPU) and metadata atomically (``create_parent``:
    as in :func:`atomic_write`)."""
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    header = {METADATA_KEY: json.dumps({"format": FORMAT, **metadata})}
    atomic_write(path, lambda temp: save_file(cpu, str(temp), metadata=header), create_parent)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint; any unreadable or foreign file is a :class:`CheckpointError`."""
    try:
        found = os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise CheckpointError(f"Checkpoint not found: {path}.") from None
        reason = exc.strerror or str(exc)
        raise CheckpointError(f"Cannot read the checkpoint {path}: {reason}.") from None
    except ValueError as exc:  # an embedded NUL byte
        raise CheckpointError(f"Cannot read the checkpoint {path!r}: {exc}.") from None
    if not stat.S_ISREG(found.st_mode):
        what = file_kind(found.st_mode, plain=False)
        raise CheckpointError(
            f"{path} is not a regular file (it is {what}); a checkpoint is a .safetensors file."
        )
    foreign = _foreign_format(path)
    if foreign:
        raise CheckpointError(
            f"{path} is {foreign}, not a safetensors checkpoint. clue_fw never loads pickle "
            "files; write weights with safetensors instead."
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint ({exc}){_truncation(path)}. It may "
            "be truncated or in another format; clue_fw never loads pickle files."
        ) from None
    try:
        metadata = json.loads(header[METADATA_KEY])
        if not isinstance(metadata, dict):
            raise TypeError(f"a JSON {type(metadata).__name__}, not an object")
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format {metadata.get('format')!r}")
    except RecursionError:
        raise CheckpointError(
            f"{path} is a safetensors file but not a clue_fw checkpoint (metadata: its JSON "
            "nests too deeply to read)."
        ) from None
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{path} is a safetensors file but not a clue_fw checkpoint (metadata: {exc})."
        ) from None
    return tensors, metadata


def _foreign_format(path: Path) -> str | None:
    """Name a well-known non-safetensors format from the first bytes of ``path``."""
    with open(path, "rb") as handle:
        start = handle.read(9)
    header_length = int.from_bytes(start[:8], "little")
    if start[8:9] == b"{" and 8 + header_length <= path.stat().st_size:
        # A safetensors file: 8-byte header length, then the JSON header. Its length
        # may well start with 0x80 0x03 (an 896-byte header), which pickle also does.
        return None
    if start[:1] == b"\x80" and start[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle file"
    if start[:4] == b"PK\x03\x04":
        return "a zip archive (as written by torch.save, which pickles)"
    return None


def _truncation(path: Path) -> str:
    """``"; the file is truncated ..."`` when its header promises more bytes than it holds."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if size < 8:
                return f"; the file holds only {size} bytes"
            if 8 + length > size:
                return f"; the file holds {size:,} bytes, fewer than its {length:,}-byte header"
            header = json.loads(handle.read(length))
        end = max(
            (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
            default=0,
        )
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OSError):
        return ""
    needed = 8 + length + end
    if size < needed:
        return f"; the file is truncated: {size:,} of the {needed:,} bytes its header declares"
    return ""


def module_tensors(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{name}": t for name, t in module.state_dict().items()}


def load_module_tensors(
    module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, source: Path | str
) -> None:
    """Load ``prefix``-ed tensors into ``module``, failing clearly on any mismatch."""
    expected = module.state_dict()
    found = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = []
    for name in sorted(set(expected) & set(found)):
        have, want = found[name], expected[name]
        if have.shape != want.shape:
            wrong.append(
                f"{prefix}{name} has shape {tuple(have.shape)} in the checkpoint but "
                f"{tuple(want.shape)} in the model"
            )
        if have.dtype != want.dtype:
            wrong.append(
                f"{prefix}{name} has dtype {have.dtype} in the checkpoint but {want.dtype} in "
                "the model"
            )
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(
                f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
            )
        if unexpected:
            problems.append(
                f"unexpected {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else "")
            )
        if wrong:
            problems.append("; ".join(wrong[:5]) + (" ..." if len(wrong) > 5 else ""))
        raise CheckpointError(
            f"Checkpoint {source} does not match the recipe's model: {'; '.join(problems)}. "
            "Was it made with another backbone, dimension, max_len or dataset?"
        )
    module.load_state_dict(found, strict=True)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    """Split an optimiser state into tensors and a JSON-able rest."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    structure: Any,
    source: Path | str = "the checkpoint",
) -> None:
    """Restore the per-parameter state saved by :func:`optimizer_tensors` into
    ``optimizer``, the one the recipe built.

    Only the per-parameter state (such as Adam's moments and step counts) is taken from
    the file; every hyper-parameter (``lr``, ``betas``, ``weight_decay``...) stays the
    recipe's, whatever the file says. The structure is checked first (group and
    parameter counts, indices, types) and every state tensor against its parameter
    (shape and dtype; a step count is a finite, non-negative scalar): anything else is a
    :class:`CheckpointError` naming ``source``.
    """

    def bad(what: str) -> CheckpointError:
        return CheckpointError(
            f"Optimiser state in {source} does not fit this recipe's model: {what}. It was "
            "not written by this run's clue_fw, or it was edited. Start a new run (--out)."
        )

    groups = optimizer.param_groups
    if not isinstance(structure, dict):
        raise bad(f"'optimizer' must be a mapping, not {type(structure).__name__}")
    saved_groups = structure.get("param_groups")
    if not isinstance(saved_groups, list) or len(saved_groups) != len(groups):
        count = len(saved_groups) if isinstance(saved_groups, list) else "no list of"
        raise bad(f"it has {count} parameter groups, the optimiser {len(groups)}")
    parameters: list[torch.Tensor] = []
    new_groups = []
    for number, (saved, group) in enumerate(zip(saved_groups, groups, strict=True)):
        want = list(range(len(parameters), len(parameters) + len(group["params"])))
        params = saved.get("params") if isinstance(saved, dict) else None
        if params != want or not all(type(index) is int for index in params):
            raise bad(
                f"parameter group {number} must list parameters {want[:1]}..{want[-1:]} "
                f"({len(want)} of them)"
            )
        parameters += group["params"]
        # Hyper-parameters: the recipe's (the live group's), never the file's.
        new_groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": want})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        parts = key.split(".", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isidentifier():
            raise bad(f"malformed state tensor name {key!r}")
        position, name = int(parts[1]), parts[2]
        if position >= len(parameters):
            raise bad(f"{key}: the model has {len(parameters)} parameters")
        parameter = parameters[position]
        if value.dim() == 0:
            if not value.is_floating_point() or not bool(torch.isfinite(value)) or value < 0:
                raise bad(f"{key} must be a finite, non-negative float, not {value.item()!r}")
        elif value.shape != parameter.shape or value.dtype != parameter.dtype:
            raise bad(
                f"{key} is {value.dtype} {tuple(value.shape)}, its parameter "
                f"{parameter.dtype} {tuple(parameter.shape)}"
            )
        state.setdefault(position, {})[name] = value
    scalars = structure.get("scalars", {})
    if not isinstance(scalars, dict):
        raise bad("'scalars' must be a mapping")
    for index, values in scalars.items():
        if not (isinstance(index, str) and index.isdigit() and int(index) < len(parameters)):
            raise bad(f"'scalars' names no parameter: {index!r}")
        if not isinstance(values, dict) or not all(
            isinstance(k, str)
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
            for k, v in values.items()
        ):
            raise bad(f"'scalars.{index}' must map names to finite numbers")
        state.setdefault(int(index), {}).update(values)
    names = {frozenset(values) for values in state.values()}
    if len(names) > 1:
        raise bad("its parameters have different kinds of state (a state tensor is missing)")
    try:
        optimizer.load_state_dict({"state": state, "param_groups": new_groups})
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
        raise bad(str(exc)) from None
