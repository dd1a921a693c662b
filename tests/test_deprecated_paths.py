"""Names moved to another module stay importable from their old path, with a
DeprecationWarning that names the new one (issue 19: a plugin's imports keep working)."""

from __future__ import annotations

import importlib

import pytest

#: old module -> name -> the module that now holds it.
MOVED: dict[str, dict[str, str]] = {
    "clue_fw.runner": {"resolve_device": "clue_fw.devices"},
    "clue_fw.registry": {
        "plugin_call": "clue_fw.provenance",
        "describe_component": "clue_fw.provenance",
        "provider_of": "clue_fw.provenance",
        "is_builtin": "clue_fw.provenance",
    },
    "clue_fw.resources": {
        "available_memory": "clue_fw.memory",
        "check_synthetic_memory": "clue_fw.memory",
        "synthetic_parts": "clue_fw.memory",
    },
    "clue_fw.training.checkpoint": {
        "atomic_write_json": "clue_fw.file_safety",
        "atomic_write_bytes": "clue_fw.file_safety",
    },
}

MOVED["clue_fw.output_target"] = dict.fromkeys(
    (
        "NotRegularTarget",
        "check_output_target",
        "atomic_write",
        "atomic_write_bytes",
        "atomic_write_json",
        "is_run_directory",
        "run_directory_above",
        "check_user_output",
        "write_output",
    ),
    "clue_fw.file_safety",
)
MOVED["clue_fw.data.files"] = dict.fromkeys(
    ("MAX_FILE_ENV", "max_file_bytes", "human_size", "file_kind", "read_file", "read_json_file"),
    "clue_fw.file_safety",
)
MOVED["clue_fw.analysis.measures"] = dict.fromkeys(
    ("alignment", "uniformity", "effective_rank", "collapse_std", "pca_2d"),
    "clue_fw.metrics.representation",
)
MOVED["clue_fw.analysis.monitor"] = dict.fromkeys(
    ("RepresentationMonitor", "collapse_warning", "sample_windows", "MEASURES"),
    "clue_fw.training.monitor",
)
MOVED["clue_fw.analysis.history_csv"] = dict.fromkeys(
    ("write_history", "columns"), "clue_fw.running.history_csv"
)

CASES = [(old, name, new) for old, names in MOVED.items() for name, new in names.items()]


@pytest.mark.parametrize(("old", "name", "new"), CASES, ids=[f"{o}.{n}" for o, n, _ in CASES])
def test_moved_name_warns_and_is_the_same_object(old: str, name: str, new: str) -> None:
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {new}\.{name}"):
        found = getattr(module, name)
    assert found is getattr(importlib.import_module(new), name)


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    module = importlib.import_module("clue_fw.training.checkpoint")
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018
