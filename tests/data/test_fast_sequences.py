"""Tests for the vectorised sequence-file path: same result as the careful parser, or
``None`` so that the careful parser gives its exact error; and big files in seconds."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pytest

from clue_fw.data import readers
from clue_fw.data.dataset import build_sequence_data
from clue_fw.data.fast_sequences import parse_plain_sequences
from clue_fw.data.readers import RawSequences, read_sequence_file
from clue_fw.errors import DataError


def careful(path: Path) -> RawSequences:
    """The per-line parser alone (what read_sequence_file did before the fast path)."""
    return readers._parse_sequence_text(path, readers._decode_text(path, path.read_bytes()))


def outcome(call: object, path: Path) -> RawSequences | str:
    try:
        return call(path)  # type: ignore[operator, no-any-return]
    except DataError as exc:
        return f"DataError: {exc}"


def random_file(rng: random.Random, users: int) -> bytes:
    """A plain sequence file with blank lines, runs of spaces and tabs, CRLF, leading
    zeros, an optional BOM and no final newline: all of it the fast path takes."""
    ids = rng.sample(range(1, 10**6), users)
    lines = []
    for user in ids:
        gap = lambda: rng.choice([" ", "\t", "  ", " \t "])  # noqa: E731
        items = [
            str(rng.choice([rng.randint(0, 99), rng.randint(0, 10**17)]))
            for _ in range(rng.randint(1, 12))
        ]
        if rng.random() < 0.1 and len(items[0]) <= 15:
            items[0] = "000" + items[0]  # 18 digits at most: the fast path's limit
        lead = rng.choice(["", " ", "\t"])
        lines.append(lead + str(user) + gap() + gap().join(items) + rng.choice(["", " ", "\t"]))
        if rng.random() < 0.1:
            lines.append(rng.choice(["", "  ", "\t"]))
    ending = rng.choice(["\n", "\r\n"])
    text = ending.join(lines) + rng.choice(["", ending])
    return (b"\xef\xbb\xbf" if rng.random() < 0.2 else b"") + text.encode()


@pytest.mark.parametrize("seed", range(25))
def test_fast_path_equals_the_careful_parser(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    raw = random_file(rng, rng.randint(1, 60))
    path = tmp_path / "seq.txt"
    path.write_bytes(raw)
    assert parse_plain_sequences(raw) is not None  # the fast path took it
    assert read_sequence_file(path) == careful(path)
    for block in (1, 7, 64):  # blocks of whole lines, however small
        assert np.array_equal(parse_plain_sequences(raw, block)[2], careful(path).items)


# Each: the fast path declines, the careful parser gives its exact message (or reads it).
UNUSUAL = [
    b"1 2 -3\n",  # a minus sign
    b"1 2 3\n2 x 4\n",  # a letter
    b"1 2 3\n42\n",  # a user without items
    b"1 2 3\n  7  \n",
    b"1 2 3\n2 4 5\n1 6 7\n",  # a user twice
    b"1 2 " + b"9" * 19 + b"\n",  # might not fit in 64 bits
    b"1 2 " + b"0" * 30 + b"5\n",  # fits: leading zeros
    b"1 2 3\r4 5 6\n",  # a \r inside a line
    b"1 2 3\r\r\n",
    b"1 2\x0c3\n",  # a form feed is part of a token
    b"1 2 \xd9\xa3\n",  # a non-ASCII digit
    b"1 2 3\x00\n",
    b"",
    b"\n \n\t\n",
    b"\xef\xbb\xbf\n",
    b"1 2 3\n\xef\xbb\xbf2 3 4\n",  # a BOM that is not at the start
    "1 2 3\n".encode("utf-16"),
]


@pytest.mark.parametrize("content", UNUSUAL)
def test_anything_unusual_goes_to_the_careful_parser(tmp_path: Path, content: bytes) -> None:
    assert parse_plain_sequences(content) is None
    path = tmp_path / "seq.txt"
    path.write_bytes(content)
    assert outcome(read_sequence_file, path) == outcome(careful, path)


def test_errors_keep_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "seq.txt"
    path.write_bytes(b"1 2 3\n\n2 3 4\r\n3 4 -5\n")
    with pytest.raises(DataError, match=r"seq.txt, line 4: item id|negative"):
        build_sequence_data(read_sequence_file(path))
    path.write_bytes(b"1 2 3\n\n2 3 4\n1 5 6\n")
    with pytest.raises(DataError, match=r"line 4: user 1 appears again \(first on line 1\)"):
        read_sequence_file(path)


def big_file(path: Path, users: int, mean_length: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 2 * mean_length - 2, users)
    items = rng.integers(1, 10**6, int(lengths.sum()))
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    lines = (
        f"{u + 1} " + " ".join(map(str, items[bounds[u] : bounds[u + 1]].tolist()))
        for u in range(users)
    )
    path.write_text("\n".join(lines) + "\n")
    return int(lengths.sum())


def test_a_big_file_takes_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A million interactions (7 MB) in well under a second or two, never line by line."""
    path = tmp_path / "big.txt"
    interactions = big_file(path, 20_000, 50)

    def refuse(*_: object) -> None:
        raise AssertionError("the careful parser ran on a plain file")

    monkeypatch.setattr(readers, "_parse_sequence_text", refuse)
    started = time.perf_counter()
    raw = read_sequence_file(path)
    seconds = time.perf_counter() - started
    assert raw.num_interactions == interactions and raw.num_users == 20_000
    assert seconds < 5  # about 0.2 s on 2 CPU cores
    data = build_sequence_data(raw)
    assert data.num_interactions == interactions


def test_raw_sequences_are_packed_and_read_only() -> None:
    raw = RawSequences([5, 2], [[10, 11, 12], [7]])
    assert raw.user_ids.dtype == np.int64 and raw.offsets.tolist() == [0, 3, 4]
    assert raw.items.tolist() == [10, 11, 12, 7] and raw.num_interactions == 4
    with pytest.raises(ValueError):
        raw.items[0] = 1
    with pytest.raises(AttributeError):
        raw.users = [1]  # type: ignore[misc]
    assert raw == RawSequences.from_arrays(np.array([5, 2]), np.array([0, 3, 4]), raw.items)
    with pytest.raises(ValueError, match="offsets must"):
        RawSequences.from_arrays(np.array([5]), np.array([0, 3, 4]), raw.items)
    with pytest.raises(ValueError, match="same length"):
        RawSequences([1, 2], [[1]])
