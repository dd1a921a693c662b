"""benchmarks/speed.py: the parts that turn run histories into the published table."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def speed() -> ModuleType:
    return load_benchmark("speed")


def levers() -> ModuleType:
    return load_benchmark("speed_levers")


def test_time_to_quality_counts_training_and_evaluation_until_the_threshold() -> None:
    history = [
        {"epoch": 0, "valid ndcg@10": 0.01, "eval seconds": 0.5},
        {"epoch": 1, "valid ndcg@10": 0.05, "seconds": 1.0, "eval seconds": 0.25},
        {"epoch": 2, "valid ndcg@10": 0.0915, "seconds": 1.0, "eval seconds": 0.25},
        {"epoch": 3, "valid ndcg@10": 0.12, "seconds": 1.0, "eval seconds": 0.25},
    ]
    found = speed().time_to_quality(history, 0.0915)
    assert found == {"epoch": 2, "seconds": 3.0, "reached": True}
    missed = speed().time_to_quality(history[:2], 0.0915)
    assert missed == {"epoch": None, "seconds": 1.75, "reached": False}


def test_the_table_says_met_only_when_measured_within_target(tmp_path: Path) -> None:
    module = speed()
    record = {
        "machine": module.machine(),
        "command": "python benchmarks/speed.py",
        "results": {
            "a": {"what": "fast", "target": 5.0, "value": 4.0, "unit": "ms"},
            "b": {"what": "slow", "target": 5.0, "value": 6.0, "unit": "ms"},
            "c": {"what": "missing", "target": 5.0, "value": None, "unit": "ms"},
        },
    }
    module.write(tmp_path / "speed", record)
    table = (tmp_path / "speed.md").read_text()
    assert "| fast | none | <= 5.0 ms | 4.0 ms | yes |" in table
    assert "| slow | none | <= 5.0 ms | 6.0 ms | no |" in table
    assert "| missing | none | <= 5.0 ms | not measured | - |" in table
    assert json.loads((tmp_path / "speed.json").read_text())["results"]["a"]["value"] == 4.0


def test_a_fast_cpu_run_that_loses_quality_is_not_called_met(tmp_path: Path) -> None:
    module = speed()
    mean, std = module.ML30_DROPOUT_NDCG
    assert module.within_reference({"ndcg@10": mean - 0.99 * std})
    assert not module.within_reference({"ndcg@10": mean - 1.01 * std})
    record = {
        "machine": module.machine(),
        "command": "python benchmarks/speed.py",
        "results": {
            "cpu_ml30_dropout": {
                "what": "cpu",
                "target": 600.0,
                "value": 400.0,
                "unit": "s",
                "quality_ok": False,
            }
        },
    }
    module.write(tmp_path / "speed", record)
    assert (
        "| cpu | none | <= 600.0 s | 400.0 s | time yes, quality no |"
        in (tmp_path / "speed.md").read_text()
    )


def test_recbole_runs_only_when_asked_and_unknown_measures_are_refused() -> None:
    module = speed()
    default = module.chosen_measures("", with_recbole=False, gpu=True)
    assert "recbole" not in default and "eval_ml1m" in default
    assert "cpu_ml30_dropout" not in default
    assert module.chosen_measures("", with_recbole=True, gpu=False)[-1] == "recbole"
    assert module.chosen_measures("recbole", with_recbole=False, gpu=True) == ["recbole"]
    with pytest.raises(SystemExit, match="nope"):
        module.chosen_measures("eval_ml1m,nope", with_recbole=False, gpu=True)


def test_kept_results_merge_calls_and_the_table_names_each_rows_machine(
    tmp_path: Path,
) -> None:
    module = speed()
    cpu = {"gpu": None, "cpu": "x86_64", "cpu_cores": 2, "torch": "2.13.0", "date": "d1"}
    gpu = {"gpu": "NVIDIA H100", "cpu": "x86_64", "cpu_cores": 16, "torch": "2.11", "date": "d2"}
    first, second = tmp_path / "cpu.json", tmp_path / "gpu.json"
    first.write_text(
        json.dumps(
            {
                "machine": cpu,
                "results": {
                    "cpu_ml30_dropout": {"what": "cpu", "target": 600.0, "value": 637.4},
                    "eval_ml1m": {"what": "eval", "target": 5.0, "value": None},
                },
            }
        )
    )
    second.write_text(
        json.dumps(
            {
                "machine": gpu,
                "results": {
                    "eval_ml1m": {"what": "eval", "target": 5.0, "value": 4.2, "unit": "ms"}
                },
            }
        )
    )
    kept = module.kept_results([first, second])
    assert kept["eval_ml1m"]["value"] == 4.2  # the later file wins
    assert kept["eval_ml1m"]["machine"].startswith("NVIDIA H100")
    assert kept["cpu_ml30_dropout"]["machine"].startswith("no GPU, 2 CPU cores")
    module.write(tmp_path / "speed", {"machine": gpu, "command": "c", "results": kept})
    table = (tmp_path / "speed.md").read_text()
    assert "more than one machine" in table
    assert "| eval | none | <= 5.0 ms | 4.2 ms | yes | NVIDIA H100, torch 2.11, d2: " in table
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    try:
        module.kept_results([broken])
    except SystemExit as error:
        assert "not a speed.py JSON" in str(error)
    else:
        raise AssertionError("a broken JSON was kept")


# --------------------------------------------------------------------------- levers


def test_every_measure_says_which_levers_it_takes() -> None:
    module = speed()
    assert set(module.LEVERS_OF) == set(module.MEASURES)
    assert set().union(*module.LEVERS_OF.values()) == set(levers().LEVERS)
    # the 1M-user exact ranking has its own row, with the target
    assert module.MEASURES["synth_eval_all"][3] == 10.0


@pytest.mark.parametrize(
    ("name", "canonical", "overrides", "label"),
    [
        ("synth_eval", "synth_eval", [], "none"),
        (
            "synth_eval_all@bf16+blocks",
            "synth_eval_all@blocks=65536+bf16",
            ["finetune.head.item_block=65536", "finetune.head.score_precision=bf16"],
            "item_block 65,536; bf16 scores",
        ),
        (
            "eval_ml1m@batch=512+blocks=1024",
            "eval_ml1m@blocks=1024+batch=512",
            ["finetune.head.item_block=1024", "finetune.eval.batch_size=512"],
            "item_block 1,024; eval batch 512",
        ),
        (
            "synth_epochs@compile",
            "synth_epochs@compile",
            ["pretrain.train.compile=true", "finetune.train.compile=true"],
            "compile",
        ),
        (
            "cpu_ml30_dropout@seed=2+amp",
            "cpu_ml30_dropout@amp+seed=2",
            ["pretrain.train.precision=bf16", "finetune.train.precision=bf16", "seed=2"],
            "bf16 training; seed 2",
        ),
    ],
)
def test_a_measure_with_levers_has_one_name_and_its_overrides(
    name: str, canonical: str, overrides: list[str], label: str
) -> None:
    module = speed()
    measure, chosen = levers().parse(name, module.LEVERS_OF)
    assert measure == name.partition("@")[0]
    assert measure + chosen.suffix() == canonical == module.canonical(canonical)
    assert chosen.overrides == overrides
    assert chosen.label == label
    assert module.chosen_measures(name, with_recbole=False, gpu=True) == [canonical]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("synth_eval@turbo", "unknown lever 'turbo'"),
        ("synth_eval@compile", "does not take lever 'compile'"),
        ("recbole@blocks", "it takes: none"),
        ("synth_eval@batch", "needs a value"),
        ("synth_eval@blocks=0", "whole number above 0"),
        ("synth_eval@bf16=2", "takes no value"),
        ("synth_eval@bf16+bf16", "named twice"),
        ("synth_epochs@seed=1", "does not take lever 'seed'"),
        ("cpu_ml30_dropout@seed", "needs a value"),
        ("nope@bf16", "unknown measure 'nope'"),
    ],
)
def test_bad_levers_are_refused_saying_what_is_wrong(name: str, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        speed().canonical(name)


def eval_result(seconds: float, ndcg: float, machine: str = "m", **extra: Any) -> dict[str, Any]:
    return {
        "what": "ranking",
        "target": 3.0,
        "value": seconds,
        "unit": "s",
        "machine": machine,
        "metrics": {"ndcg@10": ndcg, "recall@10": 0.5},
        **extra,
    }


def test_the_table_names_the_levers_and_checks_them_against_no_levers(tmp_path: Path) -> None:
    module = speed()
    results = {
        "synth_eval": eval_result(4.0, 0.25),
        "synth_eval@blocks=65536": eval_result(2.5, 0.25, levers="item_block 65,536"),
        "synth_eval@bf16": eval_result(2.0, 0.2501, levers="bf16 scores"),
        "synth_eval@batch=4096": eval_result(2.0, 0.25 + 1e-15, levers="eval batch 4,096"),
        "synth_eval@blocks=1024": eval_result(2.0, 0.26, levers="item_block 1,024"),
        "synth_eval@blocks=8192": eval_result(3.0, 0.9, machine="other", levers="item_block 8,192"),
    }
    found = levers().agreement(results)
    assert found["synth_eval@blocks=65536"] == "metrics equal to no levers"
    assert found["synth_eval@bf16"] == "metrics within 0.0001 of no levers"
    apart = (0.25 + 1e-15) - 0.25
    assert found["synth_eval@batch=4096"] == (
        f"metrics equal to no levers up to the order of the sums ({apart:.1g})"
    )
    assert found["synth_eval@blocks=1024"] == "metrics DIFFER from no levers (largest by 0.01)"
    assert "synth_eval@blocks=8192" not in found  # another machine: not comparable
    module.write(
        tmp_path / "speed", {"machine": module.machine(), "command": "c", "results": results}
    )
    table = (tmp_path / "speed.md").read_text()
    assert "| measure | levers | target | measured | met | detail |" in table
    assert "| ranking | item_block 65,536 | <= 3.0 s | 2.5 s | yes | m: " in table
    assert "metrics equal to no levers |" in table
    assert "| ranking | none | <= 3.0 s | 4.0 s | no |" in table


def test_variants_of_one_measure_get_their_own_run_directories(tmp_path: Path) -> None:
    module = speed()
    names = ["cpu_ml30_dropout", "cpu_ml30_dropout@amp", "cpu_ml30_dropout@amp+seed=2"]
    dirs = [
        module.run_dir(tmp_path, "ml30_dropout_cpu", levers().parse(n, module.LEVERS_OF)[1])
        for n in names
    ]
    assert [d.name for d in dirs] == [
        "ml30_dropout_cpu",
        "ml30_dropout_cpu_amp",
        "ml30_dropout_cpu_amp_seed2",
    ]
