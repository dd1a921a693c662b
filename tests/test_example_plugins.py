"""The example plugin packages under plugins/ work as real third-party plugins."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clue_fw.registry import build_registry, reset_registry
from clue_fw.runner import run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "clue-mean-pool"))
import clue_mean_pool  # noqa: E402


def test_mean_pool_plugin_trains_through_the_public_hooks(tmp_path: Path) -> None:
    registry = build_registry(extra_plugins=[(clue_mean_pool, "clue-mean-pool (test)")])
    assert registry.get("backbone", "mean_pool").provider == "clue-mean-pool (test)"
    reset_registry(registry)
    try:
        recipe = {
            "data": {"format": "synthetic", "num_users": 200, "num_items": 40, "max_len": 10},
            "backbone": {"kind": "mean_pool", "dim": 16},
            "pretrain": {
                "objective": {"kind": "clue", "projector_dim": 32, "predictor_dim": 8},
                "train": {"epochs": 1, "batch_size": 64},
            },
            "finetune": {
                "head": {"kind": "next_item", "exclude_seen": False},
                "train": {"epochs": 2, "batch_size": 64},
            },
        }
        result = run(recipe, out=tmp_path / "run", console=None)
    finally:
        reset_registry(None)
    assert set(result.metrics["test"]) == {"mrr@10", "recall@10", "ndcg@10"}
    assert (tmp_path / "run" / "finetune" / "best.safetensors").is_file()


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed("clue-mean-pool"), reason="example plugin not pip-installed")
def test_installed_plugin_is_listed_with_its_distribution() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CLUE_DISABLE_PLUGINS", "CLUE_PLUGINS")}
    listing = subprocess.run(
        [sys.executable, "-m", "clue_fw.cli", "list"], env=env, capture_output=True, text=True
    )
    assert listing.returncode == 0, listing.stderr
    assert "mean_pool" in listing.stdout and "clue-mean-pool 0.1.0" in listing.stdout

    env["CLUE_DISABLE_PLUGINS"] = "1"
    disabled = subprocess.run(
        [sys.executable, "-m", "clue_fw.cli", "list"], env=env, capture_output=True, text=True
    )
    assert "mean_pool" not in disabled.stdout

    env.pop("CLUE_DISABLE_PLUGINS")
    env["CLUE_PLUGINS"] = "some_other_plugin"
    allow_listed = subprocess.run(
        [sys.executable, "-m", "clue_fw.cli", "list"], env=env, capture_output=True, text=True
    )
    assert "mean_pool" not in allow_listed.stdout
