"""finetune.init_from: pre-train once in one run, fine-tune other tasks from its encoder."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

import clue_fw.running.finetune
import clue_fw.training.loop
from clue_fw import run
from clue_fw.errors import CheckpointError, RecipeError
from clue_fw.recipe import validate_recipe
from clue_fw.training.checkpoint import load_checkpoint


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A finished tiny run with CLUE pre-training (its encoder is what others start from)."""
    from conftest import TINY_RECIPE  # the session's tiny synthetic recipe

    recipe = copy.deepcopy(TINY_RECIPE)
    out = tmp_path_factory.mktemp("pretrained") / "run"
    run(recipe, out=out, console=quiet())
    return out, recipe


def finetune_only(recipe: dict[str, Any], init_from: Path | str) -> dict[str, Any]:
    recipe = copy.deepcopy(recipe)
    recipe["pretrain"] = None
    recipe["finetune"]["init_from"] = str(init_from)
    return recipe


def encoder_at_start(
    recipe: dict[str, Any], out: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, torch.Tensor]:
    """Run ``recipe`` and return the encoder as fine-tuning found it (first evaluation)."""
    seen: dict[str, torch.Tensor] = {}
    real = clue_fw.training.loop.evaluate  # what fine-tuning's evaluation calls

    def watching(head: Any, encoder: Any, examples: Any, batch_size: int, **kw: Any) -> Any:
        if not seen:
            seen.update({k: v.clone() for k, v in encoder.state_dict().items()})
        return real(head, encoder, examples, batch_size, **kw)

    monkeypatch.setattr(clue_fw.training.loop, "evaluate", watching)
    run(recipe, out=out, console=quiet())
    return seen


def test_encoder_checkpoint_records_its_item_catalogue(
    pretrained_run: tuple[Path, dict[str, Any]],
) -> None:
    run_dir, _ = pretrained_run
    tensors, metadata = load_checkpoint(run_dir / "pretrain" / "encoder.safetensors")
    assert metadata["kind"] == "encoder"
    ids = tensors[clue_fw.running.finetune.ITEM_IDS_KEY]
    assert ids.dtype == torch.int64 and ids.numel() > 0 and bool((ids[1:] > ids[:-1]).all())


@pytest.mark.parametrize("as_directory", [True, False])
def test_finetuning_starts_from_the_other_runs_encoder(
    pretrained_run: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    as_directory: bool,
) -> None:
    run_dir, recipe = pretrained_run
    encoder_file = run_dir / "pretrain" / "encoder.safetensors"
    source = run_dir if as_directory else encoder_file
    start = encoder_at_start(finetune_only(recipe, source), tmp_path / "ft", monkeypatch)
    saved, _ = load_checkpoint(encoder_file)
    for name, value in start.items():
        assert torch.equal(value, saved[f"encoder.{name}"]), name
    log = (tmp_path / "ft" / "run.log").read_text()
    assert "starting from the encoder pre-trained in" in log
    # ... and the same recipe without init_from starts elsewhere (CLUEZero)
    zero = finetune_only(recipe, source)
    zero["finetune"]["init_from"] = None
    other = encoder_at_start(zero, tmp_path / "zero", monkeypatch)
    assert any(not torch.equal(other[k], start[k]) for k in start)


def test_init_from_and_pretraining_together_are_refused(
    pretrained_run: tuple[Path, dict[str, Any]],
) -> None:
    run_dir, recipe = pretrained_run
    both = copy.deepcopy(recipe)
    both["finetune"]["init_from"] = str(run_dir)
    with pytest.raises(RecipeError, match="finetune.init_from: the encoder would come both"):
        validate_recipe(both)


def test_another_backbone_is_refused_before_the_run_directory_exists(
    pretrained_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    run_dir, recipe = pretrained_run
    other = finetune_only(recipe, run_dir)
    other["backbone"]["dim"] = other["backbone"]["dim"] * 2
    with pytest.raises(CheckpointError, match=r"another backbone \(differs in: backbone.dim\)"):
        run(other, out=tmp_path / "ft", console=quiet())
    assert not (tmp_path / "ft").exists()


def test_another_item_catalogue_is_refused(
    pretrained_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    run_dir, recipe = pretrained_run
    other = finetune_only(recipe, run_dir)
    other["data"]["num_items"] = other["data"]["num_items"] + 7
    with pytest.raises(CheckpointError, match="pre-trained on a .*-item catalogue"):
        run(other, out=tmp_path / "ft", console=quiet())


def test_a_training_checkpoint_or_a_directory_without_encoder_is_refused(
    pretrained_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    run_dir, recipe = pretrained_run
    last = finetune_only(recipe, run_dir / "pretrain" / "last.safetensors")
    with pytest.raises(CheckpointError, match="is not a pre-trained encoder"):
        run(last, out=tmp_path / "a", console=quiet())
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecipeError, match="without pretrain/encoder.safetensors"):
        run(finetune_only(recipe, tmp_path / "empty"), out=tmp_path / "b", console=quiet())
    with pytest.raises(CheckpointError, match="not found"):
        run(
            finetune_only(recipe, tmp_path / "nope.safetensors"),
            out=tmp_path / "c",
            console=quiet(),
        )
