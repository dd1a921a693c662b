"""Module state through clue_fw's safetensors checkpoints, as a run saves and resumes it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from clue_fw.training.checkpoint import (
    load_checkpoint,
    load_module_tensors,
    module_tensors,
    save_checkpoint,
)


def assert_same_state(first: nn.Module, second: nn.Module, what: str) -> None:
    """The two modules hold the same tensors under the same names."""
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys(), f"{what}: state names differ ({sorted(a.keys() ^ b.keys())})"
    for name in a:
        assert torch.equal(a[name], b[name]), f"{what}: {name} differs"


def assert_state_roundtrips(
    make: Callable[[int], nn.Module], folder: Path, label: str
) -> tuple[nn.Module, nn.Module]:
    """``make(seed)`` builds the module under ``torch.manual_seed(seed)``.

    The same seed must give the same state, and a module built with another seed must
    take on the first one's state, tensor for tensor, from a safetensors checkpoint.
    Returns the first module and the restored one.
    """
    first, again = make(3), make(3)
    assert_same_state(first, again, f"{label} built twice under the same seed")
    path = folder / "module.safetensors"
    save_checkpoint(path, module_tensors(first, "m."), {"stage": "contract"})
    other = make(4)
    tensors, metadata = load_checkpoint(path)
    assert metadata["stage"] == "contract"
    load_module_tensors(other, tensors, "m.", path)
    assert_same_state(first, other, f"{label} after a safetensors round trip")
    return first, other
