"""The contract cases of a set of components: one (check, component[, backbone]) each.

Every component of the selection gets its family's checks. Objectives and heads are
also run on backbones: every registered trainable objective and head on every
backbone, for each pair in which the objective, the head or the backbone is selected.
So a new backbone meets every objective and head, and a new objective or head every
backbone. Objectives and heads build their own state on a reference backbone
(``transformer`` when registered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from clue_fw.registry import ComponentEntry, Registry
from clue_fw.testing import backbones, heads, objectives, views

Check = Callable[["ContractCase", Path], None]

CHECKS: dict[str, dict[str, Check]] = {
    "backbone": backbones.CHECKS,
    "augmentation": views.CHECKS,
    "objective": objectives.CHECKS,
    "head": heads.CHECKS,
}
PAIR_CHECKS: dict[str, dict[str, Check]] = {
    "objective": objectives.PAIR_CHECKS,
    "head": heads.PAIR_CHECKS,
}
REFERENCE_BACKBONE = "transformer"


@dataclass(frozen=True)
class ContractCase:
    """One contract check of one component (on the backbone ``partner``, if any)."""

    check: str
    entry: ComponentEntry
    run_check: Check = field(compare=False, repr=False)
    partner: ComponentEntry | None = None

    @property
    def name(self) -> str:
        """``'<family>_<check>'``: the key of ``contract_test(skip=...)``."""
        return f"{self.entry.family}_{self.check}"

    @property
    def id(self) -> str:
        """``'objective-clue-on-gru-trains'``: the pytest id of the case."""
        on = f"-on-{self.partner.kind}" if self.partner is not None else ""
        return f"{self.entry.family}-{self.entry.kind}{on}-{self.check}"

    def run(self, folder: Path) -> None:
        """Run the check; ``folder`` is an empty directory it may write to."""
        self.run_check(self, folder)


def contract_cases(registry: Registry, selected: Iterable[ComponentEntry]) -> list[ContractCase]:
    """Every contract case of the ``selected`` components of ``registry``."""
    chosen = list(selected)
    keys = {(e.family, e.kind) for e in chosen}
    all_backbones = list(registry.entries["backbone"].values())
    reference = registry.entries["backbone"].get(REFERENCE_BACKBONE) or next(
        iter(all_backbones), None
    )
    cases = []
    for entry in chosen:
        if entry.family == "objective" and not entry.spec.trains:  # type: ignore[attr-defined]
            continue
        partner = reference if entry.family in PAIR_CHECKS else None
        for check, run in CHECKS[entry.family].items():
            cases.append(ContractCase(check, entry, run, partner))
    for family, checks in PAIR_CHECKS.items():
        for entry in registry.entries[family].values():
            if family == "objective" and not entry.spec.trains:  # type: ignore[attr-defined]
                continue
            for backbone in all_backbones:
                if (family, entry.kind) not in keys and ("backbone", backbone.kind) not in keys:
                    continue
                for check, run in checks.items():
                    cases.append(ContractCase(check, entry, run, backbone))
    return cases


def check_names() -> list[str]:
    """Every ``'<family>_<check>'`` name, as ``contract_test(skip=...)`` takes them."""
    names = [f"{family}_{check}" for family, checks in CHECKS.items() for check in checks]
    names += [f"{family}_{check}" for family, checks in PAIR_CHECKS.items() for check in checks]
    return names
