"""Checkpoints: safetensors tensors plus JSON metadata, written atomically.

No pickle anywhere: model weights, optimiser state and RNG states are tensors;
everything else (recipe, stage, epoch, optimiser hyper-parameters) is JSON in the
safetensors header metadata under the key ``clue_fw``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from clue_fw.errors import CheckpointError

FORMAT = "clue_fw.checkpoint/1"
METADATA_KEY = "clue_fw"


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temp file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        _fsync_directory(path.parent)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Save tensors (made contiguous, on CPU) and metadata atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    header = {METADATA_KEY: json.dumps({"format": FORMAT, **metadata})}
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(cpu, temp, metadata=header)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
        _fsync_directory(path.parent)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint; any unreadable or foreign file is a :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}.")
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
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], structure: Any
) -> None:
    """Rebuild an optimiser state saved by :func:`optimizer_tensors` and load it.

    Per-parameter state tensors (such as Adam's moments) must have their parameter's
    shape; any malformed entry is a :class:`CheckpointError`.
    """
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict[str, Any]] = {}
    try:
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                position = int(index)
                if not 0 <= position < len(parameters):
                    raise ValueError(f"{key}: the model has {len(parameters)} parameters")
                if value.dim() > 0 and value.shape != parameters[position].shape:
                    raise ValueError(
                        f"{key} has shape {tuple(value.shape)}, its parameter "
                        f"{tuple(parameters[position].shape)}"
                    )
                state.setdefault(position, {})[name] = value
        for index, values in structure.get("scalars", {}).items():
            state.setdefault(int(index), {}).update(values)
        optimizer.load_state_dict({"state": state, "param_groups": structure["param_groups"]})
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"Optimiser state in the checkpoint does not fit: {exc}.") from None
