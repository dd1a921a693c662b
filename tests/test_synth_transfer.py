"""End to end: every recipe of recipes/synth_transfer runs (tiny sizes) on the files that
`clue data synth --attributes --cold-start` writes, so the profile and cold_start heads
read the planted attributes and the target domain as they are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_main import main_exit

from clue_fw.data.synth import write_synthetic_sequences
from clue_fw.recipe import load_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "recipes" / "synth_transfer").glob("*.yaml"))
TINY = [
    "device=cpu",
    "data.max_len=8",
    "backbone.dim=16",
    "finetune.train.epochs=2",
    "finetune.train.batch_size=64",
    "finetune.train.precision=fp32",
    "finetune.eval.batch_size=64",
]
TINY_TRANSFORMER = ["backbone.blocks=1", "backbone.heads=2"]  # not the bag's (nfm) keys
TINY_PRETRAIN = [
    "pretrain.train.epochs=1",
    "pretrain.train.batch_size=64",
    "pretrain.train.precision=fp32",
]
TINY_OBJECTIVE = {  # pre-training method: its objective's own tiny sizes
    "clue": [],
    "clue_paper": ["pretrain.objective.projector_dim=16", "pretrain.objective.predictor_dim=8"],
    "masked_item": [],
    "infonce": [],
}
METHODS = ("clue", "item_mean", "clue_paper", "masked_item", "infonce", "zero", "bag")
BAGS = {"bag": "nfm", "clue": "item_mean", "item_mean": "item_mean"}  # method -> bag backbone


def method_of(path: Path) -> str:
    return path.stem.split("_", 1)[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipes' files (synth/synth_1m*.{txt,csv}) with 240 users over 60 items."""
    root = tmp_path_factory.mktemp("data")
    write_synthetic_sequences(
        root / "synth" / "synth_1m.txt", 240, 60, seed=0, mean_length=12, attributes=True,
        cold_start=True,
    )  # fmt: skip
    return root


def test_the_grid_is_complete() -> None:
    names = {path.stem for path in RECIPES}
    assert names == {f"{t}_{m}" for t in ("easy", "hard", "taste", "coldstart") for m in METHODS}
    for path in RECIPES:
        recipe = load_recipe(path)
        assert recipe.data.path == "synth/synth_1m.txt"
        method = method_of(path)
        assert (recipe.pretrain is not None) == (method in TINY_OBJECTIVE)
        assert recipe.backbone.kind == BAGS.get(method, "transformer")
        if recipe.pretrain is not None:
            objective = {"clue": "infonce", "clue_paper": "clue"}.get(method, method)
            assert recipe.pretrain.objective.kind == objective
        if method == "clue":  # the fix: InfoNCE between split views
            assert [view.kind for view in recipe.pretrain.views] == ["split"]  # type: ignore[union-attr]
        if method in ("infonce", "clue"):  # SimCLR-style: cosine similarity, temperature 0.2
            assert recipe.pretrain.objective.similarity == "cosine"  # type: ignore[union-attr]
            assert recipe.pretrain.objective.temperature == 0.2  # type: ignore[union-attr]


#: run in the default suite (one pre-training recipe per head); the others are marked slow
DEFAULT = ("easy_clue", "coldstart_clue")
PARAMS = [
    pytest.param(path, id=path.stem, marks=() if path.stem in DEFAULT else pytest.mark.slow)
    for path in RECIPES
]


@pytest.mark.parametrize("path", PARAMS)
def test_recipe_runs_on_the_synthetic_files(
    path: Path,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLUE_DATA_DIR", str(data_root))
    method = method_of(path)
    sets = TINY + ([] if method in BAGS else TINY_TRANSFORMER)
    if method in TINY_OBJECTIVE:
        sets += TINY_PRETRAIN + TINY_OBJECTIVE[method]
    argv = ["run", str(path), "--out", str(tmp_path / "run")]
    for override in sets:
        argv += ["--set", override]
    code, _, stderr = main_exit(argv, capsys)
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    task = metrics["task"]
    if path.stem.startswith("coldstart"):
        assert task["target users"] == 240  # every user is cold in the target domain
        assert set(metrics["test"]) == {"mrr@10", "recall@10", "ndcg@10"}
    else:
        assert task["labelled users"] == 240
        assert set(metrics["test"]) == {"acc", "macro_f1", "majority_acc"}
        classes = 6 if path.stem.startswith("taste") else 2
        assert len(task["classes"]) == classes


def test_a_missing_synthetic_file_says_how_to_make_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLUE_DATA_DIR", str(tmp_path))
    code, _, stderr = main_exit(["validate", str(RECIPES[0]), "--strict"], capsys)
    message = " ".join(stderr.split())
    assert code == 2 and "synth/synth_1m.txt" in message
    assert "or generate it with `clue data synth`" in message
