"""Readers for the two on-disk formats clue_fw understands.

* **Sequence files**: one user per line, ``user item item ...`` in chronological
  order, separated by whitespace (``ml-1m_sequences.txt``, ``Beauty.txt``).
* **Interaction tables**: one interaction per line with user, item and timestamp
  columns (GroupLens ``ratings.dat`` with ``::``, ``u.data`` with tabs, CSV).

Both return :class:`RawSequences`: original integer ids, in chronological order,
packed in flat numpy arrays (memory proportional to the number of interactions).
Every problem is a :class:`~clue_fw.errors.DataError` that names the file and line.

Sequence files take a vectorised fast path (:mod:`clue_fw.data.fast_sequences`) when
they hold nothing unusual: 50 million interactions load in seconds. Anything the fast
path does not vouch for (a minus sign, a letter, a line with only a user, a repeated
user, a very long id, non-ASCII bytes...) goes to the careful per-line parser below,
which gives the exact error message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clue_fw.data.fast_sequences import parse_plain_sequences
from clue_fw.errors import QUOTE_LIMIT, DataError, quote
from clue_fw.file_safety import read_file

_BOM = "\ufeff"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class RawSequences:
    """Users (original ids) and their item sequences (original ids, oldest first).

    Packed, so memory is proportional to the number of interactions: row ``r`` is user
    ``user_ids[r]`` with items ``items[offsets[r]:offsets[r + 1]]`` (int64 numpy arrays,
    read-only). ``users`` and ``sequences`` give the same as Python lists, for small data.

    >>> raw = RawSequences([7, 3], [[10, 11], [30]])
    >>> raw.offsets.tolist(), raw.items.tolist(), raw.sequences
    ([0, 2, 3], [10, 11, 30], [[10, 11], [30]])
    """

    __slots__ = ("_items", "_offsets", "_user_ids")

    def __init__(self, users: Sequence[int], sequences: Sequence[Sequence[int]]) -> None:
        if len(users) != len(sequences):
            raise ValueError("users and sequences must have the same length")
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        items = np.fromiter((i for s in sequences for i in s), dtype=np.int64, count=total)
        self._set(np.asarray(users, dtype=np.int64).reshape(-1), offsets, items)

    @classmethod
    def from_arrays(
        cls, user_ids: np.ndarray, offsets: np.ndarray, items: np.ndarray
    ) -> RawSequences:
        """Wrap packed arrays (converted to int64) without copying Python objects."""
        user_ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if offsets.size != user_ids.size + 1 or offsets[0] != 0 or offsets[-1] != items.size:
            raise ValueError(
                f"offsets must have len(user_ids) + 1 = {user_ids.size + 1} entries, start "
                f"at 0 and end at len(items) = {items.size}"
            )
        if bool((np.diff(offsets) < 0).any()):
            raise ValueError("offsets must not decrease")
        raw = cls.__new__(cls)
        raw._set(user_ids, offsets, items)
        return raw

    def _set(self, user_ids: np.ndarray, offsets: np.ndarray, items: np.ndarray) -> None:
        for array in (user_ids, offsets, items):
            array.flags.writeable = False
        object.__setattr__(self, "_user_ids", user_ids)
        object.__setattr__(self, "_offsets", offsets)
        object.__setattr__(self, "_items", items)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"RawSequences is immutable; cannot set {name!r}")

    @property
    def user_ids(self) -> np.ndarray:
        """``[U]`` int64: the original id of each row's user, in file order."""
        return self._user_ids

    @property
    def offsets(self) -> np.ndarray:
        """``[U + 1]`` int64: row ``r``'s items are ``items[offsets[r]:offsets[r + 1]]``."""
        return self._offsets

    @property
    def items(self) -> np.ndarray:
        """``[N]`` int64: every row's original item ids, rows one after another."""
        return self._items

    @property
    def users(self) -> list[int]:
        """The user ids as a Python list (small data)."""
        return [int(u) for u in self._user_ids.tolist()]

    @property
    def sequences(self) -> list[list[int]]:
        """Every row's items as a Python list of lists (small data)."""
        bounds = self._offsets.tolist()
        items = self._items.tolist()
        return [items[start:stop] for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]

    @property
    def num_users(self) -> int:
        return int(self._user_ids.size)

    @property
    def num_interactions(self) -> int:
        return int(self._items.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawSequences):
            return NotImplemented
        return all(
            np.array_equal(a, b)
            for a, b in zip(
                (self._user_ids, self._offsets, self._items),
                (other._user_ids, other._offsets, other._items),
                strict=True,
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RawSequences({self.num_users:,} users, {self.num_interactions:,} interactions)"


def _read_text(path: Path) -> str:
    """A data, label or target file as text (a regular file under the size cap)."""
    return _decode_text(path, read_file(path, "data file"))


def _decode_text(path: Path, raw: bytes) -> str:
    """The bytes of data file ``path`` as text; UTF-16, binary and empty files refused."""
    if raw.startswith(_UTF16_BOMS):
        raise DataError(f"{path} is UTF-16 text; save it as UTF-8 (or ASCII) and try again.")
    if b"\x00" in raw[:4096]:
        raise DataError(
            f"{path} looks like a binary file (it contains NUL bytes), not a text data file."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if text.startswith(_BOM):
        text = text[len(_BOM) :]
    if not text.strip():
        raise DataError(f"{path} is empty: expected at least one line of data.")
    return text


SPACE = " \t"
"""The characters that separate fields on a line: space and tab, nothing else.

Other control characters (form feed, vertical tab, ``\x1c``-``\x1e``, ``\x85``,
``\u2028``, ...) are part of a token, so an id that holds one is refused as a bad id
instead of silently splitting a line or a field.
"""
_FIELD_GAP = re.compile(r"[ \t]+")


def split_lines(text: str) -> list[str]:
    """``text`` cut at ``\n`` only (a trailing ``\r`` is dropped), as an editor numbers lines.

    Unlike :meth:`str.splitlines`, form feeds, vertical tabs, ``\x1c``-``\x1e``, ``\x85``
    and ``\u2028`` do not end a line, so line numbers in errors match an editor's.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def split_fields(line: str) -> list[str]:
    """The fields of ``line`` separated by runs of spaces and tabs (no other whitespace)."""
    stripped = line.strip(SPACE)
    return _FIELD_GAP.split(stripped) if stripped else []


def is_blank(line: str) -> bool:
    """True when ``line`` holds nothing but spaces and tabs."""
    return not line.strip(SPACE)


_ID = re.compile(r"-?[0-9]+", re.ASCII)
_INT64_DIGITS = len(str(_INT64_MAX))


def is_int_token(token: str) -> bool:
    """True when ``token`` is an id clue_fw reads: ASCII digits, an optional leading minus.

    ``1_0``, ``+4``, `` 4`` and non-ASCII digits such as ``\u0663`` are not ids.
    """
    return _ID.fullmatch(token) is not None


def _parse_int(token: str, path: Path, line_number: int, what: str, hint: str = "") -> int:
    if not is_int_token(token):
        raise DataError(
            f"{path}, line {line_number}: {what} {quote(token)} is not an integer id "
            "(ids are ASCII digits 0-9, with an optional leading minus). "
            + (hint or "Map ids to integers first (clue_fw reads integer user and item ids).")
        )
    digits = token.lstrip("-").lstrip("0")
    value = int(token) if len(digits) <= _INT64_DIGITS else None
    if value is None or not _INT64_MIN <= value <= _INT64_MAX:
        shown = token if len(token) <= QUOTE_LIMIT else quote(token)
        raise DataError(
            f"{path}, line {line_number}: {what} {shown} is out of range; ids must fit in a "
            "64-bit signed integer. Map ids to small integers first."
        )
    return value


def read_sequence_file(path: str | Path) -> RawSequences:
    """Read ``user item item ...`` lines (whitespace separated, one user a line).

    A file of plain ASCII digits, spaces, tabs and line ends is parsed vectorised
    (:func:`~clue_fw.data.fast_sequences.parse_plain_sequences`); anything else, or any
    problem, goes through the careful per-line parser, which names the file and line.
    """
    path = Path(path)
    raw = read_file(path, "data file")
    packed = parse_plain_sequences(raw)
    if packed is not None:
        return RawSequences.from_arrays(*packed)
    return _parse_sequence_text(path, _decode_text(path, raw))


def _parse_sequence_text(path: Path, text: str) -> RawSequences:
    """The careful per-line parser: exact errors naming the file and line."""
    users: list[int] = []
    sequences: list[list[int]] = []
    first_line: dict[int, int] = {}
    for line_number, line in enumerate(split_lines(text), start=1):
        tokens = split_fields(line)
        if not tokens:
            continue
        user = _parse_int(tokens[0], path, line_number, "user id")
        if len(tokens) < 2:
            raise DataError(
                f"{path}, line {line_number}: user {user} has no items. Each line must be "
                "`user item item ...`; remove users without interactions."
            )
        if user in first_line:
            raise DataError(
                f"{path}, line {line_number}: user {user} appears again (first on line "
                f"{first_line[user]}). A sequence file holds one line per user."
            )
        first_line[user] = line_number
        items = [_parse_int(t, path, line_number, "item id") for t in tokens[1:]]
        users.append(user)
        sequences.append(items)
    return RawSequences(users, sequences)


_SEPARATORS = {"::": "::", "tab": "\t", "comma": ",", "whitespace": None}


def _detect_separator(line: str) -> str | None:
    if "::" in line:
        return "::"
    if "\t" in line:
        return "\t"
    if "," in line:
        return ","
    return None


_INT64_STAMP = re.compile(r"[-+]?[0-9]{1,19}")
"""An integer timestamp (ASCII digits); one in the int64 range is kept exact."""


def read_interaction_table(
    path: str | Path,
    columns: tuple[str, ...] | list[str] | None = None,
    separator: str = "auto",
    skip_header: bool = False,
) -> RawSequences:
    """Read a (user, item, timestamp) table and sort each user's items by time.

    ``columns`` names each column; ``user``, ``item`` and ``timestamp`` are required,
    anything else (``rating``, ...) is ignored. Without ``columns``, 4 columns mean
    ``user item rating timestamp`` (GroupLens) and 3 mean ``user item timestamp``.
    Ties in time keep file order.
    """
    path = Path(path)
    lines = split_lines(_read_text(path))
    if skip_header and lines:
        lines = lines[1:]
    if separator == "auto":
        first = next((ln for ln in lines if not is_blank(ln)), "")
        sep = _detect_separator(first)
    elif separator in _SEPARATORS:
        sep = _SEPARATORS[separator]
    else:
        raise DataError(
            f"Unknown separator {quote(separator)} for {path}; use one of auto, "
            + ", ".join(_SEPARATORS)
            + "."
        )
    rows: list[tuple[int, int | float, int, int]] = []
    names: list[str] | None = list(columns) if columns else None
    for required in ("user", "item", "timestamp"):
        if names is not None and required not in names:
            raise DataError(f"`columns` for {path} must include {quote(required)}.")
    for line_number, line in enumerate(lines, start=1 + int(skip_header)):
        if is_blank(line):
            continue
        fields = line.strip(SPACE).split(sep) if sep else split_fields(line)
        fields = [f.strip(SPACE) for f in fields]
        if sep == "\t" and len(fields) == 1:
            fields = split_fields(line)
        elif sep == "\t" and any(len(split_fields(f)) > 1 for f in fields):
            raise DataError(
                f"{path}, line {line_number}: mixes tabs and spaces between columns "
                f"({quote(line.strip(SPACE))}). Use one separator throughout, or set "
                "`separator: whitespace` to split on any run of spaces and tabs."
            )
        if names is None:
            if len(fields) == 4:
                names = ["user", "item", "rating", "timestamp"]
            elif len(fields) == 3:
                names = ["user", "item", "timestamp"]
            else:
                raise DataError(
                    f"{path}, line {line_number}: found {len(fields)} columns; without a "
                    "`columns` list clue_fw expects 3 (user item timestamp) or 4 "
                    "(user item rating timestamp)."
                )
        if len(fields) != len(names):
            raise DataError(
                f"{path}, line {line_number}: expected {len(names)} columns "
                f"({', '.join(names)}), found {len(fields)}. Mixed separators? "
                "Set `separator` explicitly."
            )
        record = dict(zip(names, fields, strict=True))
        header_hint = (
            "Is this a header line? Set `skip_header: true`."
            if line_number == 1 and not skip_header
            else ""
        )
        user = _parse_int(record["user"], path, line_number, "user id", header_hint)
        item = _parse_int(record["item"], path, line_number, "item id", header_hint)
        timestamp = _parse_timestamp(record["timestamp"], path, line_number)
        rows.append((user, timestamp, line_number, item))
    if not rows:
        raise DataError(f"{path} has no interaction rows.")
    rows.sort()
    users: list[int] = []
    sequences: list[list[int]] = []
    for user, _, _, item in rows:
        if not users or users[-1] != user:
            users.append(user)
            sequences.append([])
        sequences[-1].append(item)
    return RawSequences(users, sequences)


def _parse_timestamp(stamp: str, path: Path, line_number: int) -> int | float:
    """A timestamp field as a number: an int when it is one that fits in 64 bits (exact),
    else a finite float; anything else is a :class:`DataError` naming the line."""
    try:
        if not stamp.isascii() or "_" in stamp:  # float() reads "1_0" and non-ASCII digits
            raise ValueError(stamp)
        timestamp: int | float
        if _INT64_STAMP.fullmatch(stamp) and _INT64_MIN <= int(stamp) <= _INT64_MAX:
            # Exact: float() would merge nanosecond stamps (1.7e18 + 100 == 1.7e18).
            # Python compares int and float exactly, so mixed files still sort right.
            timestamp = int(stamp)
        else:
            timestamp = float(stamp)
    except ValueError:
        raise DataError(
            f"{path}, line {line_number}: timestamp {quote(stamp)} is not a number."
        ) from None
    if not math.isfinite(timestamp):
        raise DataError(
            f"{path}, line {line_number}: timestamp {quote(stamp)} is not a finite number."
        )
    return timestamp
