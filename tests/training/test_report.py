"""Tests of clue_fw.training.report: tables readable at narrow widths, plain-log output."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clue_fw.training.report import Reporter

KS = (5, 10, 20)
METRICS = ("mrr", "recall", "ndcg")


def reporter(
    width: int, log: Path | None = None, heartbeat_s: float = 30.0, terminal: bool = False
) -> Reporter:
    """A Reporter on a console of ``width`` columns: not a terminal (as under nohup or CI)
    unless ``terminal``."""
    console = Console(
        file=io.StringIO(), width=width, emoji=False, force_terminal=terminal, color_system=None
    )
    return Reporter(console, log, heartbeat_s=heartbeat_s)


STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


def output(r: Reporter) -> str:
    return r.console.file.getvalue()  # type: ignore[attr-defined]


def epoch_rows() -> list[dict[str, Any]]:
    rows = []
    for epoch in range(1, 4):
        row: dict[str, Any] = {"epoch": epoch, "loss": 3.0 / epoch}
        for i, (metric, k) in enumerate((m, k) for m in METRICS for k in KS):
            row[f"valid {metric}@{k}"] = 0.1 * epoch + 0.0123 * i + 0.00001
        row.update({"seq/s": 12345, "seconds": 1.25, "eval seconds": 0.123, "best": "*"})
        rows.append(row)
    return rows


def metrics() -> dict[str, dict[str, float]]:
    return {
        split: {
            f"{m}@{k}": 0.5 * s + 0.0317 * i
            for i, (m, k) in enumerate((m, k) for m in METRICS for k in KS)
        }
        for s, split in enumerate(("valid", "test"))
    }


@pytest.mark.parametrize("width", [80, 60])
def test_epoch_and_metrics_tables_show_every_value_in_full(width: int) -> None:
    r = reporter(width, terminal=True)
    rows = epoch_rows()
    r.epoch_table("finetune", rows)
    r.metrics_table(metrics())
    text = output(r)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float):
                shown = f"{value:g}" if key.endswith("seconds") else f"{value:.4f}"
                assert shown in text, (key, value, text)
    for values in metrics().values():
        for name, value in values.items():
            assert f"{value:.4f}" in text, (name, text)
            assert name in text
    # every metric name survives as a header (headers wrap between words only)
    for metric, k in ((m, k) for m in METRICS for k in KS):
        assert re.search(rf"\b{metric}@{k}\b", text)


def test_a_narrow_table_is_one_table_when_it_fits() -> None:
    r = reporter(200, terminal=True)
    r.metrics_table(metrics())
    assert "final metrics" in output(r) and "(1/" not in output(r)


def test_off_a_terminal_epoch_lines_go_to_the_console_and_the_log(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    r = reporter(80, log)
    r.epoch_line("finetune", {"epoch": 2, "loss": 0.5, "valid ndcg@10": 0.25, "best": "*"})
    line = "finetune epoch 2 loss=0.5000 valid ndcg@10=0.2500 best=*"
    assert re.fullmatch(STAMP + re.escape(line), output(r).strip())
    assert output(r) == log.read_text()  # the same line, time stamp included


def test_on_a_terminal_epoch_lines_go_to_the_log_only(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    r = Reporter(console, tmp_path / "run.log")
    r.epoch_line("pretrain", {"epoch": 1, "loss": 0.5})
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]
    assert "pretrain epoch 1 loss=0.5000" in (tmp_path / "run.log").read_text()


def test_off_a_terminal_long_epochs_print_heartbeats() -> None:
    r = reporter(80, heartbeat_s=0.0)
    with r.progress("finetune epoch 3/200", 139) as update:
        update(60, 1.5, 1000.0)
        update(60, 1.25, 1000.0)
    lines = output(r).splitlines()
    assert len(lines) == 2
    assert re.fullmatch(
        STAMP + r"finetune epoch 3/200: 120/139 batches, \d+ s, loss 1\.2500", lines[1]
    )


def test_heartbeats_wait_for_their_interval() -> None:
    r = reporter(80, heartbeat_s=3600.0)
    with r.progress("pretrain epoch 1/5", 10) as update:
        for _ in range(10):
            update(1, 1.0, 10.0)
    assert output(r) == ""


def test_other_ranks_print_nothing() -> None:
    """The runner gives ranks other than 0 a quiet console (clue_fw.runner)."""
    buffer = io.StringIO()
    r = Reporter(Console(file=buffer, quiet=True), None, heartbeat_s=0.0)
    r.epoch_line("finetune", {"epoch": 1, "loss": 0.5})
    with r.progress("finetune epoch 1/2", 4) as update:
        update(4, 0.5, 10.0)
    r.metrics_table({"valid": {"mrr@10": 0.5}})
    assert buffer.getvalue() == ""


def test_off_a_terminal_the_console_says_what_run_log_says_line_by_line(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    r = reporter(40, log)  # narrow: nothing may wrap
    r.log("run directory: " + "/a/very/long/path/" * 6 + "run")
    r.epoch_line("finetune", {"epoch": 1, "loss": 0.5, "valid ndcg@10": 0.25, "best": "*"})
    r.epoch_table("finetune", epoch_rows())  # no boxes off a terminal
    r.metrics_table(metrics())
    printed = output(r).splitlines()
    assert printed == log.read_text().splitlines()
    assert len(printed) == 4 and all(re.match(STAMP, line) for line in printed)
    assert not any(ch in output(r) for ch in "┏━│└")


def test_status_lines_are_for_terminals_only() -> None:
    on = reporter(80, terminal=True)
    on.status("finetune epoch 2/10: valid ndcg@10 0.2500, best 0.2500 (epoch 2)")
    assert "best 0.2500 (epoch 2)" in output(on)
    off = reporter(80)
    off.status("finetune epoch 2/10: valid ndcg@10 0.2500")
    assert output(off) == ""


def test_validation_status_says_the_best_and_when_early_stopping_comes() -> None:
    from types import SimpleNamespace

    from clue_fw.running.finetune import validation_status

    spec = SimpleNamespace(patience=10, train=SimpleNamespace(epochs=100))
    valid = {"ndcg@10": 0.1234, "recall@10": 0.2}
    line = validation_status(3, spec, "ndcg@10", valid, {"best": 0.1301, "best_epoch": 2,
                                                          "bad_epochs": 1})  # fmt: skip
    assert line == (
        "finetune epoch 3/100: valid ndcg@10 0.1234 (recall@10 0.2000), best 0.1301 "
        "(epoch 2); stops after 9 more epochs without a gain"
    )
    last = validation_status(10, spec, "ndcg@10", valid, {"best": 0.2, "best_epoch": 1,
                                                            "bad_epochs": 10})  # fmt: skip
    assert last.endswith("early stopping: no gain in 10 epochs")


def test_a_run_on_a_terminal_shows_each_validation_live(tmp_path: Path, tiny_recipe: Any) -> None:
    from clue_fw.runner import run

    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    tiny_recipe["finetune"]["train"]["epochs"] = 2
    run(tiny_recipe, out=tmp_path / "run", console=console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert re.search(r"finetune epoch 1/2: valid ndcg@10 \d\.\d{4} .*best \d\.\d{4} \(epoch", text)
    assert "finetune epoch 2/2:" in text and "the last epoch" in text


def test_timings_are_shown_as_measured_not_padded_to_four_decimals(tmp_path: Path) -> None:
    r = reporter(120, tmp_path / "run.log")
    r.epoch_line("pretrain", {"epoch": 1, "loss": 0.5, "seconds": 0.32, "eval seconds": 0.004})
    assert (
        output(r).rstrip().endswith("pretrain epoch 1 loss=0.5000 seconds=0.32 eval seconds=0.004")
    )
