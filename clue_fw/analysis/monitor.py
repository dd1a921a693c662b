"""Moved to :mod:`clue_fw.training.monitor` (pre-training measures it every epoch, below
the analysis layer); importing a name from here still works, with a DeprecationWarning."""

from clue_fw._deprecated import moved_names

__getattr__ = moved_names(
    __name__,
    {
        name: "clue_fw.training.monitor"
        for name in (
            "DEFAULT_SAMPLE_USERS",
            "COLLAPSE_SHARE",
            "MEASURES",
            "sample_windows",
            "view_pairs",
            "eval_vectors",
            "RepresentationMonitor",
            "collapse_warning",
        )
    },
)
