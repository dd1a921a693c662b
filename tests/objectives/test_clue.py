"""Tests for clue_fw.objectives.clue: the CLUE objective built from its spec."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import clue_fw.objectives.clue as clue_module
from clue_fw.augmentations.dropout import DropoutViewSpec
from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import BuildContext
from clue_fw.objectives.clue import ClueSpec

CONTEXT = BuildContext(num_items=30, max_len=8)


def batch(seed: int = 0, size: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, CONTEXT.num_items + 1, (size, CONTEXT.max_len), generator=generator)
    items[: size // 2, :3] = 0  # some left padding
    return items


def build(**spec: Any) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    encoder = TransformerSpec(dim=16, blocks=1, heads=2, dropout=0.2).build(CONTEXT)
    objective = ClueSpec(projector_dim=16, predictor_dim=8, **spec).build(CONTEXT, encoder)
    return encoder, objective


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"predictor": False},
        {"stop_gradient": False},
        {"predictor": False, "stop_gradient": False},
    ],
)
def test_objective_builds_runs_and_trains(flags: dict[str, bool]) -> None:
    encoder, objective = build(**flags)
    view = DropoutViewSpec().build(CONTEXT)
    encoder.train()
    objective.train()
    output = objective(encoder, batch(), view, torch.Generator().manual_seed(1))
    assert output.loss.shape == ()
    assert -1.0 <= output.loss.item() <= 1.0
    assert set(output.terms) == {"z_std"}
    assert not output.terms["z_std"].requires_grad
    output.loss.backward()
    grads = [p.grad for p in encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert any(p.grad is not None for p in objective.projector.parameters())
    if flags.get("predictor", True):
        assert isinstance(objective.predictor, nn.Sequential)
        assert any(p.grad is not None for p in objective.predictor.parameters())
    else:
        assert isinstance(objective.predictor, nn.Identity)


@pytest.mark.parametrize("stop_gradient", [True, False])
@pytest.mark.parametrize("predictor", [True, False])
def test_flags_reach_the_loss(
    monkeypatch: pytest.MonkeyPatch, stop_gradient: bool, predictor: bool
) -> None:
    calls: list[dict[str, Any]] = []
    real = clue_module.symmetric_negative_cosine

    def spy(
        p1: torch.Tensor, z1: torch.Tensor, p2: torch.Tensor, z2: torch.Tensor, **kw: Any
    ) -> Any:
        calls.append({"p1": p1, "z1": z1, **kw})
        return real(p1, z1, p2, z2, **kw)

    monkeypatch.setattr(clue_module, "symmetric_negative_cosine", spy)
    encoder, objective = build(stop_gradient=stop_gradient, predictor=predictor)
    objective(encoder, batch(), DropoutViewSpec().build(CONTEXT), torch.Generator())
    assert len(calls) == 1
    assert calls[0]["stop_gradient"] is stop_gradient
    # without a predictor the prediction is the projection itself
    assert (calls[0]["p1"] is calls[0]["z1"]) is (not predictor)


def test_dropout_views_differ_in_training_only() -> None:
    encoder, _ = build()
    items = batch(3)
    view = DropoutViewSpec().build(CONTEXT)
    assert torch.equal(view(items, torch.Generator()), items)  # identity on items
    encoder.train()
    first, second = encoder(torch.cat([items, items])).user.chunk(2)
    assert not torch.allclose(first, second)  # independent dropout masks
    encoder.eval()
    first, second = encoder(torch.cat([items, items])).user.chunk(2)
    torch.testing.assert_close(first, second)


def test_spec_defaults_and_validation() -> None:
    spec = ClueSpec()
    assert (spec.kind, spec.predictor, spec.stop_gradient) == ("clue", True, True)
    with pytest.raises(ValueError):
        ClueSpec(projector_dim=0)
    with pytest.raises(ValueError):
        ClueSpec(predictor_hiden=3)


def test_spread_terms_are_added_with_their_weights_and_logged() -> None:
    view = DropoutViewSpec().build(CONTEXT)
    outputs = {}
    for weights in ((0.0, 0.0), (2.0, 0.0), (0.0, 3.0), (2.0, 3.0)):
        encoder, objective = build(variance_weight=weights[0], covariance_weight=weights[1])
        torch.manual_seed(5)  # the same dropout masks in every build
        outputs[weights] = objective(encoder, batch(), view, torch.Generator().manual_seed(1))
    plain = outputs[(0.0, 0.0)]
    assert set(plain.terms) == {"z_std"}
    both = outputs[(2.0, 3.0)]
    assert set(both.terms) == {"z_std", "variance", "covariance"}
    variance, covariance = both.terms["variance"], both.terms["covariance"]
    assert variance > 0 and covariance > 0  # a fresh LayerNorm'd encoder spreads < 1 a dim
    expected = plain.loss + 2.0 * variance + 3.0 * covariance
    assert both.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert outputs[(2.0, 0.0)].loss.item() == pytest.approx((plain.loss + 2 * variance).item())
    assert outputs[(0.0, 3.0)].loss.item() == pytest.approx((plain.loss + 3 * covariance).item())


def test_spread_weights_stay_out_of_the_recipe_dump_while_off() -> None:
    assert ClueSpec().model_dump() == {
        "kind": "clue",
        "projector_dim": 256,
        "predictor_dim": 64,
        "predictor": True,
        "stop_gradient": True,
    }
    spread = ClueSpec(variance_weight=1.0, covariance_weight=0.04).model_dump()
    assert spread["variance_weight"] == 1.0 and spread["covariance_weight"] == 0.04
    assert ClueSpec(**spread) == ClueSpec(variance_weight=1.0, covariance_weight=0.04)
    with pytest.raises(ValueError, match="variance_weight"):
        ClueSpec(variance_weight=-1.0)
