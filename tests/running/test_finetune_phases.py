"""finetune.mode probe_then_full (LP-FT) and finetune.encoder_lr_scale: what trains in
which epoch, at which learning rate, how early stopping counts, resumption, and the recipe
checks (clue_fw.running.finetune_phases)."""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import nn

import clue_fw.running.finetune
import clue_fw.running.stage
from clue_fw import run
from clue_fw.analysis.history_csv import read_history
from clue_fw.errors import RecipeError
from clue_fw.recipe import validate_recipe
from clue_fw.running.finetune_phases import EncoderFreeze, Phases, optimiser_parameters
from clue_fw.running.stage import Stage
from clue_fw.training.checkpoint import load_checkpoint
from clue_fw.training.optim import LR_FACTOR, ParameterGroup

Snapshot = dict[str, dict[str, torch.Tensor]]


def quiet() -> Console:
    return Console(file=io.StringIO())


def lpft_recipe(tiny: dict[str, Any], probe_epochs: int = 2, epochs: int = 4) -> dict[str, Any]:
    """The tiny recipe as LP-FT, with AdamW's decoupled weight decay: a frozen parameter
    that the optimiser stepped would shrink, even without a gradient."""
    tiny["finetune"]["head"] = {"kind": "next_item", "tie_weights": False}
    tiny["finetune"]["mode"] = "probe_then_full"
    tiny["finetune"]["probe_epochs"] = probe_epochs
    tiny["finetune"]["train"].update(epochs=epochs, optimizer="adamw", weight_decay=0.1)
    tiny["finetune"]["patience"] = epochs
    return tiny


@pytest.fixture
def saved_states(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[int, Snapshot]]:
    """Epoch -> the fine-tuning encoder's and head's tensors (buffers too) as each
    ``last.safetensors`` save saw them (epoch 0: before any step)."""
    seen: dict[int, Snapshot] = {}
    real_save = Stage.save

    def save(self: Stage, report: Any = None) -> None:
        real_save(self, report)
        if self.name == "finetune":
            seen[self.epoch] = {
                part: {k: v.detach().clone() for k, v in self.module[part].state_dict().items()}
                for part in ("encoder", "head")
            }

    monkeypatch.setattr(Stage, "save", save)
    yield seen


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    assert before.keys() == after.keys()
    return sorted(k for k in before if not torch.equal(before[k], after[k]))


# --------------------------------------------------------------------------- LP-FT


def test_lpft_freezes_the_encoder_for_the_probe_epochs_then_trains_it(
    tiny_recipe: dict[str, Any], tmp_path: Path, saved_states: dict[int, Snapshot]
) -> None:
    result = run(lpft_recipe(tiny_recipe), out=tmp_path / "run", console=quiet())
    assert sorted(saved_states) == [0, 1, 2, 3, 4]
    encoder = [saved_states[epoch]["encoder"] for epoch in range(5)]
    head = [saved_states[epoch]["head"] for epoch in range(5)]
    # the probe epochs leave the encoder bit-identical: the pre-trained one
    pretrained, _ = load_checkpoint(tmp_path / "run" / "pretrain" / "encoder.safetensors")
    prefix = "encoder."
    from_pretraining = {k[len(prefix) :]: v for k, v in pretrained.items() if k.startswith(prefix)}
    assert changed(from_pretraining, encoder[0]) == []
    assert changed(encoder[0], encoder[1]) == [] and changed(encoder[1], encoder[2]) == []
    # the full epochs train it: item embeddings and the backbone
    for before, after in ((encoder[2], encoder[3]), (encoder[3], encoder[4])):
        moved = changed(before, after)
        assert "item_embedding.weight" in moved and any(k.startswith("blocks.") for k in moved)
    # the head trains in both phases
    for epoch in range(4):
        assert changed(head[epoch], head[epoch + 1]) == ["output.weight"], epoch
    history = read_history(result.run_dir / "finetune" / "history.csv")
    assert [row.get("phase") for row in history] == [None, "probe", "probe", "full", "full"]
    log = (result.run_dir / "run.log").read_text()
    assert "(LP-FT: epochs 1-2 train the head on the frozen encoder" in log
    assert "finetune: epoch 3 unfreezes the encoder (full fine-tuning)" in log


def test_the_probe_phase_trains_exactly_as_mode_probe(
    tiny_recipe: dict[str, Any], tmp_path: Path, saved_states: dict[int, Snapshot]
) -> None:
    """Same seed, same probe epochs: LP-FT's probe phase is ``mode: probe``'s run, to the bit
    (frozen encoder in eval mode; the encoder's place in the optimiser changes nothing)."""
    run(lpft_recipe(copy.deepcopy(tiny_recipe)), out=tmp_path / "lpft", console=quiet())
    lpft = {epoch: copy.deepcopy(saved_states[epoch]) for epoch in (1, 2)}
    probe = lpft_recipe(tiny_recipe)
    probe["finetune"].update(mode="probe", probe_epochs=None)
    probe["finetune"]["train"]["epochs"] = 2
    run(probe, out=tmp_path / "probe", console=quiet())
    for epoch in (1, 2):
        for part in ("encoder", "head"):
            assert changed(lpft[epoch][part], saved_states[epoch][part]) == [], (epoch, part)


def scripted_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation that never improves on the untrained head (each epoch's monitored
    metric lower than the one before), so only early stopping ends a run."""
    real_score = clue_fw.running.finetune.Finetuning.score
    calls: list[int] = []

    def score(self: Any, examples: Any, split: str) -> dict[str, float]:
        metrics = real_score(self, examples, split)
        if split == "valid":
            calls.append(1)
            metrics[self.monitor] = 1.0 - 0.01 * len(calls)
        return metrics

    monkeypatch.setattr(clue_fw.running.finetune.Finetuning, "score", score)


@pytest.mark.parametrize(("mode", "stopped_after"), [("full", 2), ("probe_then_full", 5)])
def test_patience_counts_only_epochs_that_train_the_encoder(
    tiny_recipe: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    stopped_after: int,
) -> None:
    """Patience 2 and no gain ever: full fine-tuning stops after epoch 2; LP-FT with 3 probe
    epochs cannot stop in them, and its counter starts at 0 when the encoder unfreezes."""
    scripted_validation(monkeypatch)
    recipe = lpft_recipe(tiny_recipe, probe_epochs=3, epochs=8)
    recipe["finetune"]["patience"] = 2
    if mode == "full":
        recipe["finetune"].update(mode="full", probe_epochs=None)
    result = run(recipe, out=tmp_path / "run", console=quiet())
    assert result.metrics["epochs"] == stopped_after
    assert result.metrics["best_epoch"] == 0  # the best checkpoint is chosen over every epoch
    _, last = load_checkpoint(tmp_path / "run" / "finetune" / "last.safetensors")
    assert last["extra"]["bad_epochs"] == 2


def test_phases_of_each_mode() -> None:
    lpft = Phases(frozen_epochs=3, unfreezes=True)
    assert [lpft.phase(e) for e in range(1, 6)] == ["probe"] * 3 + ["full"] * 2
    assert [lpft.counts_towards_patience(e) for e in (1, 3, 4)] == [False, False, True]
    assert lpft.encoder_trains and lpft.shows_phase
    assert lpft.status(2) == "probe phase: the encoder unfreezes after epoch 3"
    assert lpft.status(3) is not None and lpft.status(4) is None
    probe = Phases(frozen_epochs=10, unfreezes=False)
    assert probe.phase(10) == "probe" and probe.counts_towards_patience(1)
    assert not probe.encoder_trains and probe.status(1) is None and not probe.shows_phase
    full = Phases(frozen_epochs=0, unfreezes=False)
    assert full.phase(1) == "full" and full.counts_towards_patience(1) and full.encoder_trains


def test_resume_continues_in_the_right_phase(
    tiny_recipe: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted after a probe epoch and again after a full one: --resume ends exactly
    like the uninterrupted run (weights, metrics, history with its phases)."""
    recipe = validate_recipe(lpft_recipe(tiny_recipe, probe_epochs=2, epochs=4))
    reference = run(recipe, out=tmp_path / "reference", console=quiet()).run_dir
    real_save = Stage.save

    class Interrupted(Exception):
        pass

    def interrupt_after(epoch: int) -> None:
        def save(self: Stage, report: Any = None) -> None:
            real_save(self, report)
            if self.name == "finetune" and self.epoch == epoch:
                raise Interrupted

        monkeypatch.setattr(Stage, "save", save)

    interrupted = tmp_path / "interrupted"
    interrupt_after(1)  # in the probe phase
    with pytest.raises(Interrupted):
        run(recipe, out=interrupted, console=quiet())
    interrupt_after(3)  # resumed, then stopped in the full phase
    with pytest.raises(Interrupted):
        run(recipe, resume=interrupted, console=quiet())
    _, last = load_checkpoint(interrupted / "finetune" / "last.safetensors")
    assert last["epoch"] == 3 and [row.get("phase") for row in last["history"]][-1] == "full"
    monkeypatch.setattr(Stage, "save", real_save)
    run(recipe, resume=interrupted, console=quiet())
    log = (interrupted / "run.log").read_text()
    assert "finetune: resumed after epoch 1\n" in log and "finetune: resumed after epoch 3\n" in log
    assert_same_end(reference, interrupted)
    history = read_history(interrupted / "finetune" / "history.csv")
    assert [row.get("phase") for row in history] == [None, "probe", "probe", "full", "full"]


def assert_same_end(reference: Path, resumed: Path) -> None:
    """Same metrics, best and last weights (with optimiser state) and history, timings aside."""
    import json

    for name in ("valid", "test", "best_epoch", "epochs"):
        ours, theirs = (
            json.loads((d / "metrics.json").read_text())[name] for d in (resumed, reference)
        )
        assert ours == theirs, name
    for file in ("best.safetensors", "last.safetensors"):
        (ours, ours_meta), (theirs, theirs_meta) = (
            load_checkpoint(d / "finetune" / file) for d in (resumed, reference)
        )
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    timing = ("seconds", "eval seconds", "seq/s")
    rows = [
        [{k: v for k, v in row.items() if k not in timing} for row in meta["history"]]
        for meta in (ours_meta, theirs_meta)
    ]
    assert rows[0] == rows[1]


# --------------------------------------------------------------------------- encoder_lr_scale


@pytest.fixture
def built_stages(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Stage]]:
    """Stage name -> the Stage a run built (its module and optimiser)."""
    built: dict[str, Stage] = {}
    real = Stage.training.__func__  # type: ignore[attr-defined]

    def training(cls: type[Stage], name: str, *args: Any, **kwargs: Any) -> Stage:
        built[name] = real(cls, name, *args, **kwargs)
        return built[name]

    monkeypatch.setattr(Stage, "training", classmethod(training))
    yield built


@pytest.mark.parametrize("mode", ["full", "probe_then_full"])
def test_encoder_lr_scale_gives_the_encoder_its_own_group(
    tiny_recipe: dict[str, Any], tmp_path: Path, built_stages: dict[str, Stage], mode: str
) -> None:
    recipe = lpft_recipe(tiny_recipe, probe_epochs=1, epochs=3)
    recipe["finetune"].update(mode=mode, encoder_lr_scale=0.1)
    if mode == "full":
        recipe["finetune"]["probe_epochs"] = None
    # a varying schedule: every step sets each group's rate, its factor kept
    recipe["finetune"]["train"].update(lr=2e-3, schedule="cosine", warmup_epochs=1, min_lr=1e-4)
    result = run(recipe, out=tmp_path / "run", console=quiet())
    stage = built_stages["finetune"]
    encoder, head = stage.module["encoder"], stage.module["head"]
    groups = stage.optimizer.param_groups
    assert [[id(p) for p in g["params"]] for g in groups] == [
        [id(p) for p in encoder.parameters()],  # item embeddings and backbone, every one
        [id(p) for p in head.parameters()],
    ]
    in_encoder_group = {id(p) for p in groups[0]["params"]}
    names = [n for n, p in encoder.named_parameters() if id(p) in in_encoder_group]
    assert "item_embedding.weight" in names and any(n.startswith("blocks.") for n in names)
    assert [g[LR_FACTOR] for g in groups] == [0.1, 1.0]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.1]  # the stage's, in each group
    rate = stage.lr  # the schedule's rate at the last step, the history's lr
    assert rate is not None and 1e-4 < rate < 2e-3
    assert groups[1]["lr"] == pytest.approx(rate) and groups[0]["lr"] == pytest.approx(0.1 * rate)
    assert read_history(result.run_dir / "finetune" / "history.csv")[-1]["lr"] == pytest.approx(
        rate
    )


def test_encoder_lr_scale_one_builds_the_single_group_of_before(
    tiny_recipe: dict[str, Any], tmp_path: Path, built_stages: dict[str, Stage]
) -> None:
    run(lpft_recipe(tiny_recipe, probe_epochs=1, epochs=2), out=tmp_path / "run", console=quiet())
    (group,) = built_stages["finetune"].optimizer.param_groups
    assert LR_FACTOR not in group and group["lr"] == 1e-3
    module = built_stages["finetune"].module
    assert [id(p) for p in group["params"]] == [id(p) for p in module.parameters()]


def test_optimiser_parameters_split_by_origin_and_skip_a_frozen_encoder() -> None:
    encoder, head = nn.Linear(2, 2), nn.Linear(2, 3)
    module = nn.ModuleDict({"encoder": encoder, "head": head})
    full, probe = Phases(0, False), Phases(5, False)
    ids = lambda ps: [id(p) for p in ps]  # noqa: E731
    assert ids(optimiser_parameters(module, encoder, full, 1.0)) == ids(module.parameters())  # type: ignore[arg-type]
    assert ids(optimiser_parameters(module, encoder, probe, 1.0)) == ids(head.parameters())  # type: ignore[arg-type]
    groups = optimiser_parameters(module, encoder, full, 0.5)
    assert all(isinstance(g, ParameterGroup) for g in groups)
    assert [(ids(g.parameters), g.lr_factor) for g in groups] == [  # type: ignore[union-attr]
        (ids(encoder.parameters()), 0.5),
        (ids(head.parameters()), 1.0),
    ]


def test_encoder_freeze_switches_gradients_and_dropout() -> None:
    encoder, head = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), nn.Linear(2, 2)
    encoder[0].bias.requires_grad_(False)  # a backbone's own frozen parameter stays frozen
    module = nn.ModuleDict({"encoder": encoder, "head": head})
    freeze = EncoderFreeze(module, encoder)  # type: ignore[arg-type]
    freeze.enter("probe")
    assert not encoder.training and head.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert all(p.requires_grad for p in head.parameters())
    freeze.enter("full")
    assert encoder.training and encoder[0].weight.requires_grad
    assert not encoder[0].bias.requires_grad


# --------------------------------------------------------------------------- recipe checks


def invalid(recipe: dict[str, Any]) -> str:
    with pytest.raises(RecipeError) as info:
        validate_recipe(recipe)
    return str(info.value)


def test_recipe_refuses_probe_epochs_that_do_not_fit(tiny_recipe: dict[str, Any]) -> None:
    recipe = lpft_recipe(tiny_recipe, probe_epochs=2, epochs=4)
    assert validate_recipe(recipe).finetune.probe_epochs == 2
    recipe["finetune"]["probe_epochs"] = None
    message = invalid(recipe)
    assert "finetune.probe_epochs: mode probe_then_full trains the head alone" in message
    assert "finetune.probe_epochs: 1, a third of train.epochs" in message
    recipe["finetune"]["probe_epochs"] = 4
    message = invalid(recipe)
    assert "finetune.probe_epochs (4) must be less than finetune.train.epochs (4)" in message
    assert "use at most 3" in message and "mode probe to train only the head" in message
    recipe["finetune"]["probe_epochs"] = 0
    assert "finetune.probe_epochs: Input should be greater than or equal to 1" in invalid(recipe)
    for mode in ("full", "probe"):
        recipe["finetune"].update(mode=mode, probe_epochs=2)
        message = invalid(recipe)
        assert f"setting of mode probe_then_full, and mode is {mode}" in message
        assert "set finetune.mode: probe_then_full, or remove probe_epochs" in message


def test_recipe_refuses_for_lpft_what_it_refuses_for_a_probe(tiny_recipe: dict[str, Any]) -> None:
    recipe = lpft_recipe(tiny_recipe)
    recipe["finetune"]["head"]["tie_weights"] = True
    assert "finetune.mode probe_then_full: finetune.head.tie_weights: true" in invalid(recipe)
    recipe["finetune"]["head"]["tie_weights"] = False
    recipe["finetune"]["auxiliary"] = [{"objective": {"kind": "clue"}}]
    message = invalid(recipe)
    assert "auxiliary terms train the encoder, which finetune.mode probe_then_full" in message


def test_recipe_checks_encoder_lr_scale(tiny_recipe: dict[str, Any]) -> None:
    recipe = lpft_recipe(tiny_recipe)
    recipe["finetune"]["encoder_lr_scale"] = 0.1
    assert validate_recipe(recipe).finetune.encoder_lr_scale == 0.1
    for bad, words in ((0.0, "greater than 0"), (1.5, "less than or equal to 1")):
        recipe["finetune"]["encoder_lr_scale"] = bad
        assert f"finetune.encoder_lr_scale: Input should be {words}" in invalid(recipe)
    recipe["finetune"].update(mode="probe", probe_epochs=None, encoder_lr_scale=0.5)
    message = invalid(recipe)
    assert "finetune.encoder_lr_scale: mode probe freezes the encoder" in message
    assert "remove encoder_lr_scale, or use mode full or probe_then_full" in message


def test_dumps_name_the_new_keys_only_when_used(tiny_recipe: dict[str, Any]) -> None:
    plain = validate_recipe(tiny_recipe).model_dump(mode="json")["finetune"]
    assert not {"probe_epochs", "encoder_lr_scale", "auxiliary"} & set(plain)
    recipe = lpft_recipe(tiny_recipe)
    recipe["finetune"]["encoder_lr_scale"] = 0.25
    dumped = validate_recipe(recipe).model_dump(mode="json")
    assert dumped["finetune"]["mode"] == "probe_then_full"
    assert (
        dumped["finetune"]["probe_epochs"] == 2 and dumped["finetune"]["encoder_lr_scale"] == 0.25
    )
    assert validate_recipe(dumped).model_dump(mode="json") == dumped  # it round-trips
