"""``python -m clue_fw``: the ``clue`` command line, for launchers that run modules.

``torchrun --nproc_per_node N -m clue_fw run RECIPE`` starts N data-parallel processes
(``docs/distributed.md``).
"""

from clue_fw.cli import main

if __name__ == "__main__":
    main()
