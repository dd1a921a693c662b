"""``none``: no pre-training (CLUEZero). The pre-training stage is skipped.

Example (the spec says it trains nothing, so the runner skips the stage):

>>> from clue_fw.objectives.specs import NoPretrainingSpec
>>> NoPretrainingSpec().trains
False
"""

from __future__ import annotations

from clue_fw.objectives.specs import NoPretrainingSpec as NoPretrainingSpec
