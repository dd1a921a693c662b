"""Moved to :mod:`clue_fw.file_safety` (one module for every file clue_fw reads or
writes); importing a name from here still works, with a DeprecationWarning. Plugins read
side files with ``clue_fw.read_file`` and ``clue_fw.read_json_file``."""

from clue_fw._deprecated import moved_names

__getattr__ = moved_names(
    __name__,
    {
        name: "clue_fw.file_safety"
        for name in (
            "MAX_FILE_ENV",
            "DEFAULT_MAX_FILE_BYTES",
            "max_file_bytes",
            "human_size",
            "file_kind",
            "read_file",
            "read_json_file",
        )
    },
)
