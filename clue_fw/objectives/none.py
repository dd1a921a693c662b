"""``none``: no pre-training (CLUEZero). The pre-training stage is skipped."""

from __future__ import annotations

from typing import ClassVar, Literal

from clue_fw.components import BuildContext, ObjectiveSpec, PretrainObjective, SequenceEncoder


class NoPretrainingSpec(ObjectiveSpec):
    """CLUEZero: skip pre-training; fine-tuning starts from the initial encoder."""

    kind: Literal["none"] = "none"
    trains: ClassVar[bool] = False

    def build(self, context: BuildContext, encoder: SequenceEncoder) -> PretrainObjective:
        raise RuntimeError("the `none` objective has nothing to build; the stage is skipped")
