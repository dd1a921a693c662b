"""Refusals in a data-parallel run stop every process with exit code 2, none hangs."""

from __future__ import annotations

from pathlib import Path

import pytest
from dp_launch import run_ranks
from dp_recipe import write_recipe


def test_batch_size_not_divisible_by_the_processes_is_refused_on_every_rank(
    tmp_path: Path,
) -> None:
    recipe = write_recipe(tmp_path, finetune__train__batch_size=63)
    results = run_ranks(["run", str(recipe), "--out", str(tmp_path / "run")], tmp_path)
    for rank, result in enumerate(results):
        assert result.returncode == 2, (rank, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
    # Every process meets the refusal before they join: rank 0 alone says it.
    assert "finetune.train.batch_size: 63" in results[0].stderr, results[0].stderr[-2000:]
    assert "multiple of 2" in results[0].stderr
    assert "error:" not in results[1].stderr, results[1].stderr[-2000:]
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.slow
def test_a_refusal_of_rank_0_stops_the_other_ranks(tmp_path: Path) -> None:
    """Only rank 0 opens the run directory; its refusal (here: --resume of a directory
    that holds no run) reaches rank 1, which exits with the same code; rank 0 alone
    prints the message."""
    recipe = write_recipe(tmp_path)
    not_a_run = tmp_path / "not_a_run"
    not_a_run.mkdir()
    (not_a_run / "notes.txt").write_text("mine")
    results = run_ranks(["run", str(recipe), "--resume", str(not_a_run)], tmp_path)
    for rank, result in enumerate(results):
        assert result.returncode == 2, (rank, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
    assert "holds no recipe.yaml" in results[0].stderr, results[0].stderr[-2000:]
    assert "error:" not in results[1].stderr, results[1].stderr[-2000:]
    assert sorted(p.name for p in not_a_run.iterdir()) == ["notes.txt"]
