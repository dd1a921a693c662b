"""``none``: no pre-training (CLUEZero). The pre-training stage is skipped."""

from __future__ import annotations

from clue_fw.objectives.specs import NoPretrainingSpec as NoPretrainingSpec
