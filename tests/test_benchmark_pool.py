"""benchmarks/pool.py: GPU assignment, skipping finished runs, the start deadline."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def pool() -> ModuleType:
    return load_benchmark("pool")


def test_a_new_process_takes_the_least_busy_gpu() -> None:
    slots = pool()._GpuSlots(2)
    first, second, third = slots.take(), slots.take(), slots.take()
    assert (first, second) == (0, 1) and third == 0
    slots.give_back(1)
    assert slots.take() == 1


def test_finished_runs_are_skipped_and_interrupted_ones_resumed(tmp_path: Path) -> None:
    module = pool()
    done = tmp_path / "done"
    done.mkdir()
    (done / "metrics.json").write_text("{}")
    half = tmp_path / "half"
    half.mkdir()
    (half / "recipe.yaml").write_text("")
    recipe = tmp_path / "r.yaml"
    assert module.run_job(module.Job(recipe, done), None, 0.0, None).status == "skipped"
    command = module.job_command(module.Job(recipe, half, ("seed=1",)))
    assert command[-4:] == ["--set", "seed=1", "--resume", str(half)]
    assert module.job_command(module.Job(recipe, tmp_path / "new"))[-2] == "--out"


def test_no_job_starts_after_the_deadline(tmp_path: Path) -> None:
    module = pool()
    results = module.run_jobs(
        [module.Job(tmp_path / "r.yaml", tmp_path / "a")], workers=1, deadline_s=-1.0
    )
    assert [result.status for result in results] == ["not started"]
    assert not (tmp_path / "a").exists()
