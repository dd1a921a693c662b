"""Compare the runs of two benchmark result files, run by run.

Usage (from the repository root)::

    python benchmarks/compare_results.py OLD.json NEW.json [OLD.json NEW.json ...]

Each file is a ``docs/results/*.json`` written by ``seeds_table.py`` or ``table2.py``:
``{"machine": ..., "runs": {name: [metrics.json, ...]}}``. Runs are matched by
(name, seed). A pair is *identical* when its validation and test metrics and its
best epoch are equal to every digit. The script prints each pair that differs and a
count, and exits with 1 when any matched pair differs. Used to check that the ranking
protocol change of issue 9 does not move the ML-1M numbers (docs/protocol.md)::

    git show 5126b45:docs/results/ml1m_table2.json > /tmp/old_table2.json
    python benchmarks/compare_results.py /tmp/old_table2.json docs/results/ml1m_table2.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

Key = tuple[str, int]


def runs_by_key(path: Path) -> dict[Key, dict[str, Any]]:
    """``(name, seed) -> metrics`` of every run recorded in a result file."""
    document = json.loads(path.read_text(encoding="utf-8"))
    found: dict[Key, dict[str, Any]] = {}
    for name, runs in document.get("runs", {}).items():
        for metrics in runs:
            found[(name, int(metrics["seed"]))] = metrics
    return found


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two runs' metrics (empty when they are identical)."""
    changed = []
    for split in ("valid", "test"):
        for metric in sorted(set(old.get(split, {})) | set(new.get(split, {}))):
            before, after = old.get(split, {}).get(metric), new.get(split, {}).get(metric)
            if before != after:
                changed.append(f"{split} {metric}: {before} -> {after}")
    if old.get("best_epoch") != new.get("best_epoch"):
        changed.append(f"best epoch: {old.get('best_epoch')} -> {new.get('best_epoch')}")
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", type=Path, help="OLD NEW pairs of result files")
    args = parser.parse_args()
    if len(args.files) % 2:
        parser.error("give result files in OLD NEW pairs")
    identical = differing = unmatched = 0
    for old_path, new_path in zip(args.files[::2], args.files[1::2], strict=True):
        old, new = runs_by_key(old_path), runs_by_key(new_path)
        for key in sorted(set(old) & set(new)):
            changed = differences(old[key], new[key])
            if changed:
                differing += 1
                print(f"{new_path.name} {key[0]} seed {key[1]}: " + "; ".join(changed))
            else:
                identical += 1
        unmatched += len(set(old) ^ set(new))
    print(f"{identical} runs identical, {differing} differ, {unmatched} without a partner")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
