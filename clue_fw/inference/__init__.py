"""Use a finished run: user vectors, item vectors and recommendations from raw ids.

- :mod:`~clue_fw.inference.run_files`: which files of a run directory a stage means,
  read with the checks ``--resume`` makes;
- :mod:`~clue_fw.inference.catalogue`: raw item ids to the run's internal ids, unknown
  ids skipped and reported;
- :mod:`~clue_fw.inference.loaded_run`: :func:`load_run` and :class:`LoadedRun`
  (``embed_users``, ``stream_users``, ``recommend``, ``item_vectors``);
- :mod:`~clue_fw.inference.results`: what those return (vectors, recommendations, the
  candidate set of a restricted ranking);
- :mod:`~clue_fw.inference.neighbours`: the exact k nearest users by cosine;
- :mod:`~clue_fw.inference.export`: vectors and recommendations written to files
  (``clue embed``, ``clue recommend``).
"""

from __future__ import annotations

from clue_fw.inference.catalogue import InputReport, ItemCatalogue, UnknownItemsWarning
from clue_fw.inference.loaded_run import (
    ItemVectors,
    LoadedRun,
    Recommendations,
    UserVectors,
    load_run,
)

__all__ = [
    "InputReport",
    "ItemCatalogue",
    "ItemVectors",
    "LoadedRun",
    "Recommendations",
    "UnknownItemsWarning",
    "UserVectors",
    "load_run",
]
