"""benchmarks/serving.py: the serving table, and one real pass on the quickstart run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def test_the_table_divides_users_by_the_commands_own_seconds(tmp_path: Path) -> None:
    serving = load_benchmark("serving")
    record = {
        "machine": {"gpu": "G", "cpu_cores": 16, "torch": "t", "date": "d"},
        "command": "c",
        "recipe": "r.yaml",
        "users": 1_000_000,
        "items": 1_000_000,
        "results": [
            {"command": "clue embed RUN --out users.npy", "users": 1_000_000, "seconds": 20.0,
             "process_seconds": 31.5, "peak_host_gib": 2.5, "peak_cuda_gib": 1.25},
            {"command": "clue neighbours x", "users": 100_000, "seconds": 4.0,
             "process_seconds": 9.0, "peak_host_gib": 1.0, "peak_cuda_gib": None},
        ],
    }  # fmt: skip
    serving.write(tmp_path / "serving", record)
    table = (tmp_path / "serving.md").read_text()
    assert (
        "| `clue embed RUN --out users.npy` | 1,000,000 | 20.0 | 50,000 | 31.5 | 2.50 | 1.25 |"
        in table
    )
    assert "| `clue neighbours x` | 100,000 | 4.0 | 25,000 | 9.0 | 1.00 | - |" in table
    assert json.loads((tmp_path / "serving.json").read_text())["users"] == 1_000_000


@pytest.mark.slow
def test_every_command_serves_the_quickstart_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serving = load_benchmark("serving")
    out = tmp_path / "serving"
    argv = ["serving.py", "--recipe", "recipes/quickstart.yaml", "--run", str(tmp_path / "run"),
            "--candidates", "50", "--neighbour-users", "200", "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(ROOT)
    serving.main()
    record = json.loads(out.with_suffix(".json").read_text())
    assert [row["users"] for row in record["results"]] == [1000, 1000, 1000, 200]
    assert all(row["exit"] == 0 and row["seconds"] > 0 for row in record["results"])
    assert record["items"] == 200
    candidates = set((tmp_path / "run_serving" / "items.txt").read_text().split())
    recommended = (tmp_path / "run_serving" / "recs_candidates.csv").read_text().splitlines()[1:]
    assert {row.split(",")[2] for row in recommended} <= candidates
    monkeypatch.setattr(sys, "argv", argv)  # a second call reuses the finished run
    serving.main()
