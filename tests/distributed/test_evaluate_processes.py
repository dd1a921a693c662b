"""``clue evaluate`` of the same weights in one process and in two (gloo): the metric
dicts are equal to the bit, and equal to the run's own metrics.json.

Two processes score whole evaluation batches of one process's pass
(:meth:`~clue_fw.distributed.Distributed.evaluate`) and add
every batch's sums in one process's order
(:meth:`~clue_fw.distributed.Distributed.gather_batch_sums`), so no float sum is
re-associated.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dp_launch import base_env, torchrun
from dp_processes import spawn
from dp_recipe import write_recipe
from rich.console import Console

from clue_fw.distributed import Distributed
from clue_fw.recipe import load_recipe
from clue_fw.runner import run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("eval_batch", [48, 64])  # 5 batches (3 + 2), 4 batches (2 + 2)
def test_one_and_two_processes_evaluate_the_same_weights_identically(
    tmp_path: Path, eval_batch: int
) -> None:
    recipe = write_recipe(
        tmp_path,
        finetune__eval={"batch_size": eval_batch},
        finetune__head={"kind": "next_item", "ks": [5, 10], "exclude_seen": "history"},
    )
    done = run(load_recipe(recipe), out=tmp_path / "run", console=Console(file=io.StringIO()))
    one_file, two_file = tmp_path / "one.json", tmp_path / "two.json"
    one = subprocess.run(
        [sys.executable, "-m", "clue_fw", "evaluate", str(done.run_dir), "--out", str(one_file)],
        cwd=tmp_path,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(["evaluate", str(done.run_dir), "--out", str(two_file)], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    mine, theirs = json.loads(one_file.read_text()), json.loads(two_file.read_text())
    assert theirs["processes"] == 2 and mine["processes"] == 1
    for split in ("valid", "test"):
        assert mine[split] == theirs[split], split  # exactly, not approximately
        assert mine[split] == done.metrics[split], split
    assert json.loads(two.stdout) == theirs  # rank 0 printed it, rank 1 nothing


def _gather(rank: int, world: int, out: Path) -> None:
    distributed = Distributed(rank, world, torch.device("cpu"))
    first, stop = (0, 3) if rank == 0 else (3, 5)
    mine = [
        {"count": torch.tensor(float(b)), "hits": torch.tensor([b, 2 * b], dtype=torch.int64)}
        for b in range(first, stop)
    ]
    found = distributed.gather_batch_sums(mine, first, 5)
    rows = [[float(s["count"]), s["hits"].tolist(), str(s["hits"].dtype)] for s in found]
    (out / f"rank{rank}.json").write_text(json.dumps(rows))


def test_gather_batch_sums_returns_every_batch_in_order_in_its_dtype(tmp_path: Path) -> None:
    spawn(_gather, tmp_path)
    expected = [[float(b), [b, 2 * b], "torch.int64"] for b in range(5)]
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected
