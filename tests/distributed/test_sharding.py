"""Sharded batches: the processes' parts of every global batch make up one process's
batches; the torchrun environment and the batch-size check."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from clue_fw.data.examples import ExampleSet, Shard
from clue_fw.distributed import Distributed, check_batch_sizes, launch_from_environment
from clue_fw.errors import ClueError, RecipeError
from clue_fw.recipe import training_batch_sizes, validate_recipe


@pytest.mark.parametrize(("count", "batch_size", "world"), [(10, 4, 2), (9, 4, 2), (23, 6, 3)])
def test_the_parts_of_every_global_batch_are_one_process_batches(
    count: int, batch_size: int, world: int
) -> None:
    examples = ExampleSet({"x": torch.arange(count) * 10, "y": torch.arange(count)})
    seed = 7
    whole = list(examples.batches(batch_size, torch.Generator().manual_seed(seed), min_size=2))
    parts = []
    for rank in range(world):
        shard = Shard(rank, world)
        batches = examples.batches(
            batch_size, torch.Generator().manual_seed(seed), min_size=2, shard=shard
        )
        mine = []
        for batch in batches:
            assert batches.current is not None
            start, stop = batches.current.rows
            assert torch.equal(batches.current.tensors["x"][start:stop], batch["x"])
            assert batch["x"].shape[0] >= 1
            mine.append(batch)
        assert len(mine) == examples.num_batches(batch_size, 2, shard) == len(batches)
        parts.append(mine)
    # a last global batch smaller than the world size is skipped by every process
    kept = [b for b in whole if b["x"].shape[0] >= world]
    assert len(parts[0]) == len(kept)
    for index, batch in enumerate(kept):
        for name in ("x", "y"):
            joined = torch.cat([parts[rank][index][name] for rank in range(world)])
            assert torch.equal(joined, batch[name])


def test_an_evaluation_shard_is_a_contiguous_part() -> None:
    """Each of 3 processes scores a contiguous run of whole batches (here of 1 row)."""
    examples = ExampleSet({"x": torch.arange(7)})
    parts = []
    for rank in range(3):
        found = Distributed(rank, 3, torch.device("cpu"))._eval_batches(examples, 1)
        assert found is not None and found[2] == 7
        parts.append(examples.tensors["x"][found[0] : found[1]])
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4], [5, 6]]


def test_torchrun_environment() -> None:
    assert launch_from_environment({}) is None
    assert launch_from_environment({"WORLD_SIZE": "1", "RANK": "0"}) is None
    launch = launch_from_environment({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert launch is not None and (launch.rank, launch.world_size, launch.local_rank) == (3, 4, 1)
    with pytest.raises(ClueError, match="RANK is not set"):
        launch_from_environment({"WORLD_SIZE": "2"})
    with pytest.raises(ClueError, match="WORLD_SIZE='two' is not a whole number"):
        launch_from_environment({"WORLD_SIZE": "two"})
    with pytest.raises(ClueError, match="RANK=2 and LOCAL_RANK=2 do not fit WORLD_SIZE=2"):
        launch_from_environment({"WORLD_SIZE": "2", "RANK": "2"})


def test_batch_size_must_split_evenly(tiny_recipe: dict[str, Any]) -> None:
    recipe = copy.deepcopy(tiny_recipe)
    recipe["pretrain"]["train"]["batch_size"] = 30
    check_batch_sizes(training_batch_sizes(validate_recipe(recipe)), 2)
    with pytest.raises(RecipeError, match=r"pretrain.train.batch_size: 30 .* multiple of 4"):
        check_batch_sizes(training_batch_sizes(validate_recipe(recipe)), 4)
    recipe["pretrain"] = None  # a stage that does not run is not checked
    check_batch_sizes(training_batch_sizes(validate_recipe(recipe)), 4)
