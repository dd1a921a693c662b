"""Errors that clue_fw raises for problems a user can fix.

Every error a user can cause (a bad recipe, data file, checkpoint or flag) is a
:class:`ClueError`. The CLI prints its message as one paragraph and exits with
code 2; library users can catch the family they care about.
"""

from __future__ import annotations

QUOTE_LIMIT = 40
"""At most this many characters of a user's token are quoted in an error message."""


class ClueError(Exception):
    """Base class of every user-facing error in clue_fw."""

    exit_code: int = 2
    reported_by: int | None = None
    """In a data-parallel run: the rank whose own error this is a copy of (that process
    prints it; this one stops quietly). None: this process's own error."""


class RecipeError(ClueError):
    """A recipe does not parse, does not validate, or names an unknown component."""


class RegistryError(ClueError):
    """Two plugins register the same component, or a plugin fails to load."""


class PluginError(ClueError):
    """A plugin's component broke its contract at run time (wrong return type or shape)."""


class DataError(ClueError):
    """A data file is missing, unreadable or malformed."""


class DownloadError(DataError):
    """A dataset download failed, did not match its checksum, or its archive is unsafe."""


class CheckpointError(ClueError):
    """A checkpoint is unreadable or does not match the model it is loaded into."""


class RunDirectoryError(ClueError):
    """A run directory cannot be created, reused or resumed."""


class TrainingError(ClueError):
    """Training cannot go on: a non-finite loss, or an impossible configuration."""


class NonFiniteError(TrainingError):
    """The training loss or its gradient became NaN or infinite."""


class ResourceError(ClueError):
    """A recipe plainly needs more memory than the device has, or ``clue data synth`` more
    disk space than its file system has free; refused before it starts."""


class EvaluationError(ClueError):
    """Evaluation cannot give a metric: the model scored items NaN on a split."""


def short_repr(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of a value read from a file (an epoch, a role), cut to ``limit`` characters.

    >>> short_repr(7), short_repr("x" * 50)[-6:]
    ('7', 'xxx...')
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quote(token: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of a user's token for an error message, cut to ``limit`` characters.

    >>> quote("u2")
    "'u2'"
    >>> quote("9" * 100)
    "'9999999999999999999999999999999999999999'... (100 characters)"
    """
    text = str(token)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"
