"""The seed type of data generation and splits.

``data.seed`` and the heads' ``split_seed`` feed a random generator directly, and such
generators use only the low 32 bits of a seed (``2**32`` would give the data of ``0``),
so these seeds are refused outside ``0 .. 2**32 - 1`` instead of silently wrapping.
Valid seeds are used exactly as before.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

MAX_GENERATOR_SEED = 2**32 - 1
SEED_RANGE_MESSAGE = "seeds for data generation and splits must lie in 0 .. 4294967295"


def _check_seed(value: int) -> int:
    if not 0 <= value <= MAX_GENERATOR_SEED:
        raise ValueError(f"{SEED_RANGE_MESSAGE}, got {value}")
    return value


GeneratorSeed = Annotated[int, AfterValidator(_check_seed)]
"""An ``int`` field that must lie in ``0 .. 2**32 - 1``."""
