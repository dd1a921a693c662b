"""A vectorised reader for plain sequence files (``user item item ...`` per line).

:func:`parse_plain_sequences` reads a file of ASCII digits, spaces, tabs and line
ends (``\\n``, ``\\r\\n``, an optional UTF-8 BOM) with numpy, in blocks of whole lines:
token boundaries come from where digit runs start and end, line numbers from the
positions of ``\\n``, and the values from one C-level ``np.fromstring`` per block.
50 million interactions take a few seconds, and memory holds only the file's bytes
and the packed int64 arrays.

It vouches only for what it can check cheaply. Anything else returns ``None`` and the
caller parses the file with the careful per-line parser, which names the file and
line of the problem: a byte other than those above (a minus sign, a letter, a form
feed, non-ASCII text, NUL), a ``\\r`` that does not end a line, an id longer than 18
digits (it might not fit in 64 bits), a line with only a user, a user on two lines,
or a file without ids.

>>> parse_plain_sequences(b"7 10 11\\n\\n3 30 31 32\\r\\n")
(array([7, 3]), array([0, 2, 5]), array([10, 11, 30, 31, 32]))
>>> parse_plain_sequences(b"7 10 -11\\n") is None  # the careful parser decides
True
"""

from __future__ import annotations

import numpy as np

_ALLOWED = b"0123456789 \t\n\r"
_UTF8_BOM = b"\xef\xbb\xbf"
_MAX_DIGITS = 18  # every 18-digit id fits in int64; longer ones go to the careful parser
BLOCK_BYTES = 1 << 25
"""Bytes parsed at once (whole lines): bounds the temporary arrays to a few hundred MB."""

Packed = tuple[np.ndarray, np.ndarray, np.ndarray]


def parse_plain_sequences(raw: bytes, block_bytes: int = BLOCK_BYTES) -> Packed | None:
    """``(user_ids [U], offsets [U + 1], items [N])`` as int64 arrays, or ``None`` when
    ``raw`` holds anything this fast path does not vouch for (see the module docstring).

    Users keep file order, items line order; blank lines are skipped.
    """
    start = 0
    leftover = raw.translate(None, _ALLOWED)
    if leftover:
        if leftover != _UTF8_BOM or not raw.startswith(_UTF8_BOM):
            return None
        start = len(_UTF8_BOM)
    carriage_returns = raw.count(b"\r")
    if carriage_returns and carriage_returns != raw.count(b"\r\n") + raw.endswith(b"\r"):
        return None  # a \r inside a line is part of a token: the careful parser refuses it
    users: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    items: list[np.ndarray] = []
    while start < len(raw):
        stop = _block_end(raw, start, block_bytes)
        parsed = _parse_block(raw, start, stop)
        if parsed is None:
            return None
        if parsed[0].size:
            users.append(parsed[0])
            lengths.append(parsed[1])
            items.append(parsed[2])
        start = stop
    if not users:
        return None  # no ids at all: the careful parser says the file is empty
    user_ids = np.concatenate(users)
    if np.unique(user_ids).size != user_ids.size:
        return None  # a user on two lines: the careful parser names both lines
    offsets = np.zeros(user_ids.size + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths), out=offsets[1:])
    all_items = items[0] if len(items) == 1 else np.concatenate(items)
    items.clear()
    return user_ids, offsets, all_items


def _block_end(raw: bytes, start: int, block_bytes: int) -> int:
    """The end of the block of whole lines that starts at ``start``."""
    stop = start + max(block_bytes, 1)
    if stop >= len(raw):
        return len(raw)
    newline = raw.rfind(b"\n", start, stop)
    if newline < 0:  # one line longer than a block: take it whole
        newline = raw.find(b"\n", stop)
        return len(raw) if newline < 0 else newline + 1
    return newline + 1


def _parse_block(raw: bytes, start: int, stop: int) -> Packed | None:
    """``(users, lengths, items)`` of the whole lines in ``raw[start:stop]``, or ``None``."""
    text = np.frombuffer(raw, dtype=np.uint8, count=stop - start, offset=start)
    digit = (text >= ord("0")).view(np.int8)  # only digits are >= "0" among allowed bytes
    zero = np.zeros(1, dtype=np.int8)
    edges = np.diff(digit, prepend=zero, append=zero)
    del digit
    token_starts = np.flatnonzero(edges == 1)
    token_ends = np.flatnonzero(edges == -1)
    del edges
    empty = np.zeros(0, dtype=np.int64)
    if token_starts.size == 0:
        return empty, empty, empty
    if int((token_ends - token_starts).max()) > _MAX_DIGITS:
        return None
    del token_ends
    values = np.fromstring(raw[start:stop], dtype=np.int64, sep=" ")  # type: ignore[call-overload]
    if values.size != token_starts.size:
        return None
    line_of = np.searchsorted(np.flatnonzero(text == ord("\n")), token_starts)
    first = np.empty(line_of.size, dtype=bool)
    first[0] = True
    np.not_equal(line_of[1:], line_of[:-1], out=first[1:])
    tokens_per_line = np.diff(np.append(np.flatnonzero(first), first.size))
    if bool((tokens_per_line < 2).any()):
        return None  # a user without items: the careful parser names the line
    return values[first], tokens_per_line - 1, values[~first]
