"""``python flaky_clue.py ARGS``: ``clue ARGS`` with the flaky backbone plugin installed.

The data-parallel crash tests start this script as the processes of a run (as torchrun
would): the plugin of ``tests/bad_inputs/input_paths.py`` (``kind: flaky``) reaches
clue_fw through a fake entry point, and raises in ``forward`` on the rank that
``$CLUE_TEST_BACKBONE_RAISES`` names (``rank1``).
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bad_inputs"))


def main() -> None:
    from input_paths import FLAKY

    import clue_fw.registry as registry

    def entry_points(group: str) -> list[object]:
        return list(FLAKY) if group == registry.ENTRY_POINT_GROUP else []

    registry.metadata = type("Metadata", (), {"entry_points": staticmethod(entry_points)})  # type: ignore[assignment]
    from clue_fw.cli import main as clue_main

    clue_main(sys.argv[1:])


if __name__ == "__main__":
    assert metadata  # the real module stays importable for everything else
    main()
