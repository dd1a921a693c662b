"""Tests for ``benchmarks/seeds_table.py --table paper``: every row of the CLUE paper's
sequential-recommendation table has its recipes under one protocol, rows that cannot run
here are left out with the reason, the jobs' order, and the table built from a fake runs
directory; and for ``benchmarks/device_paper_table.sh``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

from clue_fw.recipe import load_recipe
from clue_fw.registry import build_registry, reset_registry

st = load_benchmark("seeds_table")
ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"


@pytest.fixture
def with_s3rec() -> object:
    import clue_s3rec

    reset_registry(build_registry(extra_plugins=[(clue_s3rec, "clue-s3rec (test)")]))
    yield
    reset_registry(None)


def ml1m_root(tmp_path: Path, beauty: bool = False) -> Path:
    """A data root whose files exist (the paper plan only checks that they do)."""
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ml-1m_sequences.txt").write_text("1 1 2 3\n")
    (tmp_path / "ml-1m" / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n")
    if beauty:
        (tmp_path / "Beauty").mkdir()
        (tmp_path / "Beauty" / "Beauty.txt").write_text("1 1 2 3\n")
        (tmp_path / "Beauty" / "Beauty_item2attributes.json").write_text('{"1": [1]}')
    return tmp_path


def test_every_row_has_a_recipe_at_both_lengths_and_beauty_has_its_three() -> None:
    for dataset in ("ml30", "ml50"):
        for suffix in st.PAPER_ROWS.values():
            assert (RECIPES / f"{dataset}_{suffix}.yaml").is_file(), (dataset, suffix)
    beauty = {s for s in st.PAPER_ROWS.values() if (RECIPES / f"beauty50_{s}.yaml").exists()}
    assert beauty == {"s3rec", "dropout", "zero"}


@pytest.mark.parametrize("dataset", ["ml30", "ml50", "beauty50"])
def test_the_rows_share_one_protocol(dataset: str, with_s3rec: object) -> None:
    """Same data, evaluation, fine-tuning schedule and early stopping for every row; the
    pre-trained rows share their pre-training schedule; each row is what it says."""
    recipes = {
        title: load_recipe(path)
        for title, suffix in st.PAPER_ROWS.items()
        if (path := RECIPES / f"{dataset}_{suffix}.yaml").exists()
    }
    first = next(iter(recipes.values()))
    for title, recipe in recipes.items():
        assert recipe.data == first.data, title
        head = recipe.finetune.head
        assert (head.kind, head.exclude_seen, head.ties, head.ks) == (
            "next_item",
            "history",
            "pessimistic",
            first.finetune.head.ks,
        ), title
        assert recipe.finetune.train == first.finetune.train, title
        assert recipe.finetune.patience == first.finetune.patience == 10, title
        assert recipe.finetune.monitor == first.finetune.monitor, title
        assert recipe.finetune.train.history == "all"
        if recipe.pretrain is not None:
            # Beauty's S3-Rec keeps its authors' 150 epochs (their released encoder's)
            long = dataset == "beauty50" and title == "S3-Rec"
            assert recipe.pretrain.train.epochs == (150 if long else 20), title
            assert recipe.pretrain.train.batch_size == 256 and recipe.pretrain.train.lr == 0.001
    kinds = {
        title: (r.backbone.kind, r.pretrain and r.pretrain.objective.kind)
        for title, r in recipes.items()
    }
    expected = {
        "GRU4Rec": ("gru", None),
        "Caser": ("caser", None),
        "Self-attentive (SASRec)": ("transformer", None),
        "CLUEZero": ("transformer", None),
        "PeterRec (masked item)": ("transformer", "masked_item"),
        "S3-Rec": ("transformer", "s3rec"),
        "CLUE": ("transformer", "clue"),
    }
    assert kinds == {title: expected[title] for title in recipes}
    if "Caser" in recipes:  # no per-position states: the user vector predicts
        assert recipes["Caser"].finetune.head.loss_positions == "ur"
        assert recipes["Caser"].backbone.length is None  # L = data.max_len
    # the pre-trained rows and CLUEZero share the backbone: only pre-training differs
    shared = [
        recipes[t].backbone
        for t in ("CLUEZero", "PeterRec (masked item)", "S3-Rec", "CLUE")
        if t in recipes
    ]
    assert all(backbone == shared[0] for backbone in shared)
    if "Self-attentive (SASRec)" in recipes:  # SASRec's own ML-1M dropout
        assert recipes["Self-attentive (SASRec)"].backbone.dropout == 0.2
    if "S3-Rec" in recipes and dataset != "beauty50":  # ML-1M genres as item attributes
        objective = recipes["S3-Rec"].pretrain.objective
        assert (objective.attributes, objective.attributes_format) == (
            "ml-1m/movies.dat",
            "movielens",
        )


def test_rows_that_cannot_run_here_are_left_out_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUE_DATA_DIR", str(ml1m_root(tmp_path)))
    found, left_out = st.paper_recipes(RECIPES, list(st.PAPER_DATASETS))
    assert {(d, t) for d, t in found} == {
        (d, t) for d in ("ml30", "ml50") for t in st.PAPER_ROWS if t != "S3-Rec"
    }
    text = "\n".join(left_out)
    assert "MovieLens30 S3-Rec (ml30_s3rec.yaml): needs the clue-s3rec plugin" in text
    assert "Beauty CLUE (beauty50_dropout.yaml): Data file not found" in text
    assert len(left_out) == 2 + 3  # S3-Rec at 30 and 50; Beauty's three rows


def test_with_the_plugin_and_beauty_every_row_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_s3rec: object
) -> None:
    monkeypatch.setenv("CLUE_DATA_DIR", str(ml1m_root(tmp_path, beauty=True)))
    found, left_out = st.paper_recipes(RECIPES, list(st.PAPER_DATASETS))
    assert left_out == []
    (tmp_path / "ml-1m" / "movies.dat").unlink()  # S3-Rec's item attributes
    _, left_out = st.paper_recipes(RECIPES, ["ml30"])
    assert left_out == [
        f"MovieLens30 S3-Rec (ml30_s3rec.yaml): pretrain.objective.attributes: Data file not "
        f"found: {tmp_path}/ml-1m/movies.dat. Set CLUE_DATA_DIR to the folder that holds it "
        f"(now: {tmp_path}), or fetch it with `clue data download ml-1m` / `clue data "
        "download ml-100k`."
    ]
    assert len(found) == 7 + 7 + 3
    runs = tmp_path / "runs"
    jobs = st.paper_jobs(found, [0, 1], runs)
    assert len(jobs) == 17 * 2
    assert [seed for _, seed, _ in jobs] == [0] * 17 + [1] * 17  # seed by seed
    stems = [path.stem for path, _, _ in jobs[:17]]
    assert stems[:9] == [  # the long runs first, pre-training before Caser
        "ml30_s3rec", "ml50_s3rec", "beauty50_s3rec",
        "ml30_dropout", "ml50_dropout", "beauty50_dropout",
        "ml30_masked_item", "ml50_masked_item",
        "ml30_caser_zero",
    ]  # fmt: skip
    assert jobs[0][2] == runs / "ml30_s3rec" / "seed0"
    assert st.paper_jobs(found, [0, 1], runs) == jobs  # the same order every call
    # a run an earlier call began is resumed before anything else starts
    (runs / "ml50_gru_zero" / "seed1").mkdir(parents=True)
    (runs / "ml50_gru_zero" / "seed1" / "recipe.yaml").write_text("name: x\n")
    assert st.paper_jobs(found, [0, 1], runs)[0][2] == runs / "ml50_gru_zero" / "seed1"


def fake_run(runs: Path, name: str, seed: int, ndcg: float) -> None:
    folder = runs / name / f"seed{seed}"
    folder.mkdir(parents=True)
    test = {"mrr@10": ndcg / 2, "recall@10": ndcg * 2, "ndcg@10": ndcg}
    (folder / "metrics.json").write_text(
        json.dumps({"test": test, "valid": test, "best_epoch": 3, "seconds": 10.0})
    )


def test_the_table_has_the_papers_shape(tmp_path: Path) -> None:
    for seed, ndcg in ((0, 0.10), (1, 0.12)):
        fake_run(tmp_path, "ml30_gru_zero", seed, ndcg)
        fake_run(tmp_path, "ml30_caser_zero", seed, ndcg - 0.05)
    fake_run(tmp_path, "ml50_caser_zero", 0, 0.2)
    fake_run(tmp_path, "beauty50_zero", 0, 0.04)
    text = st.paper_table(tmp_path, list(st.PAPER_DATASETS), [0, 1, 2])
    lines = text.splitlines()
    assert lines[0] == (
        "| model | MovieLens30 MRR@10 | MovieLens30 Recall@10 | MovieLens30 NDCG@10 | "
        "MovieLens50 MRR@10 | MovieLens50 Recall@10 | MovieLens50 NDCG@10 | seeds |"
    )
    gru = next(line for line in lines if line.startswith("| GRU4Rec |"))
    assert "**0.1100 ± 0.0141**" in gru and gru.endswith("| - | - | - | 2 |")
    caser = next(line for line in lines if line.startswith("| Caser |"))
    assert "0.0600 ± 0.0141" in caser and "**0.2000 ± 0.0000**" in caser
    assert caser.endswith("| 1/2 |")  # seeds found: 1 at n = 50, 2 at n = 30
    assert not any(line.startswith("| CLUE |") for line in lines)  # no run: no row
    beauty = text.split("\n\n")[1].splitlines()
    assert beauty[0].startswith("| model | Beauty MRR@10 |")
    assert beauty[2].startswith("| CLUEZero | **0.0200 ± 0.0000** |")


def test_summarize_only_writes_the_markdown_and_json(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fake_run(runs, "ml30_caser_zero", 0, 0.1)
    out = tmp_path / "table.md"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "seeds_table.py"),
        "--table",
        "paper",
        "--datasets",
        "ml30",
        "--runs-dir",
        str(runs),
        "--summarize-only",
        "--markdown",
        str(out),
    ]
    env = {"CLUE_DATA_DIR": str(ml1m_root(tmp_path)), "CLUE_DISABLE_PLUGINS": "1"}
    done = subprocess.run(
        command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "left out: MovieLens30 S3-Rec" in done.stdout
    text = out.read_text()
    assert "| Caser | **0.0500 ± 0.0000** |" in text
    assert "| ml30_caser_zero | 1 |" in text and "| ml30_s3rec | 0 |" in text
    assert "1 of the 18 runs that can run here have finished." in text  # 6 rows x 3 seeds
    assert json.loads(out.with_suffix(".json").read_text())["runs"]["ml30_caser_zero"]


def test_recipes_and_table_together_are_refused() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "seeds_table.py"),
            "recipes/ml30_zero.yaml",
            "--table",
            "paper",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "give RECIPES or --table paper" in done.stderr


def test_the_device_script_runs_the_paper_table_resumably() -> None:
    script = (ROOT / "benchmarks" / "device_paper_table.sh").read_text()
    assert (
        subprocess.run(
            ["bash", "-n", str(ROOT / "benchmarks" / "device_paper_table.sh")]
        ).returncode
        == 0
    )
    assert "seeds_table.py --table paper" in script
    assert "--deadline" in script and "--summarize-only" in script
    assert 'kill -TERM -- -"$sweep"' in script  # the sweep's own process group, by id
    assert "source benchmarks/device_env.sh" in script


ML1M = Path(os.environ.get("CLUE_DATA_DIR", "/nonexistent")) / "ml-1m"


@pytest.mark.slow
@pytest.mark.skipif(not (ML1M / "movies.dat").is_file(), reason="ml-1m not under CLUE_DATA_DIR")
def test_the_s3rec_rows_read_the_18_ml1m_genres(with_s3rec: object) -> None:
    """The S3-Rec recipe's objective builds on the real data: every item has a genre."""
    import clue_s3rec

    from clue_fw.data.dataset import build_sequence_data
    from clue_fw.data.readers import read_sequence_file

    recipe = load_recipe(RECIPES / "ml30_s3rec.yaml")
    data = build_sequence_data(read_sequence_file(ML1M / "ml-1m_sequences.txt"))
    found = clue_s3rec.read_item_attributes(
        ML1M / "movies.dat", data.item_ids, file_format=recipe.pretrain.objective.attributes_format
    )
    assert len(found.names) == 18 and "Film-Noir" in found.names
    assert found.matrix[1 : data.num_items + 1].any(dim=1).all()
