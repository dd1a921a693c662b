"""Whether bfloat16 autocast pays on this machine's CPU (``train.precision: bf16``).

On an x86 CPU with AVX512-BF16 or AMX, bfloat16 matrix products run in hardware and a
training step under autocast takes about half the time of a float32 one (the 2-core
AVX512-BF16 machine of docs/results/speed.md: 2.31 s against 5.33 s a profiled fine-tuning
epoch of ml30_dropout_cpu, benchmarks/cpu_step_profile.py). Without them, bfloat16 is
converted in software and the same step is slower than in float32, so a recipe that asks
for it on such a CPU gets one line saying so.
"""

from __future__ import annotations

import platform
from pathlib import Path

#: /proc/cpuinfo flags of native bfloat16 arithmetic on x86.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """True or False on x86 Linux (from ``cpuinfo``'s flags); None where it cannot tell
    (other systems and architectures: Apple and Arm CPUs differ by model)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return not BF16_FLAGS.isdisjoint(line.partition(":")[2].split())
    return None


def slow_bf16_warning(stage: str, device_type: str, precision: str) -> str | None:
    """The line to log when ``precision`` is bf16 on a CPU known to lack native bf16."""
    if precision != "bf16" or device_type != "cpu" or cpu_has_native_bf16() is not False:
        return None
    return (
        f"{stage}: train.precision=bf16 on a CPU without native bfloat16 arithmetic "
        "(no avx512_bf16 or amx_bf16 in /proc/cpuinfo): autocast is emulated here and "
        f"usually slower than float32; set {stage}.train.precision=fp32 for speed."
    )
