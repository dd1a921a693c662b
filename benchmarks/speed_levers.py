"""The levers of benchmarks/speed.py: optimisations a measure can switch on, one at a time.

A measure is named alone (``synth_eval``: every lever off, the recipe as shipped) or with
levers after ``@``, joined by ``+`` (``synth_eval@blocks=65536+bf16``). Each lever is a
set of recipe overrides:

* ``blocks[=N]``: ``finetune.head.item_block=N`` (default 65,536): rank over blocks of N
  items, with no users x catalogue score matrix; the same metrics.
* ``bf16``: ``finetune.head.score_precision=bf16``: scores from bf16 vectors, summed in
  float32; metrics close, not equal.
* ``batch=N``: ``finetune.eval.batch_size=N``: users scored at once (item blocks make a
  larger batch fit).
* ``compile``: ``pretrain.train.compile=true`` and ``finetune.train.compile=true``:
  torch.compile of the training steps.
* ``amp``: ``pretrain.train.precision=bf16`` and ``finetune.train.precision=bf16``: the
  training steps under bfloat16 autocast (fast where the hardware has bf16 arithmetic:
  CUDA from Ampere on, x86 CPUs with AVX512-BF16 or AMX; slower elsewhere).
* ``seed=N``: ``seed=N``. Not an optimisation: the same measure with another seed, so
  that a quality check can rest on more than one draw.

Results are keyed by the canonical name (levers in the order above, each with its
value), so a table holds a measure with and without each lever side by side, and a
levered evaluation is checked against the same measure without levers
(:func:`agreement`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Lever:
    """One optimisation: its recipe overrides (``{}`` takes the value), the words the
    table shows, and the value when none is given (None: a value must be given; ""
    for a lever that takes none)."""

    overrides: tuple[str, ...]
    label: str
    default: str | None = ""


LEVERS: dict[str, Lever] = {
    "blocks": Lever(("finetune.head.item_block={}",), "item_block {}", "65536"),
    "bf16": Lever(("finetune.head.score_precision=bf16",), "bf16 scores"),
    "batch": Lever(("finetune.eval.batch_size={}",), "eval batch {}", None),
    "compile": Lever(("pretrain.train.compile=true", "finetune.train.compile=true"), "compile"),
    "amp": Lever(
        ("pretrain.train.precision=bf16", "finetune.train.precision=bf16"), "bf16 training"
    ),
    "seed": Lever(("seed={}",), "seed {}", None),
}

#: Levers that change no rank: ``blocks`` and ``batch`` must give the same metrics.
EXACT_LEVERS = frozenset({"blocks", "batch"})

SUM_ORDER = 1e-12
"""How far two metrics of the same ranks may be apart: ``batch`` adds the per-batch
float64 sums in other groups (a difference near 1e-19 on ML-1M)."""


@dataclass(frozen=True)
class Levers:
    """The levers a measure runs with: ``(name, value)`` pairs in :data:`LEVERS` order."""

    chosen: tuple[tuple[str, str], ...] = ()

    @property
    def overrides(self) -> list[str]:
        """The recipe overrides (``key=value``) that switch the levers on."""
        return [o.format(value) for name, value in self.chosen for o in LEVERS[name].overrides]

    @property
    def label(self) -> str:
        """What the table's levers column says: ``none``, or each lever in words."""
        if not self.chosen:
            return "none"
        return "; ".join(LEVERS[name].label.format(_shown(value)) for name, value in self.chosen)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.chosen)

    def suffix(self) -> str:
        """``@lever=value+...`` of the canonical name ("" without levers)."""
        parts = [name + (f"={value}" if value else "") for name, value in self.chosen]
        return "@" + "+".join(parts) if parts else ""


def _shown(value: str) -> str:
    return f"{int(value):,}" if value.isdigit() else value


def parse(name: str, allowed: dict[str, frozenset[str]]) -> tuple[str, Levers]:
    """``(measure, levers)`` of ``measure@lever[=value]+...``; ``allowed`` maps each
    measure to the levers it takes. A bad name is a SystemExit that says what to write."""
    measure, _, text = name.partition("@")
    if measure not in allowed:
        raise SystemExit(f"unknown measure {measure!r}; choose from {sorted(allowed)}")
    chosen: dict[str, str] = {}
    for part in (p for p in text.split("+") if p) if text else ():
        lever, _, value = part.partition("=")
        if lever not in LEVERS:
            raise SystemExit(f"{name}: unknown lever {lever!r}; choose from {sorted(LEVERS)}")
        if lever not in allowed[measure]:
            takes = ", ".join(sorted(allowed[measure])) or "none"
            raise SystemExit(f"{name}: {measure} does not take lever {lever!r} (it takes: {takes})")
        default = LEVERS[lever].default
        if default == "" and value:
            raise SystemExit(f"{name}: lever {lever!r} takes no value")
        value = value or (default or "")
        if default is None and not value:
            raise SystemExit(f"{name}: lever {lever!r} needs a value ({lever}=N)")
        if default != "" and not (value.isdigit() and int(value) > 0):
            raise SystemExit(f"{name}: lever {lever!r} needs a whole number above 0, not {value!r}")
        if lever in chosen:
            raise SystemExit(f"{name}: lever {lever!r} is named twice")
        chosen[lever] = value
    ordered = tuple((lever, chosen[lever]) for lever in LEVERS if lever in chosen)
    return measure, Levers(ordered)


def agreement(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    """For every result with levers and ``metrics``, how they compare with the same
    measure's result without levers: ``metrics equal to no levers`` (what blocks and
    batch must give, up to the order of the float64 sums), or the largest difference
    (bf16), or ``DIFFER`` where an exact lever changed a metric. Results measured on
    different machines are not compared."""
    found = {}
    for name, result in results.items():
        base_name, _, levers = name.partition("@")
        base = results.get(base_name)
        if not levers or not base or "metrics" not in result or "metrics" not in base:
            continue
        if result.get("machine") != base.get("machine"):
            continue
        ours, theirs = result["metrics"], base["metrics"]
        shared = sorted(set(ours) & set(theirs))
        worst = max((abs(ours[k] - theirs[k]) for k in shared), default=0.0)
        exact = all(lever.partition("=")[0] in EXACT_LEVERS for lever in levers.split("+"))
        if worst == 0.0:
            found[name] = "metrics equal to no levers"
        elif exact and worst <= SUM_ORDER:
            found[name] = f"metrics equal to no levers up to the order of the sums ({worst:.1g})"
        elif exact:
            found[name] = f"metrics DIFFER from no levers (largest by {worst:.3g})"
        else:
            found[name] = f"metrics within {worst:.3g} of no levers"
    return found
