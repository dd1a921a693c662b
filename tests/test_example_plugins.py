"""The example plugin packages under plugins/ work as real third-party plugins."""

from __future__ import annotations

import copy
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from clue_fw.registry import build_registry, reset_registry
from clue_fw.runner import run

ROOT = Path(__file__).resolve().parents[1]
#: Example plugin distribution (its folder under plugins/) -> the (family, kind) it registers.
EXAMPLES = {
    "clue-mean-pool": ("backbone", "mean_pool"),
    "clue-reverse-view": ("augmentation", "reverse"),
    "clue-barlow": ("objective", "barlow_twins"),
    "clue-cosine-head": ("head", "cosine_next_item"),
}
for _folder in EXAMPLES:
    sys.path.insert(0, str(ROOT / "plugins" / _folder))
import clue_barlow  # noqa: E402
import clue_cosine_head  # noqa: E402
import clue_mean_pool  # noqa: E402
import clue_reverse_view  # noqa: E402

#: A recipe that pre-trains and fine-tunes in about a second.
SMALL_RECIPE: dict[str, Any] = {
    "data": {"format": "synthetic", "num_users": 200, "num_items": 40, "max_len": 10},
    "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2},
    "pretrain": {
        "objective": {"kind": "clue", "projector_dim": 32, "predictor_dim": 8},
        "views": [{"kind": "dropout"}],
        "train": {"epochs": 1, "batch_size": 64},
    },
    "finetune": {
        "head": {"kind": "next_item", "exclude_seen": "none"},
        "train": {"epochs": 2, "batch_size": 64},
    },
}


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


def _train_with_plugin(
    plugin: ModuleType, name: str, path: tuple[str, ...], component: dict[str, Any], out: Path
) -> dict[str, Any]:
    """Run SMALL_RECIPE with ``component`` at ``path`` (the plugin registered in code)."""
    registry = build_registry(extra_plugins=[(plugin, f"{name} (test)")])
    reset_registry(registry)
    recipe = copy.deepcopy(SMALL_RECIPE)
    node = recipe
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = component
    try:
        result = run(recipe, out=out, console=None)
    finally:
        reset_registry(None)
    assert (out / "finetune" / "best.safetensors").is_file()
    return result.metrics  # type: ignore[no-any-return]


def test_reverse_view_plugin_pretrains_through_the_public_hooks(tmp_path: Path) -> None:
    views = [{"kind": "reverse", "rho": 0.5, "probability": 0.8}, {"kind": "dropout"}]
    metrics = _train_with_plugin(
        clue_reverse_view, "clue-reverse-view", ("pretrain", "views"), views, tmp_path / "run"
    )
    assert set(metrics["test"]) == {"mrr@10", "recall@10", "ndcg@10"}
    assert (tmp_path / "run" / "pretrain").is_dir()


def test_barlow_plugin_pretrains_through_the_public_hooks(tmp_path: Path) -> None:
    objective = {"kind": "barlow_twins", "projector_dim": 32}
    metrics = _train_with_plugin(
        clue_barlow, "clue-barlow", ("pretrain", "objective"), objective, tmp_path / "run"
    )
    assert set(metrics["test"]) == {"mrr@10", "recall@10", "ndcg@10"}
    assert (tmp_path / "run" / "pretrain").is_dir()


def test_cosine_head_plugin_finetunes_through_the_public_hooks(tmp_path: Path) -> None:
    head = {"kind": "cosine_next_item", "temperature": 0.2, "exclude_seen": "none"}
    metrics = _train_with_plugin(
        clue_cosine_head, "clue-cosine-head", ("finetune", "head"), head, tmp_path / "run"
    )
    assert set(metrics["test"]) == {"mrr@10", "recall@10", "ndcg@10"}


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
    for distribution, (_, kind) in EXAMPLES.items():
        if _installed(distribution):
            assert kind in listing.stdout and f"{distribution} 0.1.0" in listing.stdout

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


def test_clue_recommend_serves_the_cosine_head_plugin(tmp_path: Path) -> None:
    """A head whose spec says it ranks items (``HeadSpec.ranking``) is served by ``clue
    recommend`` and ``load_run(...).recommend``: the example plugin's cosine head, which
    inference knows nothing about (no isinstance on a head class)."""
    from clue_fw.cli import app
    from clue_fw.inference import load_run

    reset_registry(build_registry(extra_plugins=[(clue_cosine_head, "clue-cosine-head (test)")]))
    try:
        recipe = copy.deepcopy(SMALL_RECIPE)
        recipe["finetune"]["head"] = {"kind": "cosine_next_item", "temperature": 0.2}
        run_dir = run(recipe, out=tmp_path / "run", console=None).run_dir
        loaded = load_run(run_dir, device="cpu")
        assert loaded.exclude_seen == "history"  # the plugin's own protocol is the default
        result = loaded.recommend_run_users(k=4)
        data = loaded.task_data().sequences
        assert result.items.shape == (data.num_users, 4) and result.exclude_seen == "history"
        with torch.no_grad():  # top-1: the argmax of the plugin's cosine scores, seen excluded
            windows = data.sequences.recent_windows(loaded.max_len)
            scores = loaded.head.scores(loaded.encoder, windows)
        rows, seen = data.sequences.batch_pairs(torch.arange(data.num_users))
        scores[rows, seen - 1] = float("-inf")
        best = scores.max(dim=1)
        torch.testing.assert_close(result.scores[:, 0], best.values, rtol=0, atol=1e-6)
        top = torch.from_numpy(loaded.catalogue.to_raw(best.indices + 1))
        assert torch.equal(result.items[:, 0], top)
        out = tmp_path / "recommendations.csv"
        args = ["recommend", str(run_dir), "--out", str(out), "-k", "3", "--device", "cpu"]
        app(args, standalone_mode=False)
        lines = out.read_text().splitlines()
        assert lines[0] == "user,rank,item,score" and len(lines) == 1 + 3 * data.num_users
    finally:
        reset_registry(None)
