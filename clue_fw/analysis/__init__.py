"""Curves and analysis of finished runs: the ``clue plot``, ``analyze``, ``compare`` and
``sweep`` commands (:mod:`clue_fw.cli_analysis`) are thin wrappers over these modules.

- :mod:`~clue_fw.analysis.history_csv`: reads ``<run>/<stage>/history.csv``, one row per
  epoch, which the training stages write (:mod:`clue_fw.running.history_csv`);
- :mod:`~clue_fw.analysis.representations`: the measures of
  :mod:`clue_fw.metrics.representation` (alignment, uniformity, effective rank, the
  collapse monitor) for a loaded run's users;
- :mod:`~clue_fw.analysis.plots`: the figures (matplotlib, the optional extra ``plot``);
- :mod:`~clue_fw.analysis.compare`: valid and test metrics of runs, grouped over seeds;
- :mod:`~clue_fw.analysis.sweep`: a grid of ``--set`` overrides times seeds, run in
  subprocesses.

Nothing here imports torch or matplotlib at import time. Nothing below this package
imports it: the training stages, the pre-training monitor (:mod:`clue_fw.training.monitor`)
and the probes use the writer and the measures from their own layers
(``tests/test_layers.py``).
"""
