"""The ``data`` section of a recipe: where sequences come from (torch-free).

``DataSpec`` is a discriminated union on ``format``: a sequence file, an interaction
table, or sequences generated in-process. :mod:`clue_fw.data.loading` reads them.
"""

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from clue_fw.data.seeds import GeneratorSeed
from clue_fw.errors import quote
from clue_fw.specs import StrictModel

MAX_LEN = 1_000_000
"""The largest ``data.max_len`` a recipe may set (a padded batch is batch x max_len)."""


class _DataBase(StrictModel):
    max_len: int = Field(
        50,
        gt=0,
        le=MAX_LEN,
        description="n: keep each user's n most recent items as model input (at most 1,000,000).",
    )
    min_user_interactions: int = Field(
        3, ge=0, description="k-core: drop users with fewer interactions (at least 3 kept)."
    )
    min_item_interactions: int = Field(
        1, ge=0, description="k-core: drop items with fewer interactions (iterated with users)."
    )


class SequenceFileData(_DataBase):
    """A sequence file: ``user item item ...`` per line, oldest item first."""

    format: Literal["sequences"] = "sequences"
    path: str = Field(description="File path, relative to the data root (CLUE_DATA_DIR).")


class InteractionTableData(_DataBase):
    """An interaction table with user, item and timestamp columns."""

    format: Literal["interactions"] = "interactions"
    path: str = Field(description="File path, relative to the data root (CLUE_DATA_DIR).")
    columns: list[str] | None = Field(
        None, description="Column names; must include user, item, timestamp. Default: guessed."
    )
    separator: Literal["auto", "::", "tab", "comma", "whitespace"] = Field(
        "auto", description="Column separator; auto detects ::, tab, comma or whitespace."
    )
    skip_header: bool = Field(False, description="Ignore the first line.")

    @field_validator("columns")
    @classmethod
    def _check_columns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        repeated = _repeated(value)
        if repeated:
            raise ValueError(
                f"column {quote(repeated[0])} is named more than once; give each column its "
                "own name (e.g. [user, item, rating, timestamp])"
            )
        return value


class SyntheticData(_DataBase):
    """Sequences generated in-process with planted cluster-cycle structure (no files)."""

    format: Literal["synthetic"] = "synthetic"
    num_users: int = Field(1000, gt=0, description="Users to generate.")
    num_items: int = Field(200, gt=1, description="Catalogue size.")
    min_length: int = Field(10, ge=3, description="Shortest generated sequence.")
    max_length: int = Field(40, ge=3, description="Longest generated sequence.")
    num_clusters: int = Field(8, gt=0, description="Item clusters; each user walks one.")
    stickiness: float = Field(
        0.8, ge=0.0, le=1.0, description="Probability that the next item follows the cycle."
    )
    seed: GeneratorSeed = Field(
        0,
        description="Seed of the generator (independent of the run seed), in 0 .. 2**32 - 1.",
    )


def _repeated(values: list[Any]) -> list[Any]:
    """The values that occur more than once in ``values``, in order of first repeat."""
    seen: set[Any] = set()
    repeated: list[Any] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated


DataSpec = Annotated[
    SequenceFileData | InteractionTableData | SyntheticData, Field(discriminator="format")
]


# --------------------------------------------------------------------------- training
