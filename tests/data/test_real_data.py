"""Checks against the real datasets, when a data root holds them (CI points
CLUE_DATA_DIR at ../shared/data). Marked slow; skipped without the files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clue_fw.data.dataset import build_sequence_data
from clue_fw.data.readers import read_interaction_table, read_sequence_file

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CLUE_DATA_DIR", "/nonexistent"))
ML1M = DATA / "ml-1m" / "ml-1m_sequences.txt"
ML100K = DATA / "ml-100k" / "u.data"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not ML1M.is_file(), reason="ml-1m not under CLUE_DATA_DIR")
def test_ml1m_sequences_match_the_published_statistics() -> None:
    data = build_sequence_data(read_sequence_file(ML1M))
    assert (data.num_users, data.num_items, data.num_interactions) == (6040, 3706, 1_000_209)
    assert int(data.sequences.values.min()) == 1 and int(data.sequences.values.max()) == 3706


@pytest.mark.skipif(not ML100K.is_file(), reason="ml-100k not under CLUE_DATA_DIR")
def test_ml100k_interaction_table_matches_the_published_statistics() -> None:
    raw = read_interaction_table(ML100K)
    data = build_sequence_data(raw)
    assert (data.num_users, data.num_items, data.num_interactions) == (943, 1682, 100_000)


@pytest.mark.skipif(not ML1M.is_file(), reason="ml-1m not under CLUE_DATA_DIR")
def test_ml30_dropout_runs_end_to_end_on_ml1m(tmp_path: Path) -> None:
    """The shipped recipe on real data, shortened to one epoch per stage on the CPU."""
    command = [
        sys.executable,
        "-m",
        "clue_fw.cli",
        "run",
        str(ROOT / "recipes" / "ml30_dropout.yaml"),
        "--out",
        str(tmp_path / "run"),
        "--set",
        "device=cpu",
        "--set",
        "pretrain.train.epochs=1",
        "--set",
        "pretrain.train.history=recent",
        "--set",
        "finetune.train.epochs=1",
        "--set",
        "finetune.train.history=recent",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "CLUE_DATA_DIR": str(DATA)}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert set(metrics[split]) >= {"mrr@10", "recall@10", "ndcg@10"}
    # One epoch on recent windows already beats a random ranker (10 / 3706 = 0.0027).
    assert metrics["test"]["recall@10"] > 0.01
