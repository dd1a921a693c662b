"""What ``clue probe`` reports: one row per classifier and features, one per ranker,
and the report as JSON and as markdown tables (:class:`ProbeReport`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

METRIC_KEYS = ("acc", "macro_f1", "balanced_acc", "roc_auc")
"""The test metrics of a label probe, in table order (roc_auc for binary labels only)."""


@dataclass(frozen=True)
class ProbeRow:
    """One classifier on one set of features: its test metrics and how it was chosen."""

    features: str
    classifier: str
    setting: str
    test: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "classifier": self.classifier,
            "setting": self.setting,
            "test": self.test,
            **self.details,
        }


@dataclass(frozen=True)
class RankerRow:
    """One next-item ranker's validation and test metrics."""

    ranker: str
    valid: dict[str, float]
    test: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"ranker": self.ranker, "valid": self.valid, "test": self.test}


@dataclass(frozen=True)
class ProbeReport:
    """What :func:`probe_run` measured; :meth:`to_json` and :meth:`markdown` write it."""

    info: dict[str, Any]
    rows: list[ProbeRow]
    rankers: list[RankerRow]
    next_item_info: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        result = {**self.info, "probes": [row.to_json() for row in self.rows]}
        if self.rankers:
            result["next_item"] = {
                **self.next_item_info,
                "rankers": [row.to_json() for row in self.rankers],
            }
        return result

    def probe_table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the label-probe table (test metrics)."""
        binary = any("roc_auc" in row.test for row in self.rows)
        keys = [k for k in METRIC_KEYS if k != "roc_auc" or binary]
        header = ["features", "classifier", "chosen", *keys, "converged"]
        body = []
        for row in self.rows:
            converged = row.details.get("converged")
            mark = "" if converged is None else ("yes" if converged else "NO")
            if converged is not None:
                mark += f" ({row.details['grad_norm']:.1e})"
            values = [f"{row.test[k]:.4f}" if k in row.test else "" for k in keys]
            body.append([row.features, row.classifier, row.setting, *values, mark])
        return header, body

    def ranker_table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the next-item table."""
        if not self.rankers:
            return [], []
        keys = list(self.rankers[0].test)
        header = ["ranker", *(f"valid {k}" for k in keys), *(f"test {k}" for k in keys)]
        body = [
            [
                row.ranker,
                *(f"{row.valid[k]:.4f}" for k in keys),
                *(f"{row.test[k]:.4f}" for k in keys),
            ]
            for row in self.rankers
        ]
        return header, body

    def markdown(self) -> str:
        info = self.info
        users = info["users"]
        lines = [
            f"# Probe of {info['run']} ({info['stage']})",
            "",
            f"Labels: {info['labels']['file']}, column {info['labels']['column']} "
            f"({len(info['classes'])} classes). Users: {users['train']:,} train / "
            f"{users['valid']:,} valid / {users['test']:,} test (split seed "
            f"{info['split_seed']}). Test metrics; L2 strength and k chosen on the "
            "validation users.",
            "",
            *_markdown_table(*self.probe_table()),
        ]
        if self.rankers:
            next_info = self.next_item_info
            lines += [
                "",
                f"Next item from frozen vectors ({next_info['users']:,} users, every item "
                "ranked, history excluded, ties pessimistic):",
                "",
                *_markdown_table(*self.ranker_table()),
            ]
        return "\n".join(lines) + "\n"


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]
