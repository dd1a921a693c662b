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


def test_a_finished_run_sheds_the_files_it_was_told_to(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    module = pool()
    run = tmp_path / "run"

    def fake_run(command, stdout, stderr, env):  # type: ignore[no-untyped-def]
        for name in (
            "pretrain/encoder.safetensors",
            "pretrain/last.safetensors",
            "finetune/last.safetensors",
            "finetune/history.csv",
        ):
            (run / name).parent.mkdir(parents=True, exist_ok=True)
            (run / name).write_text("x")
        return 0

    monkeypatch.setattr(module.subprocess, "call", fake_run)
    job = module.Job(
        tmp_path / "r.yaml", run, prune=("finetune/*.safetensors", "pretrain/last.safetensors")
    )
    assert module.run_job(job, None, 0.0, None).status == "done"
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == ["finetune/history.csv", "pretrain/encoder.safetensors"]
    monkeypatch.setattr(module.subprocess, "call", lambda *a, **k: 1)  # a failed run keeps all
    failed = module.Job(tmp_path / "r.yaml", tmp_path / "failed", prune=("**/*",))
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "last.safetensors").write_text("x")
    assert module.run_job(failed, None, 0.0, None).status == "failed"
    assert (tmp_path / "failed" / "last.safetensors").exists()
