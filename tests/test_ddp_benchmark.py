"""benchmarks/ddp.py: the table built from run histories, and (slow) the whole script
at tiny size on the CPU with two gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def ddp() -> ModuleType:
    return load_benchmark("ddp")


def test_speed_up_is_met_only_at_the_target() -> None:
    module = ddp()
    record = {
        "settings": {"nproc": 2, "pretrain_epochs": 2},
        "stages": {
            "synth_1": {"pretrain_epoch_s": [11.0, 10.0], "finetune_epoch_s": [9.0]},
            "synth_2": {"pretrain_epoch_s": [6.0, 5.0], "finetune_epoch_s": [6.0]},
        },
    }
    rows = {row[0]: row for row in module.speed_rows(record)}
    pretrain = next(r for name, r in rows.items() if name.startswith("CLUE pre-training"))
    finetune = next(r for name, r in rows.items() if name.startswith("next-item"))
    assert pretrain[1:] == ["10.0 s", "5.0 s", "2.0x", ">= 1.8x", "yes"]
    assert finetune[3:] == ["1.5x", ">= 1.8x", "no"]
    unmeasured = next(r for name, r in rows.items() if name.startswith("small recipe end"))
    assert unmeasured[3] == "-" and unmeasured[5] == "-"


def test_history_csv_is_read_as_numbers(tmp_path: Path) -> None:
    stage = tmp_path / "finetune"
    stage.mkdir()
    (stage / "history.csv").write_text(
        "epoch,valid ndcg@10,eval seconds,loss,seconds,best\n0,0.1,2.5,,,\n1,0.2,2.0,3.5,9.25,*\n"
    )
    facts = ddp().run_facts(tmp_path)
    assert facts["finetune_epoch_s"] == [9.25] and facts["eval_s"] == [2.5, 2.0]
    assert facts["finetune_epochs"] == 1 and facts["pretrain_epoch_s"] == []


def test_gpu_samples_are_summarised_per_gpu(tmp_path: Path) -> None:
    module = ddp()
    samples = tmp_path / "gpu.csv"
    samples.write_text(
        "0, 50 %, 1000 MiB\n1, 10 %, 900 MiB\n0, 100 %, 3000 MiB\n1, 30 %, 800 MiB\n"
    )
    sampler = module.GpuSampler(samples)
    sampler.process = object()  # as if nvidia-smi had run
    found = sampler.summary()
    assert found["0"] == {
        "samples": 2,
        "util_mean": 75.0,
        "util_max": 100.0,
        "memory_max_mib": 3000.0,
    }
    assert found["1"]["util_mean"] == 20.0


def test_local_batchnorm_runs_are_compared_with_the_one_process_run() -> None:
    record = {
        "settings": {"nproc": 2, "pretrain_epochs": 2},
        "stages": {
            "synth_1": {"pretrain_epoch_s": [11.0, 10.0]},
            "synth_2": {"pretrain_epoch_s": [20.0, 20.0]},
            "synth_2_local": {"pretrain_epoch_s": [6.0, 5.0]},
        },
    }
    rows = [row for row in ddp().speed_rows(record) if "local BatchNorm" in row[0]]
    assert len(rows) == 1 and rows[0][1:] == ["10.0 s", "5.0 s", "2.0x", ">= 1.8x", "yes"]


def test_overhead_is_the_extra_share_of_a_plain_step() -> None:
    module = ddp()
    assert module.overhead_pct(10.0, 10.4) == 4.0
    assert module.overhead_pct(10.0, 9.0) == -10.0
    assert module.overhead_pct(None, 9.0) is None and module.overhead_pct(0.0, 1.0) is None
    record = {
        "settings": {"nproc": 2, "pretrain_epochs": 2, "stages": "overhead"},
        "stages": {
            "synth_1": {"pretrain_ms_per_step": 10.0, "pretrain_epoch_s": [3.0, 2.0]},
            "synth_torchrun1": {"pretrain_ms_per_step": 10.6, "pretrain_epoch_s": [3.0, 2.1]},
            "synth_torchrun1_local": {"pretrain_ms_per_step": 10.2},
        },
    }
    rows = module.overhead_rows(record)
    step = [r for r in rows if r[0].startswith("CLUE pre-training step")]
    assert step[0][1:] == ["global BatchNorm", "10.0 ms", "10.6 ms", "+6.0%", "<= 5%", "no"]
    assert step[1][1:] == ["local BatchNorm", "10.0 ms", "10.2 ms", "+2.0%", "<= 5%", "yes"]
    epoch = next(r for r in rows if r[0].startswith("CLUE pre-training epoch"))
    assert epoch[2:] == ["2.0 s", "2.1 s", "+5.0%", "-", "-"]  # informative, no target
    unmeasured = next(r for r in rows if r[0].startswith("next-item fine-tuning step"))
    assert unmeasured[4:] == ["-", "<= 5%", "-"]


def test_torchrun_of_one_process_runs_the_data_parallel_step(tmp_path: Path) -> None:
    module = ddp()
    args = module.parse_args(["--stages", "overhead", "--device", "cpu", "--work", str(tmp_path)])
    bench = module.Bench(args)
    command = bench.clue(1, "run", "r.yaml", torchrun=True)
    assert "--nproc_per_node=1" in command and command[-4:] == ["-m", "clue_fw", "run", "r.yaml"]
    assert bench.env(1, forced=True)["CLUE_DATA_PARALLEL"] == "1"
    assert "CLUE_DATA_PARALLEL" not in bench.env(1)
    assert bench.clue(1, "run")[1:] == ["-m", "clue_fw", "run"]  # the plain run


def test_an_overhead_record_renders_only_its_table(tmp_path: Path) -> None:
    module = ddp()
    args = module.parse_args(["--stages", "overhead", "--work", str(tmp_path)])
    record = module.Bench(args).record
    text = module.render(record)
    assert text.startswith("# The data-parallel step on one GPU")
    assert "| measure | data-parallel run | plain | torchrun of 1 |" in text
    assert "## Speed" not in text
    args = module.parse_args(["--stages", "synth,overhead", "--work", str(tmp_path)])
    both = module.render(module.Bench(args).record)
    assert "## Speed" in both and "torchrun of 1" in both


@pytest.mark.slow
def test_cpu_smoke_runs_every_stage(tmp_path: Path) -> None:
    env = dict(os.environ, CLUE_DATA_DIR=str(tmp_path / "data"), CLUE_DISABLE_PLUGINS="1")
    command = [
        sys.executable, str(ROOT / "benchmarks" / "ddp.py"), "--cpu-smoke", "--users", "400",
        "--items", "300", "--pretrain-epochs", "1", "--small-set", "finetune.train.epochs=2",
        "--work", str(tmp_path / "work"), "--out", str(tmp_path / "ddp"),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "ddp.json").read_text())
    assert all(stage["status"] == "ok" for stage in record["stages"].values()), record["stages"]
    assert record["equality"]["small_1"]["equal"] is True
    assert record["equality"]["synth_1"]["equal"] is True
    assert "EQUAL, bit for bit" in (tmp_path / "ddp.md").read_text()


@pytest.mark.slow
def test_cpu_smoke_measures_the_data_parallel_step_in_one_process(tmp_path: Path) -> None:
    env = dict(os.environ, CLUE_DATA_DIR=str(tmp_path / "data"), CLUE_DISABLE_PLUGINS="1")
    command = [
        sys.executable, str(ROOT / "benchmarks" / "ddp.py"), "--cpu-smoke", "--stages",
        "overhead", "--users", "400", "--items", "300", "--pretrain-epochs", "1",
        "--work", str(tmp_path / "work"), "--out", str(tmp_path / "ddp"),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "ddp.json").read_text())
    assert sorted(record["stages"]) == [
        "synth_1", "synth_data", "synth_torchrun1", "synth_torchrun1_local"
    ]  # fmt: skip
    assert all(stage["status"] == "ok" for stage in record["stages"].values()), record["stages"]
    forced = record["stages"]["synth_torchrun1"]
    assert "--nproc_per_node=1" in forced["command"] and "CLUE_DATA_PARALLEL=1" in forced["command"]
    assert forced["pretrain_ms_per_step"] > 0 and forced["processes"] == 1
    metrics = json.loads((tmp_path / "work" / "synth_torchrun1" / "metrics.json").read_text())
    assert metrics["processes"] == 1  # the data-parallel run, in a group of one
    table = (tmp_path / "ddp.md").read_text()
    assert "| CLUE pre-training step (synthetic) | global BatchNorm |" in table
