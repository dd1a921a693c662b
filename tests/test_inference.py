"""Tests of :mod:`clue_fw.inference`: load a finished run, embed users, recommend.

Two tiny runs are made once per module: ``pretrained`` (synthetic data, CLUE
pre-training, tied next-item weights, ``exclude_seen: history``) and ``zero`` (a
sequence file under a data root with non-contiguous raw item ids, no pre-training, an
output layer, ``exclude_seen: none``). The central checks: ``embed_users`` gives the very
vectors the run's evaluation computed, and ``recommend``'s top-1 is the argmax of the
head's scores after exclusion.
"""

from __future__ import annotations

import io
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from rich.console import Console

from clue_fw import load_run, run
from clue_fw.components import BuildContext
from clue_fw.data.dataset import leave_one_out
from clue_fw.errors import CheckpointError, ClueError, DataError, RunDirectoryError
from clue_fw.inference import ItemCatalogue, LoadedRun, UnknownItemsWarning
from clue_fw.training.loop import evaluate

ROOT = Path(__file__).resolve().parents[1]


def quiet_run(recipe: dict[str, Any], out: Path, data_root: Path | None = None) -> Path:
    console = Console(file=io.StringIO())
    return run(recipe, out=out, console=console, data_root=data_root).run_dir


def write_sequences(path: Path, users: int = 120, seed: int = 0) -> None:
    """A sequence file with raw item ids 1000, 1003, 1006, ... (not the internal ids)."""
    rng = np.random.default_rng(seed)
    lines = []
    for user in range(users):
        length = int(rng.integers(5, 14))
        start = int(rng.integers(0, 30))
        items = [1000 + 3 * ((start + step * 2) % 30) for step in range(length)]
        lines.append(" ".join(map(str, [7000 + user, *items])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, make_tiny_recipe: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("inference")
    pretrained = make_tiny_recipe()
    pretrained["finetune"]["train"]["epochs"] = 2
    zero = make_tiny_recipe()
    del zero["pretrain"]
    zero["data"] = {"format": "sequences", "path": "seqs/data.txt", "max_len": 6}
    zero["finetune"]["head"] = {"kind": "next_item", "tie_weights": False, "exclude_seen": "none"}
    zero["finetune"]["train"]["epochs"] = 2
    data_root = root / "data"
    write_sequences(data_root / "seqs" / "data.txt")
    return {
        "root": root,
        "data_root": data_root,
        "pretrained": quiet_run(pretrained, root / "pretrained"),
        "zero": quiet_run(zero, root / "zero", data_root),
    }


def load(runs: dict[str, Any], name: str, stage: str = "finetune") -> LoadedRun:
    return load_run(runs[name], stage, device="cpu", data_root=runs["data_root"])  # type: ignore[arg-type]


def task_of(loaded: LoadedRun) -> Any:
    spec = loaded.recipe.finetune
    context = BuildContext(num_items=len(loaded.catalogue), max_len=loaded.max_len)
    return spec.head.make_task(loaded.task_data(), context, spec.train.history)


def raw_histories(loaded: LoadedRun, csr: Any) -> dict[int, list[int]]:
    """The rows of an internal-id Csr as raw ids, keyed by raw user id."""
    users = loaded.task_data().sequences.user_ids
    return {
        int(users[row]): loaded.catalogue.to_raw(csr.row(row)).tolist()
        for row in range(csr.num_rows)
    }


# --------------------------------------------------------------------------- user vectors


@pytest.mark.parametrize("name", ["pretrained", "zero"])
def test_embed_users_gives_the_vectors_the_runs_evaluation_used(
    runs: dict[str, Any], name: str
) -> None:
    loaded = load(runs, name)
    task = task_of(loaded)
    size = loaded.recipe.finetune.eval.batch_size
    with torch.no_grad():
        expected = torch.cat(
            [loaded.encoder(batch["items"]).user for batch in task.valid.batches(size)]
        )
    valid_inputs = leave_one_out(loaded.task_data().sequences).train
    result = loaded.embed_users(raw_histories(loaded, valid_inputs))
    assert result.report.clean
    assert result.users == [int(u) for u in loaded.task_data().sequences.user_ids]
    assert torch.equal(result.vectors, expected)
    # ... and the loaded weights are the best ones: the run's own valid metrics again
    assert loaded.head is not None
    again = evaluate(loaded.head, loaded.encoder, task.valid, size, split="valid")
    assert again == pytest.approx(loaded.metrics["valid"], abs=1e-6)  # type: ignore[index]


def test_embed_run_users_reads_what_the_test_split_reads(runs: dict[str, Any]) -> None:
    loaded = load(runs, "zero")
    task = task_of(loaded)
    with torch.no_grad():
        expected = loaded.encoder(task.test.tensors["items"]).user
    result = loaded.embed_run_users(batch_size=1000)
    assert result.users == loaded.task_data().sequences.user_ids.tolist()
    torch.testing.assert_close(result.vectors, expected, rtol=0, atol=1e-6)


def test_a_long_sequence_keeps_its_most_recent_items(runs: dict[str, Any]) -> None:
    loaded = load(runs, "pretrained")
    items = loaded.catalogue.raw_ids.tolist()
    long = [items[i % len(items)] for i in range(3 * loaded.max_len + 1)]
    vectors = loaded.embed_users([long, long[-loaded.max_len :], long[: loaded.max_len]]).vectors
    assert torch.equal(vectors[0], vectors[1])
    assert not torch.equal(vectors[0], vectors[2])


def test_unknown_items_are_skipped_and_reported(runs: dict[str, Any]) -> None:
    loaded = load(runs, "zero")
    known = [1000, 1003, 1006]
    odd = [1000, 5, 1003, "x", 1006, 2.5, True, 2**70]
    sequences = {"a": odd, "b": [5, 5], "c": [], "d": known}
    with pytest.warns(UnknownItemsWarning, match=r"skipped 7 item id\(s\) \(5 distinct"):
        result = loaded.embed_users(sequences)
    report = result.report
    assert result.users == ["a", "d"]
    assert (report.sequences, report.unknown_items, report.users_with_unknown) == (4, 7, 2)
    assert report.unknown_examples == (5, "x", 2.5, True, 2**70)
    assert report.empty_users == ("b", "c") and report.empty_count == 2
    assert "left out 2 user(s)" in report.summary()
    assert torch.equal(result.vectors[0], result.vectors[1])  # a's known items are d's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loaded.embed_users({"d": known}).report.clean


def test_sequences_that_are_not_lists_of_ids_are_refused(runs: dict[str, Any]) -> None:
    loaded = load(runs, "pretrained")
    with pytest.raises(DataError, match=r"user 0 is of type int.*\[\[10, 20, 30\]\]"):
        loaded.embed_users([1, 2, 3])  # type: ignore[list-item]
    with pytest.raises(DataError, match="not str"):
        loaded.embed_users("1 2 3")  # type: ignore[arg-type]
    empty = loaded.embed_users([])
    assert empty.users == [] and empty.vectors.shape == (0, loaded.encoder.dim)


def test_the_pretrain_stage_loads_the_pretrained_encoder(runs: dict[str, Any]) -> None:
    from clue_fw.training.checkpoint import load_checkpoint

    pretrained = load(runs, "pretrained", "pretrain")
    finetuned = load(runs, "pretrained")
    tensors, _ = load_checkpoint(runs["pretrained"] / "pretrain" / "encoder.safetensors")
    weight = pretrained.encoder.item_embedding.weight
    assert torch.equal(weight, tensors["encoder.item_embedding.weight"])
    assert np.array_equal(pretrained.catalogue.raw_ids, finetuned.catalogue.raw_ids)
    sequence = [pretrained.catalogue.raw_ids[:5].tolist()]
    assert not torch.equal(
        pretrained.embed_users(sequence).vectors, finetuned.embed_users(sequence).vectors
    )
    assert pretrained.metrics is not None  # the run finished; the stage is still 'pretrain'


def test_loading_does_not_move_the_callers_random_state(runs: dict[str, Any]) -> None:
    before = torch.get_rng_state()
    load(runs, "zero")
    assert torch.equal(before, torch.get_rng_state())


# --------------------------------------------------------------------------- recommend


@pytest.mark.parametrize(("name", "exclude"), [("pretrained", "history"), ("zero", "none")])
def test_recommend_top1_is_the_argmax_of_the_heads_scores(
    runs: dict[str, Any], name: str, exclude: str
) -> None:
    loaded = load(runs, name)
    assert loaded.exclude_seen == exclude  # the run's own protocol is the default
    histories = leave_one_out(loaded.task_data().sequences).train_valid
    sequences = raw_histories(loaded, histories)
    result = loaded.recommend(sequences, k=5)
    assert result.exclude_seen == exclude and result.items.shape == (len(sequences), 5)
    assert loaded.head is not None
    with torch.no_grad():
        windows = histories.recent_windows(loaded.max_len)
        scores = loaded.head.logits(loaded.encoder, loaded.encoder(windows).user)
    if exclude == "history":
        rows, values = histories.batch_pairs(torch.arange(histories.num_rows))
        scores[rows, values] = float("-inf")
    best = scores.max(dim=1)
    torch.testing.assert_close(result.scores[:, 0], best.values, rtol=0, atol=1e-6)
    assert torch.equal(result.items[:, 0], torch.from_numpy(loaded.catalogue.to_raw(best.indices)))
    assert bool((result.scores[:, :-1] >= result.scores[:, 1:]).all())


def test_recommend_never_returns_a_seen_item_under_history(runs: dict[str, Any]) -> None:
    loaded = load(runs, "zero")  # the run says none; history is asked for
    catalogue = loaded.catalogue.raw_ids.tolist()
    sequences = {"most": catalogue[:-3], "few": catalogue[:2]}
    result = loaded.recommend(sequences, k=5, exclude_seen="history")
    most, few = result.items.tolist()
    assert most[:3] and set(most[:3]) == set(catalogue[-3:]) and most[3:] == [-1, -1]
    assert torch.isinf(result.scores[0, 3:]).all()
    assert not set(few) & set(catalogue[:2])
    everything = loaded.recommend(sequences, k=len(catalogue) + 10, exclude_seen="none")
    assert everything.items.shape == (2, len(catalogue))
    assert sorted(everything.items[0].tolist()) == sorted(catalogue)


@pytest.mark.parametrize("name", ["pretrained", "zero"])
def test_recommend_in_item_blocks_gives_the_items_of_one_score_matrix(
    runs: dict[str, Any], name: str
) -> None:
    """A running top-k over blocks of items: the same items, in the same order (these
    scores have no ties), and the same scores, under each exclusion and with candidates."""
    loaded = load(runs, name)
    candidates = loaded.catalogue.raw_ids[::2].tolist()
    for settings in (
        {"exclude_seen": "history"},
        {"exclude_seen": "none"},
        {"exclude_seen": "history", "candidates": candidates},
    ):
        expected = loaded.recommend_run_users(k=8, **settings)
        for item_block in (16, 24, 1000):
            found = loaded.recommend_run_users(k=8, item_block=item_block, **settings)
            assert torch.equal(found.items, expected.items), (settings, item_block)
            torch.testing.assert_close(found.scores, expected.scores, rtol=1e-6, atol=1e-6)
            assert found.users == expected.users


def test_recommend_in_item_blocks_needs_a_head_that_scores_in_blocks(
    runs: dict[str, Any],
) -> None:
    loaded = load(runs, "pretrained")
    with pytest.raises(ClueError, match="item_block must be a whole number >= 1"):
        loaded.recommend([[1]], item_block=0)

    class AtOnce(torch.nn.Module):
        """A ranking head without item_scorer (as a plugin's may be)."""

        def __init__(self, head: Any) -> None:
            super().__init__()
            self.inner = head

        def item_scores(self, encoder: Any, items: torch.Tensor) -> torch.Tensor:
            return self.inner.item_scores(encoder, items)

    loaded.head = AtOnce(loaded.head)  # type: ignore[assignment]
    assert loaded.recommend([loaded.catalogue.raw_ids[:3].tolist()], k=2).items.shape == (1, 2)
    with pytest.raises(ClueError, match="does not score items in blocks"):
        loaded.recommend([[1]], item_block=8)


def test_item_vectors_are_what_recommend_scores_with(runs: dict[str, Any]) -> None:
    for name in ("pretrained", "zero"):
        loaded = load(runs, name)
        found = loaded.item_vectors()
        assert found.item_ids.tolist() == loaded.catalogue.raw_ids.tolist()
        sequence = {"u": loaded.catalogue.raw_ids[:4].tolist()}
        user = loaded.embed_users(sequence).vectors
        top = loaded.recommend(sequence, k=1, exclude_seen="none")
        scores = user @ found.vectors.T
        torch.testing.assert_close(top.scores[0, 0], scores.max(), rtol=0, atol=1e-5)
        assert top.items[0, 0] == found.item_ids[scores.argmax()]


def test_recommend_refuses_bad_arguments(runs: dict[str, Any]) -> None:
    loaded = load(runs, "pretrained")
    with pytest.raises(ClueError, match="exclude_seen must be 'history'"):
        loaded.recommend([[1]], exclude_seen="all")
    with pytest.raises(ClueError, match="k must be a whole number >= 1, not '0'"):
        loaded.recommend([[1]], k=0)
    with pytest.raises(ClueError, match=r"not 'True' \(bool\)"):
        loaded.recommend([[1]], k=True)


def test_recommend_takes_numpy_integers(runs: dict[str, Any]) -> None:
    import numpy as np

    loaded = load(runs, "pretrained")
    sequence = [loaded.catalogue.raw_ids[:3].tolist()]
    assert loaded.recommend(sequence, k=np.int64(2)).items.shape == (1, 2)
    assert loaded.embed_users(sequence, batch_size=np.int32(1)).vectors.shape[0] == 1


# --------------------------------------------------------------------------- refusals


def copy_run(runs: dict[str, Any], name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(runs[name], target)
    return target


def test_a_directory_that_is_not_a_run_is_refused(runs: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match="Run directory not found"):
        load_run(tmp_path / "missing")
    with pytest.raises(RunDirectoryError, match="holds no recipe.yaml"):
        load_run(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirectoryError, match="not a run directory"):
        load_run(tmp_path / "file")
    with pytest.raises(ClueError, match="stage must be 'finetune' or 'pretrain', not 'best'"):
        load_run(runs["pretrained"], "best")  # type: ignore[arg-type]


def test_an_unfinished_run_is_refused_for_the_finetune_stage(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    run_dir = copy_run(runs, "pretrained", tmp_path)
    (run_dir / "metrics.json").unlink()
    with pytest.raises(RunDirectoryError, match=r"has not finished \(it has no metrics.json\)"):
        load_run(run_dir)
    assert load_run(run_dir, "pretrain", device="cpu").metrics is None  # pre-training finished
    (run_dir / "pretrain" / "encoder.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no pretrain/encoder.safetensors \(pre-training"):
        load_run(run_dir, "pretrain")


def test_a_run_without_pretraining_has_no_pretrain_stage(runs: dict[str, Any]) -> None:
    with pytest.raises(RunDirectoryError, match="did not pre-train.*stage 'finetune'"):
        load_run(runs["zero"], "pretrain")


def test_a_missing_best_checkpoint_is_refused(runs: dict[str, Any], tmp_path: Path) -> None:
    run_dir = copy_run(runs, "pretrained", tmp_path)
    (run_dir / "finetune" / "best.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no finetune/best.safetensors"):
        load_run(run_dir)


def test_checkpoints_failing_the_identity_checks_are_refused(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    run_dir = copy_run(runs, "pretrained", tmp_path)
    best = run_dir / "finetune" / "best.safetensors"
    shutil.copy(run_dir / "finetune" / "last.safetensors", best)
    with pytest.raises(CheckpointError, match="not this run's best checkpoint"):
        load_run(run_dir)
    shutil.copy(runs["zero"] / "finetune" / "best.safetensors", best)
    with pytest.raises(CheckpointError, match="written by another run"):
        load_run(run_dir)


def test_an_edited_recipe_is_refused(runs: dict[str, Any], tmp_path: Path) -> None:
    run_dir = copy_run(runs, "pretrained", tmp_path)
    recipe = run_dir / "recipe.yaml"
    header, body = recipe.read_text().split("\n", 1)
    data = yaml.safe_load(body)
    data["seed"] = 1
    recipe.write_text(header + "\n" + yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(RunDirectoryError, match="was edited after the run started"):
        load_run(run_dir)
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(RunDirectoryError, match="does not start with the run identity line"):
        load_run(run_dir)


def test_data_that_changed_since_the_run_is_refused(runs: dict[str, Any], tmp_path: Path) -> None:
    changed = tmp_path / "data"
    write_sequences(changed / "seqs" / "data.txt", seed=1)
    with pytest.raises(DataError, match="not the data the run used"):
        load_run(runs["zero"], data_root=changed)  # its catalogue is in its data only
    with pytest.raises(DataError, match=r"Reading the data of the run in .*not found"):
        load_run(runs["zero"], data_root=tmp_path / "nowhere")
    # A run that pre-trained keeps its catalogue in its encoder: no data needed to load it.
    assert len(load_run(runs["pretrained"], data_root=tmp_path / "nowhere").catalogue) > 0


# --------------------------------------------------------------------------- catalogue


def test_the_catalogue_maps_raw_ids_both_ways_whatever_their_order() -> None:
    catalogue = ItemCatalogue(np.array([30, 10, 20]))
    assert catalogue.to_internal(np.array([10, 20, 30, 40])).tolist() == [2, 3, 1, 0]
    assert catalogue.to_raw(np.array([[1, 2], [3, 1]])).tolist() == [[30, 10], [20, 30]]
    packed = catalogue.encode_packed([5, 6], np.array([0, 2, 3]), np.array([10, 99, 99]))
    assert packed.users == [5] and packed.csr.values.tolist() == [2]
    assert packed.report.empty_users == (6,) and packed.report.unknown_distinct == 1
    with pytest.raises(DataError, match="twice"):
        ItemCatalogue(np.array([1, 1]))


# --------------------------------------------------------------------------- README


def test_readme_user_vectors_example_runs(runs: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Getting the user vectors out", 1)[1].split("\n## ", 1)[0]
    example = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    assert len(example.strip().splitlines()) <= 8
    loaded = load(runs, "pretrained")
    items = loaded.catalogue.raw_ids.tolist()
    example = example.replace('"runs/quickstart/RUN"', repr(str(runs["pretrained"])))
    example = re.sub(r"\[\d+(, \d+)*\]", repr(items[:3]), example)  # ids of this run
    namespace: dict[str, Any] = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["vectors"].shape == (2, loaded.encoder.dim)
