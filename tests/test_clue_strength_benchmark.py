"""benchmarks/clue_strength.py: every pre-training variant and probe is a valid recipe."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from clue_fw.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def strength():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        path = ROOT / "benchmarks" / "clue_strength.py"
        spec = importlib.util.spec_from_file_location("clue_strength", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["clue_strength"] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


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
