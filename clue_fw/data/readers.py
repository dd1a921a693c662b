"""Readers for the two on-disk formats clue_fw understands.

* **Sequence files**: one user per line, ``user item item ...`` in chronological
  order, separated by whitespace (``ml-1m_sequences.txt``, ``Beauty.txt``).
* **Interaction tables**: one interaction per line with user, item and timestamp
  columns (GroupLens ``ratings.dat`` with ``::``, ``u.data`` with tabs, CSV).

Both return :class:`RawSequences`: original integer ids, in chronological order.
Every problem is a :class:`~clue_fw.errors.DataError` that names the file and line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from clue_fw.data.files import read_file
from clue_fw.errors import QUOTE_LIMIT, DataError, quote

_BOM = "\ufeff"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class RawSequences:
    """Users (original ids) and their item sequences (original ids, oldest first)."""

    users: list[int]
    sequences: list[list[int]]

    def __post_init__(self) -> None:
        if len(self.users) != len(self.sequences):
            raise ValueError("users and sequences must have the same length")

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)


def _read_text(path: Path) -> str:
    """A data, label or target file as text (a regular file under the size cap)."""
    raw = read_file(path, "data file")
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
    """Read ``user item item ...`` lines (whitespace separated, one user a line)."""
    path = Path(path)
    users: list[int] = []
    sequences: list[list[int]] = []
    first_line: dict[int, int] = {}
    for line_number, line in enumerate(split_lines(_read_text(path)), start=1):
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
        try:
            stamp = record["timestamp"]
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
                f"{path}, line {line_number}: timestamp {quote(record['timestamp'])} is not a "
                "number."
            ) from None
        if not math.isfinite(timestamp):
            raise DataError(
                f"{path}, line {line_number}: timestamp {quote(record['timestamp'])} is not a "
                "finite number."
            )
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
