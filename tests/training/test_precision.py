"""Tests for clue_fw.training.precision: native bfloat16 read from /proc/cpuinfo's flags,
and the one line a bf16 recipe gets on a CPU without it (and only there)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clue_fw import run
from clue_fw.training import precision

FLAGS_WITH = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
FLAGS_WITHOUT = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n"
FLAGS_AMX = "flags\t\t: fpu avx2 amx_tile amx_bf16 amx_int8\n"


@pytest.fixture
def x86(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")


@pytest.mark.usefixtures("x86")
@pytest.mark.parametrize(
    ("text", "expected"),
    [(FLAGS_WITH, True), (FLAGS_AMX, True), (FLAGS_WITHOUT, False), ("processor: 0\n", None)],
)
def test_native_bf16_is_read_from_the_flags(
    tmp_path: Path, text: str, expected: bool | None
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert precision.cpu_has_native_bf16(cpuinfo) is expected


@pytest.mark.usefixtures("x86")
def test_an_unreadable_cpuinfo_cannot_tell(tmp_path: Path) -> None:
    assert precision.cpu_has_native_bf16(tmp_path / "missing") is None


def test_other_architectures_cannot_tell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(precision.platform, "machine", lambda: "arm64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(FLAGS_WITHOUT)
    assert precision.cpu_has_native_bf16(cpuinfo) is None


@pytest.mark.parametrize(
    ("native", "device", "chosen", "warned"),
    [
        (False, "cpu", "bf16", True),
        (True, "cpu", "bf16", False),
        (None, "cpu", "bf16", False),
        (False, "cpu", "fp32", False),
        (False, "cuda", "bf16", False),
    ],
)
def test_the_warning_comes_only_for_bf16_on_a_cpu_without_it(
    monkeypatch: pytest.MonkeyPatch, native: bool | None, device: str, chosen: str, warned: bool
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    line = precision.slow_bf16_warning("finetune", device, chosen)
    assert (line is not None) == warned
    if line is not None:
        assert "set finetune.train.precision=fp32" in line


def test_a_bf16_run_on_such_a_cpu_says_so_once_per_stage(
    monkeypatch: pytest.MonkeyPatch, tiny_recipe: dict[str, Any], tmp_path: Path
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    for stage in ("pretrain", "finetune"):
        tiny_recipe[stage]["train"]["precision"] = "bf16"
    run(tiny_recipe, out=tmp_path / "run", console=Console(file=io.StringIO()))
    log = (tmp_path / "run" / "run.log").read_text()
    assert log.count("pretrain: train.precision=bf16 on a CPU without native") == 1
    assert log.count("finetune: train.precision=bf16 on a CPU without native") == 1
