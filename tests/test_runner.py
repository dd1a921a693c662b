"""In-process tests of clue_fw.runner: stages, run directories, devices and monitors."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

from clue_fw.devices import resolve_device
from clue_fw.errors import DataError, RecipeError, RunDirectoryError
from clue_fw.recipe import validate_recipe
from clue_fw.runner import run


def quiet() -> Console:
    return Console(file=io.StringIO())


def test_cluezero_run_without_pretraining(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    data = copy.deepcopy(tiny_recipe)
    del data["pretrain"]
    data["finetune"]["train"]["history"] = "all"
    data["finetune"]["head"]["ks"] = [5, 10]
    result = run(data, out=tmp_path / "zero", console=quiet())
    assert not (tmp_path / "zero" / "pretrain").exists()
    assert (tmp_path / "zero" / "finetune" / "best.safetensors").is_file()
    assert set(result.metrics["test"]) == {
        f"{m}@{k}" for m in ("mrr", "recall", "ndcg") for k in (5, 10)
    }
    assert result.metrics["monitor"] == "ndcg@5"
    assert "no pre-training" in (tmp_path / "zero" / "run.log").read_text()
    assert (
        json.loads((tmp_path / "zero" / "metrics.json").read_text())["test"]
        == result.metrics["test"]
    )


def test_none_objective_equals_no_pretrain_section(
    tmp_path: Path, tiny_recipe: dict[str, Any]
) -> None:
    zero = copy.deepcopy(tiny_recipe)
    del zero["pretrain"]
    none = copy.deepcopy(tiny_recipe)
    none["pretrain"] = {"objective": {"kind": "none"}}
    a = run(zero, out=tmp_path / "zero", console=quiet()).metrics
    b = run(none, out=tmp_path / "none", console=quiet()).metrics
    assert not (tmp_path / "none" / "pretrain").exists()
    assert (a["valid"], a["test"]) == (b["valid"], b["test"])
    # a training objective still needs its optimisation settings
    needs_train = copy.deepcopy(tiny_recipe)
    del needs_train["pretrain"]["train"]
    with pytest.raises(RecipeError, match="pretrain.train is required"):
        validate_recipe(needs_train)


def test_same_seed_same_metrics_other_seed_differs(
    tmp_path: Path, tiny_recipe: dict[str, Any]
) -> None:
    data = copy.deepcopy(tiny_recipe)
    data["finetune"]["train"]["epochs"] = 1
    a = run(data, out=tmp_path / "a", console=quiet()).metrics
    b = run(data, out=tmp_path / "b", console=quiet()).metrics
    data["seed"] = 1
    c = run(data, out=tmp_path / "c", console=quiet()).metrics
    assert a["valid"] == b["valid"] and a["test"] == b["test"]
    assert a["valid"] != c["valid"]


def test_run_directory_rules(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    data = copy.deepcopy(tiny_recipe)
    data["pretrain"] = None
    data["finetune"]["train"]["epochs"] = 1
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RunDirectoryError, match="not empty"):
        run(data, out=out, console=quiet())
    assert (out / "old.txt").exists()
    with pytest.raises(RunDirectoryError, match="not a clue_fw run directory"):
        run(data, out=out, overwrite=True, console=quiet())  # --overwrite replaces runs only
    assert (out / "old.txt").exists()
    (out / "recipe.yaml").write_text("seed: 0\n")  # a file called recipe.yaml is no run
    with pytest.raises(RunDirectoryError, match="not a clue_fw run directory"):
        run(data, out=out, overwrite=True, console=quiet())
    first = run(data, out=tmp_path / "first", console=quiet()).run_dir
    (out / "recipe.yaml").write_bytes((first / "recipe.yaml").read_bytes())  # a real run's
    run(data, out=out, overwrite=True, console=quiet())
    assert not (out / "old.txt").exists()
    assert (out / "metrics.json").is_file()
    with pytest.raises(RunDirectoryError, match="no recipe.yaml"):
        run(data, resume=tmp_path / "empty", console=quiet())


def test_empty_existing_out_is_fine(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    data = copy.deepcopy(tiny_recipe)
    data["pretrain"] = None
    data["finetune"]["train"]["epochs"] = 1
    (tmp_path / "empty").mkdir()
    assert run(data, out=tmp_path / "empty", console=quiet()).run_dir == tmp_path / "empty"


def test_unknown_monitor(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    data = copy.deepcopy(tiny_recipe)
    data["pretrain"] = None
    data["finetune"]["monitor"] = "auc"
    with pytest.raises(RecipeError, match=r"finetune.monitor: 'auc' is not a metric.*ndcg@10"):
        run(data, out=tmp_path / "run", console=quiet())


def test_missing_data_file_creates_no_run_dir(
    tmp_path: Path, tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUE_DATA_DIR", str(tmp_path))
    data = copy.deepcopy(tiny_recipe)
    data["data"] = {"format": "sequences", "path": "nope/seq.txt"}
    with pytest.raises(DataError, match="not found"):
        run(data, out=tmp_path / "run", console=quiet())
    assert not (tmp_path / "run").exists()


def test_interaction_table_run(tmp_path: Path, tiny_recipe: dict[str, Any]) -> None:
    rows = []
    generator = torch.Generator().manual_seed(0)
    for user in range(1, 41):
        for t in range(8):
            item = int(torch.randint(1, 16, (1,), generator=generator))
            rows.append(f"{user}::{item}::4::{1000 + t}")
    (tmp_path / "ratings.dat").write_text("\n".join(rows) + "\n")
    data = copy.deepcopy(tiny_recipe)
    data["data"] = {"format": "interactions", "path": "ratings.dat", "max_len": 5}
    data["pretrain"]["train"]["batch_size"] = 16
    result = run(data, out=tmp_path / "run", console=quiet(), data_root=tmp_path)
    assert result.metrics["data"]["users"] == 40
    assert result.metrics["data"]["interactions"] == 320


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RecipeError, match="CUDA is not available"):
            resolve_device("cuda:0")


@pytest.mark.parametrize(
    "failure",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        ),
        MemoryError(),
    ],
)
def test_out_of_memory_mid_run_names_the_estimate(
    tmp_path: Path,
    tiny_recipe: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    failure: BaseException,
) -> None:
    """An allocation failure while training is a ResourceError naming the estimate made
    before the run, and leaves no metrics.json."""
    import clue_fw.runner
    from clue_fw.errors import ResourceError

    def out_of_memory(*args: Any, **kwargs: Any) -> None:
        raise failure

    monkeypatch.setattr(clue_fw.runner, "run_finetune", out_of_memory)
    with pytest.raises(ResourceError, match=r"Out of cpu memory during the run.*estimated"):
        run(validate_recipe(tiny_recipe), out=tmp_path / "run", console=quiet())
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_other_runtime_errors_are_not_called_out_of_memory(
    tmp_path: Path, tiny_recipe: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import clue_fw.runner

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(clue_fw.runner, "run_finetune", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        run(validate_recipe(tiny_recipe), out=tmp_path / "run", console=quiet())


def test_a_stage_without_batches_is_not_blamed_on_the_learning_rate(
    tmp_path: Path, tiny_recipe: dict[str, Any]
) -> None:
    """Only a non-finite loss gets the "lower the learning rate" advice."""
    from clue_fw.errors import NonFiniteError, TrainingError

    recipe = copy.deepcopy(tiny_recipe)
    recipe["data"]["num_users"] = 1
    with pytest.raises(TrainingError) as info:
        run(validate_recipe(recipe), out=tmp_path / "run", console=quiet())
    assert not isinstance(info.value, NonFiniteError)
    assert "has no batch to train on" in str(info.value)
    assert "train.lr" not in str(info.value)
