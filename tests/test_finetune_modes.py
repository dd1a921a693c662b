"""finetune.mode (full / probe) and the recipe checks of what a head can train with."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

import clue_fw.running.finetune
import clue_fw.training.loop
from clue_fw import run
from clue_fw.errors import RecipeError
from clue_fw.recipe import validate_recipe
from clue_fw.training.checkpoint import load_checkpoint


def quiet() -> Console:
    return Console(file=io.StringIO())


def tensors(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    loaded, _ = load_checkpoint(path)
    return {k[len(prefix) :]: v for k, v in loaded.items() if k.startswith(prefix)}


def run_and_watch(
    recipe: dict[str, Any], out: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, dict[str, torch.Tensor]]:
    """Run ``recipe``; return the encoder and head tensors as fine-tuning found them
    (at its first evaluation, before any step) and as it left them (last.safetensors)."""
    first: dict[str, dict[str, torch.Tensor]] = {}
    real_evaluate = clue_fw.training.loop.evaluate  # what fine-tuning's evaluation calls

    def watching(head: Any, encoder: Any, examples: Any, batch_size: int, **kw: Any) -> Any:
        if not first:
            first["encoder"] = {k: v.clone() for k, v in encoder.state_dict().items()}
            first["head"] = {k: v.clone() for k, v in head.state_dict().items()}
        return real_evaluate(head, encoder, examples, batch_size, **kw)

    monkeypatch.setattr(clue_fw.training.loop, "evaluate", watching)
    result = run(recipe, out=out, console=quiet())
    last = result.run_dir / "finetune" / "last.safetensors"
    return {
        "encoder before": first["encoder"],
        "head before": first["head"],
        "encoder after": tensors(last, "model.encoder."),
        "head after": tensors(last, "model.head."),
    }


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    assert before.keys() == after.keys()
    return sorted(k for k in before if not torch.equal(before[k], after[k]))


def probe_recipe(tiny_recipe: dict[str, Any], mode: str) -> dict[str, Any]:
    tiny_recipe["finetune"]["head"] = {"kind": "next_item", "tie_weights": False}
    tiny_recipe["finetune"]["mode"] = mode
    tiny_recipe["finetune"]["train"]["epochs"] = 2
    return tiny_recipe


def test_probe_trains_the_head_only(
    tiny_recipe: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = run_and_watch(probe_recipe(tiny_recipe, "probe"), tmp_path / "run", monkeypatch)
    assert changed(seen["encoder before"], seen["encoder after"]) == []
    assert changed(seen["head before"], seen["head after"]) == ["output.weight"]
    # and the frozen encoder is the pre-trained one
    pretrained = tensors(tmp_path / "run" / "pretrain" / "encoder.safetensors", "encoder.")
    assert changed(pretrained, seen["encoder after"]) == []


def test_full_mode_trains_the_encoder_too(
    tiny_recipe: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = run_and_watch(probe_recipe(tiny_recipe, "full"), tmp_path / "run", monkeypatch)
    moved = changed(seen["encoder before"], seen["encoder after"])
    assert "item_embedding.weight" in moved and len(moved) > 5
    assert changed(seen["head before"], seen["head after"]) == ["output.weight"]


def test_probe_of_a_profile_head(
    tiny_recipe: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = ["user,label"] + [f"{u},{'FM'[u % 2]}" for u in range(1, 201)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    tiny_recipe["finetune"]["head"] = {
        "kind": "profile",
        "labels": {"path": str(tmp_path / "labels.csv")},
        "user_vector": "mean",
    }
    tiny_recipe["finetune"]["mode"] = "probe"
    seen = run_and_watch(tiny_recipe, tmp_path / "run", monkeypatch)
    assert changed(seen["encoder before"], seen["encoder after"]) == []
    assert changed(seen["head before"], seen["head after"]) == [
        "classifier.bias",
        "classifier.weight",
    ]


# --------------------------------------------------------------------------- recipe checks


def invalid(recipe: dict[str, Any]) -> str:
    with pytest.raises(RecipeError) as info:
        validate_recipe(recipe)
    return str(info.value)


def test_probe_with_tied_weights_is_refused(tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["finetune"]["mode"] = "probe"  # next_item ties weights by default
    message = invalid(tiny_recipe)
    assert "finetune.mode probe: finetune.head.tie_weights: true" in message
    assert "set it to false for a probe" in message
    tiny_recipe["finetune"]["head"]["tie_weights"] = False
    assert validate_recipe(tiny_recipe).finetune.mode == "probe"


def test_full_mode_is_the_default(tiny_recipe: dict[str, Any]) -> None:
    assert validate_recipe(tiny_recipe).finetune.mode == "full"
    tiny_recipe["finetune"]["mode"] = "linear"
    message = invalid(tiny_recipe)
    assert "finetune.mode: Input should be 'full', 'probe' or 'probe_then_full'" in message


HEADS: dict[str, dict[str, Any]] = {
    "profile": {"kind": "profile", "labels": {"path": "labels.csv"}},
    "cold_start": {"kind": "cold_start"},
}


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_all_history_is_refused_by_user_level_heads(tiny_recipe: dict[str, Any], kind: str) -> None:
    tiny_recipe["finetune"]["head"] = HEADS[kind]
    tiny_recipe["finetune"]["train"]["history"] = "all"
    message = invalid(tiny_recipe)
    assert f"finetune.train.history: head {kind!r} predicts from each user's n most" in message
    assert "use history: recent" in message
    # pre-training may still use all windows: the check is on fine-tuning only
    tiny_recipe["finetune"]["train"]["history"] = "recent"
    tiny_recipe["pretrain"]["train"]["history"] = "all"
    validate_recipe(tiny_recipe)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_user_level_heads_probe_with_either_user_vector(
    tiny_recipe: dict[str, Any], kind: str
) -> None:
    check: Callable[[str], Any] = lambda how: validate_recipe(  # noqa: E731
        {**tiny_recipe, "finetune": {**tiny_recipe["finetune"], "mode": "probe", "head": how}}
    )
    for how in ("ur", "mean"):
        assert check({**HEADS[kind], "user_vector": how}).finetune.head.user_vector == how
    with pytest.raises(RecipeError, match="user_vector"):
        check({**HEADS[kind], "user_vector": "max"})
