"""clue_fw.analysis.plots: the curves figure's panels, fixed bounds, no offsets, best epochs."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("matplotlib")

from clue_fw.analysis.plots import best_epoch, curve_panels, draw_curves  # noqa: E402


def history() -> dict[str, list[dict[str, Any]]]:
    pretrain = [
        {"epoch": float(e), "loss": -0.9, "z_std": 1.0008 + 1e-5 * e, "rep_erank": 40.0 - e,
         "rep_std": 0.99}
        for e in range(1, 6)
    ]  # fmt: skip
    finetune = [{"epoch": 0.0, "valid ndcg@10": 0.01}] + [
        {"epoch": float(e), "loss": 1.0 / e, "valid ndcg@10": 0.1 + 0.01 * (e == 3),
         "best": "*" if e in (1, 3) else ""}
        for e in range(1, 7)
    ]  # fmt: skip
    return {"pretrain": pretrain, "finetune": finetune}


def test_the_encoders_own_rank_and_spread_have_panels() -> None:
    columns = [(p.stage, p.column) for p in curve_panels([history()])]
    assert columns[:4] == [
        ("pretrain", "loss"),
        ("pretrain", "z_std"),
        ("pretrain", "rep_erank"),
        ("pretrain", "rep_std"),
    ]


def test_bounded_measures_keep_their_limits_and_no_axis_has_an_offset() -> None:
    figure, panels = draw_curves(["run"], [history()])
    axes = {p.column: axis for p, axis in zip(panels, figure.axes, strict=False)}
    figure.canvas.draw()
    # z_std moves by 4e-5 near 1: autoscaling would show "+1.0008" and noise, not "no collapse"
    assert axes["z_std"].get_ylim() == pytest.approx((0.0, 1.05))
    assert axes["rep_erank"].get_ylim()[0] == 0.0
    for axis in figure.axes:
        if axis.get_visible():
            assert axis.yaxis.get_offset_text().get_text() == ""


def test_the_best_epoch_is_marked_on_fine_tuning_panels() -> None:
    assert best_epoch(history()["finetune"]) == 3.0
    assert best_epoch(history()["pretrain"]) is None
    figure, panels = draw_curves(["run"], [history()])
    for panel, axis in zip(panels, figure.axes, strict=False):
        dotted = [line for line in axis.get_lines() if line.get_linestyle() == ":"]
        if panel.stage == "finetune":
            assert [list(line.get_xdata()) for line in dotted] == [[3.0, 3.0]]
        else:
            assert not dotted
