"""Which device a run, an evaluation or a loaded run computes on.

A recipe's ``device`` (``auto``, ``cpu``, ``mps``, ``cuda`` or ``cuda:N``) becomes a
``torch.device`` here, for ``clue run`` (:mod:`clue_fw.runner`), ``clue evaluate`` and
``load_run`` (:mod:`clue_fw.inference`) alike; under torchrun each process takes its own
GPU (:func:`~clue_fw.distributed.rank_device`). It sits below the runner, so inference
resolves a device without importing the runner.
"""

from __future__ import annotations

import torch

from clue_fw.distributed import Launch, rank_device
from clue_fw.errors import RecipeError


def resolve_device(name: str) -> torch.device:
    """``name`` as a device that is there; ``auto``: CUDA where available, else the CPU.
    A device that is not one, or not available, is a RecipeError saying what to use."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):  # the recipe validator refuses these first
        raise RecipeError(
            f"device {name[:40]!r} is not a device; use auto, cpu, mps, cuda or cuda:N."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(
            f"device {name!r} was requested but CUDA is not available; use auto or cpu."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RecipeError(
            f"device {name!r} was requested but MPS is not available; use auto or cpu."
        )
    return device


def process_device(requested: str, launch: Launch | None) -> torch.device:
    """The device of this process: ``requested`` (a recipe's ``device``), and under
    torchrun this process's own GPU (:func:`~clue_fw.distributed.rank_device`)."""
    device = resolve_device(requested)
    return device if launch is None else rank_device(device, requested, launch)
