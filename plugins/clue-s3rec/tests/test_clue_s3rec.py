"""The S3-Rec objective: clue_fw's objective contract, the attribute file, and learning."""

from __future__ import annotations

import json
import os
from pathlib import Path

import clue_s3rec
import numpy as np
import pytest
import torch

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import BuildContext
from clue_fw.errors import DataError
from clue_fw.registry import build_registry, reset_registry
from clue_fw.runner import run
from clue_fw.testing import contract_test

test_contract = contract_test(clue_s3rec)

NUM_ITEMS = 24
MAX_LEN = 8


def planted(item: int) -> list[int]:
    """The attributes planted on item ``item``: one of 4 "categories", one of 3 "brands"."""
    return [item % 4, 4 + item % 3]


def write_attributes(root: Path, table: object, name: str = "attrs.json") -> str:
    (root / name).write_text(json.dumps(table))
    return name


def context(root: Path, num_items: int = NUM_ITEMS) -> BuildContext:
    item_ids = np.arange(101, 101 + num_items)  # raw ids 101.. are items 1..
    return BuildContext(num_items, MAX_LEN, item_ids=item_ids, data_root=root)


def toy_setup(
    tmp_path: Path, **weights: float
) -> tuple[torch.nn.Module, clue_s3rec.S3RecObjective]:
    table = {str(100 + i): planted(i) for i in range(1, NUM_ITEMS + 1)}
    spec = clue_s3rec.S3RecSpec(
        attributes=write_attributes(tmp_path, table),
        aap_weight=weights.get("aap", 0.0),
        mip_weight=weights.get("mip", 0.0),
        map_weight=weights.get("map", 0.0),
        sp_weight=weights.get("sp", 0.0),
        negatives=4,
    )
    torch.manual_seed(0)
    ctx = context(tmp_path)
    encoder = TransformerSpec(dim=16, blocks=1, heads=2, dropout=0.0).build(ctx)
    return encoder, spec.build(ctx, encoder)


def toy_batches(count: int) -> list[torch.Tensor]:
    """Cyclic runs through the catalogue (i, i + 1, ...): item and segment order is learnable."""
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        start = torch.randint(0, NUM_ITEMS, (32, 1), generator=generator)
        batches.append((start + torch.arange(MAX_LEN)) % NUM_ITEMS + 1)
    return batches


def train(encoder: torch.nn.Module, objective: clue_s3rec.S3RecObjective, steps: int) -> list:
    """Adam on ``steps`` batches; each step's terms."""
    parameters = list(encoder.parameters()) + list(objective.parameters())
    optimiser = torch.optim.Adam(parameters, lr=1e-2)
    view = ViewPipeline.from_specs([], context(Path(".")))
    generator = torch.Generator().manual_seed(0)
    history = []
    encoder.train()
    for items in toy_batches(steps):
        output = objective(encoder, items, view, generator)
        optimiser.zero_grad()
        output.loss.backward()
        optimiser.step()
        history.append({k: float(v) for k, v in output.terms.items()})
    return history


@pytest.mark.parametrize("term", clue_s3rec.TERMS)
def test_each_term_decreases_on_a_toy_problem(tmp_path: Path, term: str) -> None:
    encoder, objective = toy_setup(tmp_path, **{term: 1.0})
    history = train(encoder, objective, 60)
    assert set(history[0]) == {term}  # a zero weight is not even computed
    first = np.mean([h[term] for h in history[:5]])
    last = np.mean([h[term] for h in history[-5:]])
    assert last < 0.75 * first, f"{term}: {first:.3f} -> {last:.3f}"


def test_aap_learns_a_planted_item_to_attribute_map(tmp_path: Path) -> None:
    encoder, objective = toy_setup(tmp_path, aap=1.0)
    train(encoder, objective, 60)
    encoder.eval()
    with torch.no_grad():
        single = torch.zeros(NUM_ITEMS, MAX_LEN, dtype=torch.long)
        single[:, -1] = torch.arange(1, NUM_ITEMS + 1)  # each item alone
        scores = objective.attribute_scores(encoder(single).states[:, -1], "aap")
    names = clue_s3rec.read_item_attributes(
        tmp_path / "attrs.json", np.arange(101, 101 + NUM_ITEMS)
    ).names
    predicted = [{int(names[c]) for c in row.topk(2).indices.tolist()} for row in scores]
    correct = sum(p == set(planted(i)) for i, p in enumerate(predicted, start=1))
    assert correct == NUM_ITEMS, f"{correct}/{NUM_ITEMS} items get their planted attributes"


def test_attribute_file_aligns_with_item_ids(tmp_path: Path) -> None:
    # raw 7 -> item 2; "99" is not in the data (ignored); raw 3 (item 1) has no entry
    name = write_attributes(tmp_path, {"7": [5, "x"], "99": [1], "11": [5]})
    found = clue_s3rec.read_item_attributes(tmp_path / name, np.array([3, 7, 11]))
    assert found.names == ["5", "x"]
    assert found.matrix.shape == (5, 2)  # padding, 3 items, [MASK]
    assert found.matrix.tolist() == [
        [False, False],
        [False, False],
        [True, True],
        [True, False],
        [False, False],
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "holds a JSON list"),
        ('{"101": 3}', "must be a list of attribute ids"),
        ('{"555": [1]}', "names no attribute of any item in the data"),
        # The core's guarded JSON reader (these were a RecursionError and a ValueError):
        ("[" * 100_000 + "]" * 100_000, "nests arrays or objects too deeply"),
        ('{"101": [' + "7" * 5000 + "]}", "is refused: Exceeds the limit"),
    ],
)
def test_invalid_attribute_file_is_a_data_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    spec = clue_s3rec.S3RecSpec(attributes="bad.json")
    ctx = context(tmp_path)
    encoder = TransformerSpec(dim=16, blocks=1, heads=2).build(ctx)
    with pytest.raises(DataError, match=message) as caught:
        spec.build(ctx, encoder)
    assert "pretrain.objective.attributes" in str(caught.value)
    assert str(tmp_path / "bad.json") in str(caught.value)


def test_attribute_file_over_the_cap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "big.json").write_text('{"101": [1, 2, 3]}')
    monkeypatch.setenv("CLUE_MAX_FILE_BYTES", "10")
    spec = clue_s3rec.S3RecSpec(attributes="big.json")
    ctx = context(tmp_path)
    encoder = TransformerSpec(dim=16, blocks=1, heads=2).build(ctx)
    with pytest.raises(DataError, match="is refused: it is larger than 10 bytes"):
        spec.build(ctx, encoder)


def test_attribute_file_that_is_a_named_pipe_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.json")
    spec = clue_s3rec.S3RecSpec(attributes="pipe.json")
    ctx = context(tmp_path)
    encoder = TransformerSpec(dim=16, blocks=1, heads=2).build(ctx)
    with pytest.raises(DataError, match="it is a named pipe"):
        spec.build(ctx, encoder)


def test_missing_attribute_file_names_the_field_and_file(tmp_path: Path) -> None:
    spec = clue_s3rec.S3RecSpec(attributes="nowhere.json")
    ctx = context(tmp_path)
    encoder = TransformerSpec(dim=16, blocks=1, heads=2).build(ctx)
    with pytest.raises(DataError, match="pretrain.objective.attributes") as caught:
        spec.build(ctx, encoder)
    assert "nowhere.json" in str(caught.value)


def test_movielens_genres_are_the_attributes(tmp_path: Path) -> None:
    (tmp_path / "movies.dat").write_text(
        "3::Toy (1995)::Animation|Comedy\n7::Heat (1995)::Action\n99::Gone::Drama\n",
        encoding="latin-1",
    )
    found = clue_s3rec.read_item_attributes(
        tmp_path / "movies.dat", np.array([7, 3, 11]), file_format="movielens"
    )
    assert found.names == ["Action", "Animation", "Comedy"]  # Drama: movie 99 not in the data
    assert found.matrix.tolist() == [
        [False, False, False],
        [True, False, False],  # item 1 is movie 7
        [False, True, True],  # item 2 is movie 3
        [False, False, False],  # movie 11 has no line
        [False, False, False],
    ]
    spec = clue_s3rec.S3RecSpec(attributes="movies.dat", attributes_format="movielens")
    assert spec.model_dump()["attributes_format"] == "movielens"
    assert "attributes_format" not in clue_s3rec.S3RecSpec().model_dump()  # old recipe sha256


def test_a_movies_file_that_is_not_movielens_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "movies.dat").write_text("3,Toy,Comedy\n")
    spec = clue_s3rec.S3RecSpec(attributes="movies.dat", attributes_format="movielens")
    ctx = context(tmp_path)
    encoder = TransformerSpec(dim=16, blocks=1, heads=2).build(ctx)
    with pytest.raises(DataError, match="expected 3 fields") as caught:
        spec.build(ctx, encoder)
    assert str(caught.value).startswith("pretrain.objective.attributes: ")


def test_only_sp_reads_no_position_states() -> None:
    assert "AAP, MIP, MAP" in clue_s3rec.S3RecSpec().position_states_use("pretrain.objective")
    only_sp = clue_s3rec.S3RecSpec(aap_weight=0.0, mip_weight=0.0, map_weight=0.0)
    assert only_sp.position_states_use("pretrain.objective") is None


def test_all_weights_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing to train"):
        clue_s3rec.S3RecSpec(aap_weight=0.0, mip_weight=0.0, map_weight=0.0, sp_weight=0.0)


def test_segment_mask_is_one_contiguous_run_of_real_items() -> None:
    items = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 5], [0, 1, 2, 3], [4, 5, 6, 7]])
    for seed in range(20):
        mask = clue_s3rec.segment_mask(items, torch.Generator().manual_seed(seed))
        assert not mask[0].any() and mask[1].tolist() == [False, False, False, True]
        assert not (mask & (items == 0)).any()
        for row, real in zip(mask[1:], (items[1:] != 0).sum(1).tolist(), strict=True):
            size = int(row.sum())
            assert 1 <= size <= max(1, real // 2)
            columns = row.nonzero().flatten()
            assert (columns.diff() == 1).all()


def test_pretrains_through_the_runner_with_a_side_file(tmp_path: Path) -> None:
    """The runner hands the data's item ids and the data root to the objective."""
    lines = [
        " ".join([str(u), *(str(100 + (u + k) % 20 + 1) for k in range(6))]) for u in range(60)
    ]
    (tmp_path / "seq.txt").write_text("\n".join(lines) + "\n")
    write_attributes(tmp_path, {str(100 + i): planted(i) for i in range(1, 21)}, "attrs.json")
    recipe = {
        "data": {"format": "sequences", "path": "seq.txt", "max_len": 6},
        "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2},
        "pretrain": {
            "objective": {"kind": "s3rec", "attributes": "attrs.json"},
            "train": {"epochs": 1, "batch_size": 16},
        },
        "finetune": {"head": {"kind": "next_item"}, "train": {"epochs": 1, "batch_size": 16}},
    }
    reset_registry(build_registry(extra_plugins=[(clue_s3rec, "clue-s3rec (test)")]))
    try:
        result = run(recipe, out=tmp_path / "run", console=None, data_root=tmp_path)
        recipe["pretrain"]["objective"]["attributes"] = "missing.json"
        with pytest.raises(DataError, match="pretrain.objective.attributes"):
            run(recipe, out=tmp_path / "run2", console=None, data_root=tmp_path)
    finally:
        reset_registry(None)
    assert "recall@10" in result.metrics["test"]
    assert (tmp_path / "run" / "pretrain" / "encoder.safetensors").is_file()
