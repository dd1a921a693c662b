"""Moved to :mod:`clue_fw.metrics.representation` (pure tensor measures, used below the
analysis layer by the pre-training monitor and the probes); importing a name from here
still works, with a DeprecationWarning."""

from clue_fw._deprecated import moved_names

__getattr__ = moved_names(
    __name__,
    {
        name: "clue_fw.metrics.representation"
        for name in (
            "normalize",
            "alignment",
            "uniformity",
            "singular_values",
            "effective_rank",
            "collapse_std",
            "pca_2d",
        )
    },
)
