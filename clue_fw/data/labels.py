"""User labels for profile prediction: read a label file, align it with the data's users.

Three formats are read:

* **CSV** ``user,label`` (one user a line, an optional header line such as
  ``user,gender``);
* **ML-1M** ``users.dat``: ``UserID::Gender::Age::Occupation::Zip-code``, from which
  one column (``gender``, ``age`` or ``occupation``) is the label;
* **ML-100K** ``u.user``: ``user id | age | gender | occupation | zip code``. Its ages
  are years; ``age`` maps them to ML-1M's seven brackets (1: under 18, 18: 18-24,
  25: 25-34, 35: 35-44, 45: 45-49, 50: 50-55, 56: 56+) so the two datasets share classes.

Labels stay strings; a head decides how to encode them. Every problem is a
:class:`~clue_fw.errors.DataError` that names the file and line.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from clue_fw.data.readers import (
    SPACE,
    _parse_int,
    _read_text,
    is_blank,
    is_int_token,
    split_lines,
)
from clue_fw.errors import DataError, quote

LabelColumn = Literal["gender", "age", "occupation"]
LabelFormat = Literal["auto", "csv", "users_dat", "u_user"]
USERS_DAT_COLUMNS: tuple[str, ...] = ("user", "gender", "age", "occupation", "zip")
U_USER_COLUMNS: tuple[str, ...] = ("user", "age", "gender", "occupation", "zip")
ML1M_AGE_BRACKETS: tuple[int, ...] = (1, 18, 25, 35, 45, 50, 56)
EXAMPLES = 5

_LAYOUTS = {
    "csv": (",", ("user", "label"), "user,label"),
    "users_dat": ("::", USERS_DAT_COLUMNS, "UserID::Gender::Age::Occupation::Zip-code"),
    "u_user": ("|", U_USER_COLUMNS, "user id|age|gender|occupation|zip code"),
}


def age_bracket(years: int) -> int:
    """ML-1M's age bracket (its lower bound, 1 for under 18) of an age in years."""
    return max((b for b in ML1M_AGE_BRACKETS if years >= b), default=1)


def detect_label_format(first_line: str) -> str:
    if "::" in first_line:
        return "users_dat"
    if "|" in first_line:
        return "u_user"
    return "csv"


def read_label_file(
    path: str | Path, column: LabelColumn = "gender", format: LabelFormat = "auto"
) -> dict[int, str]:
    """Read user labels: ``{user id: label}``.

    ``format`` ``auto`` reads a file whose first line holds ``::`` as ML-1M
    ``users.dat``, one with ``|`` as ML-100K ``u.user`` (``column`` picks the label of
    both), and any other file as a two-column ``user,label`` CSV, whose first line is
    skipped when its user field is not an integer (a header).
    """
    path = Path(path)
    lines = split_lines(_read_text(path))
    header_index = next(index for index, line in enumerate(lines) if not is_blank(line))
    chosen = detect_label_format(lines[header_index]) if format == "auto" else format
    if chosen not in _LAYOUTS:
        raise DataError(
            f"Unknown label format {quote(format)}; use auto, csv, users_dat or u_user."
        )
    separator, columns, layout = _LAYOUTS[chosen]
    if chosen != "csv" and column not in ("gender", "age", "occupation"):
        raise DataError(
            f"Unknown label column {quote(column)} for {path}; use gender, age or occupation."
        )
    labels: dict[int, str] = {}
    first_line: dict[int, int] = {}
    for index, line in enumerate(lines):
        line_number = index + 1
        if is_blank(line):
            continue
        fields = [f.strip(SPACE) for f in line.strip(SPACE).split(separator)]
        expected = len(columns)
        if len(fields) != expected:
            raise DataError(
                f"{path}, line {line_number}: expected {expected} fields ({layout}), "
                f"found {len(fields)}."
                + (" Is this the right label format?" if format != "auto" else "")
            )
        if chosen == "csv" and index == header_index and not is_int_token(fields[0]):
            continue  # header line
        user = _parse_int(fields[0], path, line_number, "user id")
        label = fields[1] if chosen == "csv" else fields[columns.index(column)]
        if chosen == "u_user" and column == "age" and label:
            years = _parse_int(label, path, line_number, "age")
            label = str(age_bracket(years))
        if not label:
            raise DataError(f"{path}, line {line_number}: user {user} has an empty label.")
        if any(unicodedata.category(c) == "Cc" for c in label):
            raise DataError(
                f"{path}, line {line_number}: the label {quote(label)} of user {user} holds a "
                "control character; labels are printable text."
            )
        if user in first_line:
            raise DataError(
                f"{path}, line {line_number}: user {user} appears again (first on line "
                f"{first_line[user]}). A label file holds one line per user."
            )
        first_line[user] = line_number
        labels[user] = label
    if not labels:
        raise DataError(f"{path} holds no labels (only a header line).")
    return labels


def align_labels(
    labels: Mapping[int, str],
    user_ids: Iterable[int],
    strict: bool = False,
    source: str = "the label file",
) -> list[str]:
    """Labels in the order of ``user_ids`` (e.g. ``SequenceData.user_ids``).

    Every user needs a label. With ``strict``, labels of users that are not in
    ``user_ids`` are an error too (otherwise they are ignored).
    """
    users = [int(user) for user in user_ids]
    problems: list[str] = []
    missing = [user for user in users if user not in labels]
    if missing:
        problems.append(
            f"{len(missing):,} of {len(users):,} users have no label in {source} "
            f"(e.g. users {_examples(missing)})"
        )
    if strict:
        known = set(users)
        unknown = sorted(user for user in labels if user not in known)
        if unknown:
            problems.append(
                f"{source} has labels for {len(unknown):,} users that are not in the data "
                f"(e.g. users {_examples(unknown)})"
            )
    if problems:
        raise DataError(
            "Labels do not match the users: "
            + "; ".join(problems)
            + ". Was the label file made for this dataset (and its filtering)?"
        )
    return [labels[user] for user in users]


def _examples(users: list[int]) -> str:
    return ", ".join(map(str, users[:EXAMPLES])) + (" ..." if len(users) > EXAMPLES else "")
