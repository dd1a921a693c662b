"""Tests for clue_fw.file_safety (reading): only regular files, under a cap, through a bounded read.

Every reader of a recipe, data, label or target file goes through ``read_file``, so
each one is checked here on a named pipe (must return at once, not wait for a
writer), ``/dev/zero`` (endless, reports size 0), a directory and a file over the cap.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clue_fw.data.domains import read_movie_genres
from clue_fw.data.labels import read_label_file
from clue_fw.data.readers import read_interaction_table, read_sequence_file
from clue_fw.data.root import resolve_data_path
from clue_fw.errors import ClueError, DataError, RecipeError
from clue_fw.file_safety import DEFAULT_MAX_FILE_BYTES, MAX_FILE_ENV, max_file_bytes, read_file
from clue_fw.recipe import load_recipe, read_recipe_file

READERS: dict[str, Callable[[Path], Any]] = {
    "sequences": read_sequence_file,
    "interactions": read_interaction_table,
    "labels": read_label_file,
    "movies": read_movie_genres,
    "recipe": read_recipe_file,
    "load_recipe": load_recipe,
}
EACH_READER = pytest.mark.parametrize("reader", sorted(READERS))


def returns_quickly(call: Callable[[], Any], seconds: float = 10.0) -> BaseException | None:
    """Run ``call`` in a thread; fail if it is still running after ``seconds``."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the reader still blocks after {seconds} s"
    return outcome[0]


def expected_error(reader: str) -> type[ClueError]:
    return RecipeError if "recipe" in reader else DataError


@EACH_READER
def test_named_pipe_is_refused_at_once(tmp_path: Path, reader: str) -> None:
    pipe = tmp_path / "pipe.txt"
    os.mkfifo(pipe)
    error = returns_quickly(lambda: READERS[reader](pipe))
    assert isinstance(error, expected_error(reader)), error
    assert "it is a named pipe (FIFO), not a regular file" in str(error)
    assert str(pipe) in str(error)


@EACH_READER
def test_dev_zero_is_refused(tmp_path: Path, reader: str) -> None:
    link = tmp_path / "zero.txt"
    link.symlink_to("/dev/zero")
    error = returns_quickly(lambda: READERS[reader](link))
    assert isinstance(error, expected_error(reader)), error
    assert "it is a character device, not a regular file" in str(error)


@EACH_READER
def test_directory_is_refused(tmp_path: Path, reader: str) -> None:
    with pytest.raises(expected_error(reader), match="it is a directory, not a regular file"):
        READERS[reader](tmp_path)


@pytest.mark.parametrize("reader", ["sequences", "interactions", "labels", "movies"])
def test_data_files_over_the_cap_are_refused(
    tmp_path: Path, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.txt"
    path.write_text("1 2 3 4\n" * 100)
    monkeypatch.setenv(MAX_FILE_ENV, "799")
    with pytest.raises(
        DataError, match=f"is refused: it is larger than 799 bytes; set {MAX_FILE_ENV}"
    ):
        READERS[reader](path)
    monkeypatch.setenv(MAX_FILE_ENV, "800")  # exactly at the cap is fine
    assert read_file(path, "data file") == b"1 2 3 4\n" * 100


def test_recipe_cap_is_one_mib(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * ((1 << 20) + 1))
    with pytest.raises(RecipeError, match="is refused: it is larger than 1 MiB"):
        read_recipe_file(path)


def test_the_read_is_bounded_even_when_the_size_lies() -> None:
    """/proc files are regular files that report size 0: only the bounded read stops them."""
    status = Path("/proc/self/status")
    if not status.is_file() or status.stat().st_size != 0:
        pytest.skip("needs Linux /proc")
    with pytest.raises(DataError, match="is refused: it is larger than 10 bytes"):
        read_file(status, "data file", limit=10)


@pytest.mark.parametrize("value", ["0", "-5", "lots", "1e9", "\u0663"])
def test_bad_cap_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(MAX_FILE_ENV, value)
    with pytest.raises(DataError, match=f"{MAX_FILE_ENV} must be a positive number of bytes"):
        max_file_bytes()


def test_default_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_FILE_ENV, raising=False)
    assert max_file_bytes() == DEFAULT_MAX_FILE_BYTES == 4 << 30


def test_unreadable_and_odd_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Data file not found"):
        read_file(tmp_path / "absent", "data file")
    with pytest.raises(DataError, match="Cannot read data file"):
        read_file(Path("nul\x00byte"), "data file")
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.txt"
        locked.write_text("1 2 3\n")
        locked.chmod(0)
        with pytest.raises(DataError, match="Cannot read data file .*Permission denied"):
            read_file(locked, "data file")


def test_resolve_data_path_names_what_the_path_is(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(DataError, match="is not a file: it is a named pipe"):
        resolve_data_path("pipe", tmp_path)
    with pytest.raises(DataError, match="is not a file: it is a character device"):
        resolve_data_path("/dev/zero", tmp_path)
    with pytest.raises(DataError, match="is not a file: it is a directory"):
        resolve_data_path(".", tmp_path)
    with pytest.raises(DataError, match="Data file not found"):
        resolve_data_path("absent/seq.txt", tmp_path)


@pytest.mark.parametrize("digits", [5000, 31])
def test_cap_setting_with_too_many_digits(monkeypatch: pytest.MonkeyPatch, digits: int) -> None:
    monkeypatch.setenv(MAX_FILE_ENV, "9" * digits)
    with pytest.raises(DataError, match=f"{MAX_FILE_ENV} has {digits:,} digits"):
        max_file_bytes()


def test_cap_setting_with_leading_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_FILE_ENV, "0" * 5000 + "800")
    assert max_file_bytes() == 800


@pytest.mark.parametrize("relative", ["~clue-no-such-user/seq.txt", "~clue-no-such-user"])
def test_resolve_data_path_with_an_unknown_home(tmp_path: Path, relative: str) -> None:
    with pytest.raises(DataError, match=r"data.path: cannot expand '~clue-no-such-user'"):
        resolve_data_path(relative, tmp_path, "data.path")


def test_data_root_with_an_unknown_home(monkeypatch: pytest.MonkeyPatch) -> None:
    from clue_fw.data.root import data_root

    monkeypatch.setenv("CLUE_DATA_DIR", "~clue-no-such-user/data")
    with pytest.raises(DataError, match=r"CLUE_DATA_DIR: cannot expand '~clue-no-such-user'"):
        data_root()
