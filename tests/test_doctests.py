"""Each backbone, view and objective module opens with a usage example (issue 19, as
lightly does for each loss): its spec built with a BuildContext and one forward call.
So do the ranking and compiling helpers of the speed levers. The examples run here as
doctests, so they stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "clue_fw.backbones.transformer",
    "clue_fw.backbones.gru",
    "clue_fw.backbones.cnn",
    "clue_fw.backbones.bag",
    "clue_fw.augmentations.dropout",
    "clue_fw.augmentations.mask",
    "clue_fw.augmentations.crop",
    "clue_fw.augmentations.permute",
    "clue_fw.augmentations.split",
    "clue_fw.objectives.clue",
    "clue_fw.objectives.infonce",
    "clue_fw.objectives.masked_item",
    "clue_fw.objectives.none",
    "clue_fw.objectives.decorrelation",
    "clue_fw.metrics.scoring",
    "clue_fw.metrics.blockwise",
    "clue_fw.training.compile",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_example_runs(name: str) -> None:
    module = importlib.import_module(name)
    assert ">>>" in (module.__doc__ or ""), f"{name} has no usage example in its docstring"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
