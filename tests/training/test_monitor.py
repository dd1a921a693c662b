"""The per-epoch representation monitor: its sample, its measures, its warning, and the
pre-training history columns it fills."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import nn

from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import BuildContext, EncoderOutput, SequenceEncoder
from clue_fw.data.csr import Csr
from clue_fw.metrics.representation import effective_rank
from clue_fw.runner import run
from clue_fw.training.monitor import (
    MEASURES,
    RepresentationMonitor,
    collapse_warning,
    sample_windows,
)


def identity_view(items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return items


def rows(count: int, length: int = 6, items: int = 30) -> Csr:
    generator = torch.Generator().manual_seed(1)
    return Csr.from_lists(
        [
            torch.randint(1, items + 1, (length + r % 4,), generator=generator).tolist()
            for r in range(count)
        ]
    )


def encoder(dim: int = 16, dropout: float = 0.1) -> SequenceEncoder:
    torch.manual_seed(0)
    spec = TransformerSpec(dim=dim, blocks=1, heads=2, dropout=dropout)
    return spec.build(BuildContext(num_items=30, max_len=8))


class ConstantEncoder(SequenceEncoder):
    """Every user gets the same vector, plus a tiny component along one direction."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.init_vocabulary(30, 8, dim)
        self.scale = nn.Parameter(torch.tensor(1e-3))

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        base = torch.ones(items.shape[0], self.dim)
        base[:, 0] += self.scale * (items != 0).sum(dim=1).float()
        return EncoderOutput(torch.zeros(*items.shape, self.dim), base)


def test_centred_effective_rank_ignores_the_shared_direction() -> None:
    # Two rows that share a large offset along x and differ along y only.
    x = torch.tensor([[10.0, 1.0], [10.0, -1.0]])
    assert effective_rank(x) > 1.0  # not centred: two directions carry mass
    assert effective_rank(x, centre=True) == pytest.approx(1.0)  # the differences: one line
    with pytest.raises(ValueError, match="after centring"):
        effective_rank(torch.ones(3, 2), centre=True)


def test_sample_windows_are_the_last_items_of_a_seeded_sample() -> None:
    sequences = Csr.from_lists([[1, 2, 3], [], [4, 5, 6, 7, 8], [9]])
    windows = sample_windows(sequences, max_len=3, sample_users=10, seed=0)
    # Every non-empty row, in order, its last 3 items, left-padded.
    assert windows.tolist() == [[1, 2, 3], [6, 7, 8], [0, 0, 9]]
    many = rows(50)
    first = sample_windows(many, 8, sample_users=20, seed=3)
    assert first.shape == (20, 8)
    assert torch.equal(first, sample_windows(many, 8, sample_users=20, seed=3))
    assert not torch.equal(first, sample_windows(many, 8, sample_users=20, seed=4))
    with pytest.raises(ValueError, match="at least 2"):
        sample_windows(many, 8, sample_users=1, seed=0)


def test_measure_is_repeatable_restores_the_mode_and_leaves_the_random_stream() -> None:
    model = encoder()
    monitor = RepresentationMonitor.from_sequences(rows(64), 8, identity_view, seed=0)
    model.train()
    torch.manual_seed(123)
    found = monitor.measure(model)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # measuring drew nothing from the global stream
    assert model.training
    assert set(found) == set(MEASURES)
    assert monitor.measure(model) == found
    assert 1.0 <= found["rep_erank"] <= 16.0
    assert 0.0 < found["rep_align"] <= 4.0
    assert found["rep_uniform"] < 0.0
    model.eval()
    monitor.measure(model)
    assert not model.training


def test_dropout_makes_views_differ_and_no_dropout_aligns_them_exactly() -> None:
    sequences = rows(40)
    with_dropout = RepresentationMonitor.from_sequences(sequences, 8, identity_view)
    assert with_dropout.measure(encoder(dropout=0.3))["rep_align"] > 0.0
    assert with_dropout.measure(encoder(dropout=0.0))["rep_align"] == pytest.approx(0.0, abs=1e-9)


def test_a_collapsed_encoder_is_measured_as_collapsed_and_warned_about() -> None:
    monitor = RepresentationMonitor.from_sequences(rows(64), 8, identity_view)
    healthy = monitor.measure(encoder())
    collapsed = monitor.measure(ConstantEncoder())
    assert collapsed["rep_erank"] == pytest.approx(1.0, abs=0.05)  # one direction of change
    assert collapsed["rep_std"] < 0.01 < healthy["rep_std"]
    assert collapsed["rep_uniform"] > healthy["rep_uniform"]  # all vectors nearly equal
    warning = collapse_warning({"epoch": 3, **collapsed}, dim=16)
    assert warning is not None
    assert "pretrain epoch 3" in warning and "of 16 dimensions" in warning
    assert collapse_warning({"epoch": 3, **healthy}, dim=16) is None


class IdenticalEncoder(ConstantEncoder):
    """Exactly the same vector for every user."""

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        user = torch.ones(items.shape[0], self.dim) * self.scale
        return EncoderOutput(torch.zeros(*items.shape, self.dim), user)


def test_identical_vectors_have_rank_zero_instead_of_an_error() -> None:
    monitor = RepresentationMonitor.from_sequences(rows(16), 8, identity_view)
    found = monitor.measure(IdenticalEncoder())
    assert found["rep_erank"] == 0.0 and found["rep_std"] == 0.0
    assert collapse_warning({"epoch": 1, **found}, dim=16) is not None


@pytest.mark.parametrize(
    ("erank", "dim", "warns"), [(6.3, 64, True), (6.4, 64, False), (1.0, 8, False), (0.7, 8, True)]
)
def test_warning_threshold_is_a_tenth_of_the_dimension(erank: float, dim: int, warns: bool) -> None:
    assert (collapse_warning({"epoch": 1, "rep_erank": erank}, dim) is not None) is warns
    assert collapse_warning({"epoch": 1}, dim) is None  # no measure: nothing to say


@pytest.mark.parametrize("objective", ["clue", "masked_item", "infonce"])
def test_every_pretraining_objective_logs_the_measures(
    objective: str, tmp_path: Path, make_tiny_recipe: Any
) -> None:
    recipe = make_tiny_recipe()
    recipe["pretrain"]["objective"] = {"kind": objective}
    if objective == "clue":
        recipe["pretrain"]["objective"].update(projector_dim=16, predictor_dim=8)
    recipe["pretrain"]["train"]["epochs"] = 2
    recipe["finetune"]["train"]["epochs"] = 1
    run_dir = run(recipe, out=tmp_path / "run", console=Console(file=io.StringIO())).run_dir
    with (run_dir / "pretrain" / "history.csv").open() as handle:
        history = list(csv.DictReader(handle))
    assert [row["epoch"] for row in history] == ["1", "2"]
    for row in history:
        for key in MEASURES:
            assert float(row[key]) == float(row[key])  # a finite number in every epoch
        assert 1.0 <= float(row["rep_erank"]) <= 16.0
