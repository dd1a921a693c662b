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


def fake_runs(module: ModuleType, monkeypatch, behaviour) -> list[str]:  # type: ignore[no-untyped-def]
    """Replace the ``clue run`` process by ``behaviour(name)`` (returns the exit code; a
    finished run writes metrics.json); returns the run names in the order they started."""
    started: list[str] = []

    def fake_call(command, stdout, stderr, env):  # type: ignore[no-untyped-def]
        run_dir = Path(command[-1])
        started.append(run_dir.name)
        code = behaviour(run_dir.name)
        if code == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "metrics.json").write_text("{}")
        return code

    monkeypatch.setattr(module.subprocess, "call", fake_call)
    return started


def test_a_fine_tuning_waits_for_its_pretraining_and_the_slot_goes_on(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import threading

    module = pool()
    z2_started, ft_started = threading.Event(), threading.Event()

    def behaviour(name: str) -> int:
        if name == "pre":  # still running while the other slot works through z1, z2
            assert z2_started.wait(10)
        elif name == "z2":
            z2_started.set()
        elif name == "ft":
            ft_started.set()
        elif name == "z3":  # holds its slot until the fine-tuning has started
            assert ft_started.wait(10)
        return 0

    started = fake_runs(module, monkeypatch, behaviour)
    recipe = tmp_path / "r.yaml"
    pre = tmp_path / "pre"
    jobs = [
        module.Job(recipe, pre),
        module.Job(recipe, tmp_path / "ft", after=(pre,)),
        *(module.Job(recipe, tmp_path / f"z{i}") for i in range(1, 6)),
    ]
    results = module.run_jobs(jobs, workers=2, quiet=True)
    assert [r.status for r in results] == ["done"] * 7  # in the order given
    assert started.index("z1") < started.index("ft")  # the free slot did not wait
    assert started.index("ft") < started.index("z4")  # once ready, it goes first


def test_a_fine_tuning_of_a_failed_or_missing_pretraining_is_not_started(
    tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    module = pool()
    started = fake_runs(module, monkeypatch, lambda name: 3 if name == "pre" else 0)
    recipe = tmp_path / "r.yaml"
    pre, elsewhere, done_before = tmp_path / "pre", tmp_path / "elsewhere", tmp_path / "old"
    done_before.mkdir()
    (done_before / "metrics.json").write_text("{}")
    jobs = [
        module.Job(recipe, pre),
        module.Job(recipe, tmp_path / "ft", after=(pre,)),
        module.Job(recipe, tmp_path / "lone", after=(elsewhere,)),
        module.Job(recipe, tmp_path / "from_old", after=(done_before,)),
    ]
    results = {r.job.run_dir.name: r for r in module.run_jobs(jobs, workers=1)}
    assert results["pre"].status == "failed"
    assert results["ft"].status == "not started"
    assert results["ft"].reason == f"it needs {pre} failed"
    assert results["lone"].reason == (
        f"it needs {elsewhere} is not part of this sweep and has not finished"
    )
    assert results["from_old"].status == "done"
    assert started == ["pre", "from_old"]
    out = capsys.readouterr().out
    assert f"{tmp_path / 'ft'}: not started, it needs {pre} failed" in out
    assert "2 runs not started: a run they need failed" in out
