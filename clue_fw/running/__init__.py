"""The parts of a run, one decision each; :func:`clue_fw.runner.run` puts them together.

- :mod:`~clue_fw.running.run_directory`: the run directory: its paths, files, creation,
  replacement and resumption;
- :mod:`~clue_fw.running.lock`: its owner, an OS lock held from start to end;
- :mod:`~clue_fw.running.identity`: its identity (a random run id plus the recipe's
  sha256), which every file the run writes carries and every file ``--resume`` loads
  must match;
- :mod:`~clue_fw.running.os_errors`: output-side OS errors as one-paragraph messages;
- :mod:`~clue_fw.running.stage`: one training stage's checkpoints, history, re-seeding
  and resumption;
- :mod:`~clue_fw.running.pretrain` and :mod:`~clue_fw.running.finetune`: the two stage
  drivers;
- :mod:`~clue_fw.running.finetune_phases`: what trains in each fine-tuning epoch (the
  probe and full phases of ``finetune.mode``) and the optimiser's parameter groups
  (``finetune.encoder_lr_scale``).
"""
