"""Moved to :mod:`clue_fw.file_safety` (one module for every file clue_fw reads or
writes, with the one atomic writer); importing a name from here still works, with a
DeprecationWarning."""

from clue_fw._deprecated import moved_names

__getattr__ = moved_names(
    __name__,
    {
        name: "clue_fw.file_safety"
        for name in (
            "NotRegularTarget",
            "check_output_target",
            "atomic_write",
            "atomic_write_bytes",
            "atomic_write_json",
            "RUN_OWN_FILES",
            "RUN_OWN_FOLDERS",
            "is_run_directory",
            "run_directory_above",
            "check_user_output",
            "write_output",
        )
    },
)
