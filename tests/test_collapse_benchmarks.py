"""The planning and summaries of benchmarks/collapse.py and benchmarks/sensitivity.py,
on fake run directories (no training)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark_scripts import load_benchmark

collapse = load_benchmark("collapse")
sensitivity = load_benchmark("sensitivity")


def test_collapse_jobs_cover_every_variant_and_seed_with_a_short_finetune(tmp_path: Path) -> None:
    jobs = collapse.jobs(tmp_path, [0, 1], list(collapse.VARIANTS))
    assert len(jobs) == 2 * len(collapse.VARIANTS)
    assert len({job.run_dir for job in jobs}) == len(jobs)
    for job in jobs:
        assert "finetune.train.epochs=1" in job.overrides
        assert job.recipe.exists()
    paper = next(job for job in jobs if job.run_dir.parent.name == "clue_paper")
    assert paper.overrides == ("seed=0", "finetune.train.epochs=1")  # as shipped
    assert set(collapse.FIG6) <= set(collapse.VARIANTS)
    assert set(collapse.FIG7) <= set(collapse.VARIANTS)


def probe_rows(accuracy: float) -> dict:
    metrics = {"acc": accuracy, "balanced_acc": 0.5, "roc_auc": 0.6, "macro_f1": 0.4}
    rows = [
        {"features": "majority class", "classifier": "majority", "test": metrics},
        {"features": "encoder (pretrain)", "classifier": "logistic (L-BFGS)", "test": metrics},
        {"features": "bag of items, SVD-64", "classifier": "logistic (L-BFGS)", "test": metrics},
    ]
    return {"probes": rows}


def test_collapse_markdown_reads_the_last_epoch_and_the_linear_probe() -> None:
    summary = {
        "command": "python benchmarks/collapse.py summarize",
        "machine": {"host": "test"},
        "seeds": [0],
        "tasks": ["gender"],
        "variants": {
            "clue_paper": {
                "what": "as stated",
                "recipe": "recipes/table2/gender_clue.yaml",
                "overrides": [],
                "runs": {
                    "0": {
                        "history": [
                            {"rep_erank": 9.0, "loss": -0.5},
                            {"rep_erank": 3.0, "loss": -0.97},
                        ],
                        "probes": {"gender": probe_rows(0.7234)},
                    }
                },
            }
        },
    }
    text = collapse.markdown(summary)
    assert "| `clue_paper` (seed 0) | 3.0 | -0.970 | 0.7234 (bal. 0.500, AUC 0.600) |" in text
    assert "| bag of the same items, SVD-64 | - | - | 0.7234" in text


def write_run(run: Path, valid: float, test: float, erank: float | None) -> None:
    run.mkdir(parents=True)
    metrics = {"valid": {"ndcg@10": valid}, "test": {"ndcg@10": test}, "best_epoch": 3}
    (run / "metrics.json").write_text(json.dumps(metrics))
    if erank is not None:
        (run / "pretrain").mkdir()
        (run / "pretrain" / "history.csv").write_text(f"epoch,loss,rep_erank\n1,-0.9,{erank}\n")


def test_sensitivity_plans_every_view_and_strength_plus_cluezero(tmp_path: Path) -> None:
    jobs = sensitivity.jobs(tmp_path, [0])
    # CLUEZero once, then per strength each view and CLUEZero at that dropout p
    assert len(jobs) == 1 + (len(sensitivity.VIEWS) + 1) * len(sensitivity.STRENGTHS)
    zero_at_p = [job for job in jobs if "zero_dropout" in job.run_dir.parts]
    assert {job.overrides[1] for job in zero_at_p} == {
        f"backbone.dropout={s}" for s in sensitivity.STRENGTHS
    }
    assert {job.recipe.name for job in zero_at_p} == {"ml30_zero.yaml"}
    only = sensitivity.jobs(tmp_path, [0], ("zero_dropout",))
    assert [job.run_dir for job in only] == [job.run_dir for job in zero_at_p]
    dropout = [job for job in jobs if job.recipe.name == "ml30_dropout.yaml"]
    assert {job.overrides[1] for job in dropout} == {
        f"backbone.dropout={s}" for s in sensitivity.STRENGTHS
    }
    mask = [job for job in jobs if job.recipe.name == "ml30_mask.yaml"]
    assert {job.overrides[1] for job in mask} == {
        f"pretrain.views.0.rho={s}" for s in sensitivity.STRENGTHS
    }


def test_sensitivity_summary_keeps_cells_measured_elsewhere() -> None:
    here = {
        "views": {"mask": {"0.3": {"0": None}, "0.5": {"0": {"test_ndcg": 0.2}}}},
        "zero": {"0": None},
        "zero_dropout": {"0.1": {"0": {"test_ndcg": 0.3}}},
    }
    earlier = {
        "views": {"mask": {"0.3": {"0": {"test_ndcg": 0.1}}, "0.5": {"0": {"test_ndcg": 0.9}}}},
        "zero": {"0": {"test_ndcg": 0.12}},
    }
    merged = sensitivity.keep_earlier_cells({"command": "c", **here}, earlier)
    assert merged["views"]["mask"]["0.3"]["0"] == {"test_ndcg": 0.1}  # not here: kept
    assert merged["views"]["mask"]["0.5"]["0"] == {"test_ndcg": 0.2}  # here: the new run wins
    assert merged["zero"]["0"] == {"test_ndcg": 0.12}
    assert merged["zero_dropout"]["0.1"]["0"] == {"test_ndcg": 0.3}
    assert merged["command"] == "c"


def test_sensitivity_summary_and_markdown_from_runs(tmp_path: Path) -> None:
    write_run(sensitivity.run_dir(tmp_path, "mask", 0.3, 0), 0.13, 0.12, 4.5)
    write_run(tmp_path / "zero" / "seed0", 0.12, 0.1252, None)
    summary = sensitivity.summarize(tmp_path, [0], "cmd")
    assert summary["views"]["mask"]["0.3"]["0"]["rep_erank"] == 4.5
    assert summary["views"]["dropout"]["0.1"]["0"] is None
    text = sensitivity.markdown(summary)
    assert "CLUEZero (no pre-training), test: 0.1252" in text
    assert "| mask | not run | 0.1300 / 0.1200, erank 4.5 | not run |" in text
    sensitivity.plot(summary, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0
