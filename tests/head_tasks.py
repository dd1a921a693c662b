"""Task data for every registered head on synthetic sequences, for registry-wide tests.

Heads that read files of their own get small generated ones: ``profile`` a
``user,label`` CSV, ``cold_start`` a ``user item`` target file. Any other head
(a plugin's) is built from its defaults.
"""

from __future__ import annotations

from pathlib import Path

from clue_fw.components import HeadSpec, TaskData
from clue_fw.data.dataset import SequenceData
from clue_fw.registry import Registry


def head_spec_and_data(
    registry: Registry, kind: str, data: SequenceData, folder: Path, **fields: object
) -> tuple[HeadSpec, TaskData]:
    spec_class = registry.get("head", kind).spec
    if kind == "profile":
        lines = ["user,label"] + [f"{u},c{int(u) % 3}" for u in data.user_ids]
        (folder / "labels.csv").write_text("\n".join(lines) + "\n")
        fields = {"labels": {"path": "labels.csv"}, **fields}
    elif kind == "cold_start":
        lines = [f"{u} {100 + (int(u) + k) % 7}" for u in data.user_ids for k in range(3)]
        (folder / "target.txt").write_text("\n".join(lines) + "\n")
        fields = {"target": {"format": "pairs", "path": "target.txt"}, **fields}
    spec = spec_class.model_validate({"kind": kind, **fields})
    assert isinstance(spec, HeadSpec)
    return spec, spec.prepare(data, folder)
