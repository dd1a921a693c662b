"""Run the ``clue`` command line inside the test process."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

import pytest


def main_exit(
    argv: Sequence[str | PathLike[str]], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """``clue ARGV`` through :func:`clue_fw.cli.main`: (exit status, stdout, stderr)."""
    from clue_fw.cli import main

    with pytest.raises(SystemExit) as info:
        main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else code if isinstance(code, int) else 1), out, err
