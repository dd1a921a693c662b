"""benchmarks/quality.py: every variant is a valid recipe; the choice uses validation only."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import load_benchmark

from clue_fw.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def quality() -> ModuleType:
    return load_benchmark("quality")


VARIANTS = [
    (dataset, variant) for dataset, variants in quality().VARIANTS.items() for variant in variants
]


@pytest.mark.parametrize(("dataset", "variant"), VARIANTS)
def test_every_variant_is_a_valid_recipe(dataset: str, variant: str) -> None:
    module = quality()
    sweep = module.Sweep(dataset, Path("runs"))
    job = sweep.job(variant, 0)
    recipe = load_recipe(job.recipe, list(job.overrides))
    assert module.family(job.overrides) in module.FAMILIES
    assert (recipe.pretrain is not None) == (module.family(job.overrides) == "pretrain")


def fake_run(directory: Path, valid: float, test: float, monitor: str) -> None:
    directory.mkdir(parents=True)
    metrics = {
        "valid": {monitor: valid, "recall@20": valid},
        "test": {monitor: test, "recall@20": test},
        "best_epoch": 3,
        "seconds": 1.0,
    }
    (directory / "metrics.json").write_text(json.dumps(metrics))


def test_the_choice_is_made_on_validation_and_per_family(tmp_path: Path) -> None:
    module = quality()
    sweep = module.Sweep("beauty", tmp_path)
    variants = list(module.VARIANTS["beauty"])
    assert sweep.chosen() is None and sweep.seed_jobs() == []
    for index, variant in enumerate(variants):
        # the last variant has the best test score but the worst validation score
        valid = 0.0 if variant == variants[-1] else 0.01 * (index + 1)
        test = 1.0 if variant == variants[-1] else 0.01
        fake_run(sweep.run_dir(variant, 0), valid, test, "ndcg@20")
    choice = sweep.chosen()
    assert choice is not None
    scored = [v for v in variants if v != variants[-1]]
    assert choice["best"] == scored[-1]
    for name, variant in choice.items():
        if name != "best":
            assert module.family(module.VARIANTS["beauty"][variant]) == name
    seeded = {(job.run_dir.parent.name, job.overrides[0]) for job in sweep.seed_jobs()}
    assert (choice["best"], "seed=1") in seeded and (choice["best"], "seed=2") in seeded
    summary = module.summarize(sweep, "test")
    assert summary["chosen"]["best"]["variant"] == choice["best"]
    assert "not met" in module.markdown(summary)
