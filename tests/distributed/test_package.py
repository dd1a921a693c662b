"""clue_fw.distributed is a package of one job a module (issue 19): every name the old
module had is importable from the package, as the very object of the module that holds it."""

from __future__ import annotations

import importlib

import pytest

import clue_fw.distributed as package

HOMES = {
    "launch": (
        "TIMEOUT_ENV",
        "FORCE_ENV",
        "Launch",
        "launch_from_environment",
        "check_batch_sizes",
        "rank_device",
        "session",
    ),
    "failure": (
        "FAILURE_KEY",
        "STORE_TIMEOUT_S",
        "LEAVE_GRACE_S",
        "announce_failure",
        "leave_after_failure",
        "lost_a_process",
        "store_reachable",
        "failure_elsewhere",
    ),
    "processes": ("Distributed", "SINGLE"),
    "steps": ("ShardedStep", "GlobalView"),
    "gradients": ("BUCKET_BYTES", "GradientSync"),
    "batchnorm": ("GlobalBatchNorm1d", "convert_batchnorm"),
}
CASES = [(module, name) for module, names in HOMES.items() for name in names]


@pytest.mark.parametrize(("module", "name"), CASES)
def test_names_keep_their_old_path(module: str, name: str) -> None:
    home = importlib.import_module(f"clue_fw.distributed.{module}")
    assert getattr(package, name) is getattr(home, name)


def test_every_exported_name_has_one_home() -> None:
    assert sorted(name for _, name in CASES) == sorted(package.__all__)
