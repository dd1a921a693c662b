"""benchmarks/clue_strength.py: every pre-training variant and probe is a valid recipe."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from benchmark_scripts import load_benchmark

from clue_fw.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def strength() -> ModuleType:
    return load_benchmark("clue_strength")


def test_every_job_is_a_valid_probe_recipe(tmp_path: Path) -> None:
    module = strength()
    first = module.first_jobs(tmp_path, [0])
    assert module.probe_jobs(tmp_path, [0]) == [
        job for job in module.probe_jobs(tmp_path, [0]) if "random_encoder" in str(job.run_dir)
    ]  # nothing pre-trained yet: only the random encoder's probes can start
    for job in first:
        recipe = load_recipe(job.recipe, list(job.overrides))
        assert recipe.finetune.mode == "probe"
        encoder = job.run_dir / "pretrain" / "encoder.safetensors"
        encoder.parent.mkdir(parents=True)
        encoder.write_bytes(b"")
    probes = module.probe_jobs(tmp_path, [0])
    assert len(probes) == len(first) * (len(module.TASKS) - 1)
    for job in probes:
        recipe = load_recipe(job.recipe, list(job.overrides))
        assert recipe.finetune.mode == "probe" and recipe.pretrain is None
    summary = module.summarize(tmp_path, [0], "test")
    assert "not run" in module.markdown(summary)
