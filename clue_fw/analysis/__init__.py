"""Curves and analysis of finished runs: the ``clue plot``, ``analyze``, ``compare`` and
``sweep`` commands (:mod:`clue_fw.cli_analysis`) are thin wrappers over these modules.

- :mod:`~clue_fw.analysis.history_csv`: ``<run>/<stage>/history.csv``, one row per epoch,
  written by the training stages and read back for plots;
- :mod:`~clue_fw.analysis.measures`: alignment, uniformity, effective rank and the
  collapse monitor of a set of vectors (pure tensor functions);
- :mod:`~clue_fw.analysis.representations`: those measures for a loaded run's users;
- :mod:`~clue_fw.analysis.plots`: the figures (matplotlib, the optional extra ``plot``);
- :mod:`~clue_fw.analysis.compare`: valid and test metrics of runs, grouped over seeds;
- :mod:`~clue_fw.analysis.sweep`: a grid of ``--set`` overrides times seeds, run in
  subprocesses.

Nothing here imports torch or matplotlib at import time, so the training stages can
write their ``history.csv`` through this package without extra cost.
"""
