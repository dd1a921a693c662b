"""Numerical guards of a whole run: a non-finite loss stops it with a message naming the
stage, epoch, batch, global step and loss, the last good checkpoint stays as it was, and
``train.grad_clip`` is applied at every step."""

from __future__ import annotations

import copy
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from rich.console import Console

import clue_fw.runner as runner
from clue_fw.components import LossOutput
from clue_fw.errors import TrainingError
from clue_fw.heads.next_item import NextItemHead
from clue_fw.objectives.clue import ClueObjective
from clue_fw.running.stage import Stage
from clue_fw.training.checkpoint import load_checkpoint


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.fixture
def epochs_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (stage, epoch) the runner starts, in order."""
    seen: list[tuple[str, int]] = []
    original = Stage.begin_epoch

    def spy(self: Stage, epoch: int) -> Any:
        seen.append((self.name, epoch))
        return original(self, epoch)

    monkeypatch.setattr(Stage, "begin_epoch", spy)
    return seen


def test_nan_in_finetuning_keeps_the_last_good_checkpoint(
    tmp_path: Path,
    tiny_recipe: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    epochs_seen: list[tuple[str, int]],
) -> None:
    run_dir = tmp_path / "run"
    snapshot = tmp_path / "after-epoch-1.safetensors"
    calls: dict[int, int] = {}
    original = NextItemHead.loss

    def loss(self: NextItemHead, encoder: Any, batch: dict[str, torch.Tensor]) -> LossOutput:
        stage, epoch = epochs_seen[-1]
        if stage == "finetune" and epoch == 2:
            if epoch not in calls:  # the checkpoint on disk when epoch 2 starts
                shutil.copy(run_dir / "finetune" / "last.safetensors", snapshot)
            calls[epoch] = calls.get(epoch, 0) + 1
            if calls[epoch] == 3:
                output = original(self, encoder, batch)
                return LossOutput(output.loss * float("nan"), output.terms)
        return original(self, encoder, batch)

    monkeypatch.setattr(NextItemHead, "loss", loss)
    data = copy.deepcopy(tiny_recipe)
    with pytest.raises(TrainingError) as info:
        runner.run(data, out=run_dir, console=quiet())
    message = str(info.value)
    assert "Non-finite loss in finetune epoch 2/3, batch 3/" in message
    assert "the next_item head loss is nan" in message
    assert f"{run_dir / 'finetune' / 'last.safetensors'} (epoch 1), is kept" in message
    assert "finetune.train.lr" in message and "finetune.train.grad_clip" in message
    # the global step counts the batches of epoch 1 too
    batches = int(message.split("batch 3/")[1].split(" ")[0])
    assert f"(global step {batches + 3})" in message
    # the failing epoch saved nothing: last.safetensors is byte-for-byte the epoch-1 one
    assert (run_dir / "finetune" / "last.safetensors").read_bytes() == snapshot.read_bytes()
    _, meta = load_checkpoint(run_dir / "finetune" / "last.safetensors")
    assert meta["epoch"] == 1 and not meta["finished"]
    _, best = load_checkpoint(run_dir / "finetune" / "best.safetensors")
    assert best["epoch"] <= 1
    assert not (run_dir / "metrics.json").exists()
    assert not list(run_dir.rglob("*.tmp"))


def test_nan_in_the_first_pretraining_epoch_names_the_term(
    tmp_path: Path, tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ClueObjective.forward

    def forward(self: ClueObjective, *args: Any) -> LossOutput:
        output = original(self, *args)
        nan = torch.tensor(float("nan"))
        return LossOutput(output.loss * nan, {**output.terms, "z_std": nan})

    monkeypatch.setattr(ClueObjective, "forward", forward)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        runner.run(tiny_recipe, out=run_dir, console=quiet())
    message = str(info.value)
    assert message.startswith(
        "Non-finite loss in pretrain epoch 1/1, batch 1/4 (global step 1): the clue objective "
        "loss is nan; non-finite terms: z_std=nan."
    )
    assert "no pretrain epoch had finished, so no pretrain checkpoint exists." in message
    assert not (run_dir / "pretrain" / "last.safetensors").exists()


def test_exploding_learning_rate_exits_2_without_traceback(
    tmp_path: Path, tiny_recipe: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from clue_fw.cli import main

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe, sort_keys=False))
    run_dir = tmp_path / "run"
    argv = ["run", str(recipe), "--out", str(run_dir), "--set", "pretrain.train.lr=1e30"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 2
    assert "Traceback" not in err
    assert "Non-finite" in err and "pretrain epoch 1/1, batch " in err
    assert "pretrain.train.lr" in err
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.parametrize("clip", [None, 0.25])
def test_grad_clip_is_applied_at_every_step(
    tmp_path: Path,
    tiny_recipe: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    clip: float | None,
) -> None:
    data = copy.deepcopy(tiny_recipe)
    data["pretrain"]["train"]["grad_clip"] = clip
    data["finetune"]["train"]["grad_clip"] = clip
    calls: list[float] = []
    norms_before: list[float] = []
    norms_after: list[float] = []
    original = torch.nn.utils.clip_grad_norm_

    def spy(parameters: Any, max_norm: float, *args: Any, **kwargs: Any) -> torch.Tensor:
        parameters = list(parameters)
        calls.append(max_norm)
        total = original(parameters, max_norm, *args, **kwargs)
        grads = [p.grad for p in parameters if p.grad is not None]
        norms_before.append(float(total))
        norms_after.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    runner.run(data, out=tmp_path / "run", console=quiet())
    if clip is None:
        assert calls == []
    else:
        # one call per optimiser step of both stages (1 + 3 epochs of several batches each)
        assert len(calls) > 4 and set(calls) == {clip}
        assert max(norms_before) > clip  # clipping had work to do ...
        assert max(norms_after) <= clip * (1 + 1e-4)  # ... and did it
