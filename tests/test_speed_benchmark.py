"""benchmarks/speed.py: the parts that turn run histories into the published table."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def speed() -> ModuleType:
    return load_benchmark("speed")


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
    assert "| fast | <= 5.0 ms | 4.0 ms | yes |" in table
    assert "| slow | <= 5.0 ms | 6.0 ms | no |" in table
    assert "| missing | <= 5.0 ms | not measured | - |" in table
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
        "| cpu | <= 600.0 s | 400.0 s | time yes, quality no |"
        in (tmp_path / "speed.md").read_text()
    )


def test_recbole_runs_only_when_asked_and_unknown_measures_are_refused() -> None:
    module = speed()
    default = module.chosen_measures("", with_recbole=False, gpu=True)
    assert "recbole" not in default and "eval_ml1m" in default
    assert "cpu_ml30_dropout" not in default
    assert module.chosen_measures("", with_recbole=True, gpu=False)[-1] == "recbole"
    assert module.chosen_measures("recbole", with_recbole=False, gpu=True) == ["recbole"]
    try:
        module.chosen_measures("eval_ml1m,nope", with_recbole=False, gpu=True)
    except SystemExit as error:
        assert "nope" in str(error)
    else:
        raise AssertionError("an unknown measure was accepted")


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
    assert "| eval | <= 5.0 ms | 4.2 ms | yes | NVIDIA H100, torch 2.11, d2: " in table
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    try:
        module.kept_results([broken])
    except SystemExit as error:
        assert "not a speed.py JSON" in str(error)
    else:
        raise AssertionError("a broken JSON was kept")
