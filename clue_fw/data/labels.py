"""User labels for profile prediction: read a label file, align it with the data's users.

Two formats are read:

* **CSV** ``user,label`` (one user a line, an optional header line such as
  ``user,gender``);
* **ML-1M** ``users.dat``: ``UserID::Gender::Age::Occupation::Zip-code``, from which
  one column (``gender``, ``age`` or ``occupation``) is the label.

Labels stay strings; a head decides how to encode them. Every problem is a
:class:`~clue_fw.errors.DataError` that names the file and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from clue_fw.data.readers import _parse_int, _read_text
from clue_fw.errors import DataError

LabelColumn = Literal["gender", "age", "occupation"]
USERS_DAT_COLUMNS: tuple[str, ...] = ("user", "gender", "age", "occupation", "zip")
EXAMPLES = 5


def read_label_file(path: str | Path, column: LabelColumn = "gender") -> dict[int, str]:
    """Read user labels: ``{user id: label}``.

    A file whose first line holds ``::`` is read as ML-1M ``users.dat`` and ``column``
    picks the label; any other file is a two-column ``user,label`` CSV, whose first line
    is skipped when its user field is not an integer (a header).
    """
    path = Path(path)
    lines = _read_text(path).splitlines()
    header_index = next(index for index, line in enumerate(lines) if line.strip())
    users_dat = "::" in lines[header_index]
    if users_dat and column not in USERS_DAT_COLUMNS[1:4]:
        raise DataError(
            f"Unknown label column {column!r} for {path}; use gender, age or occupation."
        )
    labels: dict[int, str] = {}
    first_line: dict[int, int] = {}
    for index, line in enumerate(lines):
        line_number = index + 1
        if not line.strip():
            continue
        if users_dat:
            fields = [f.strip() for f in line.strip().split("::")]
            expected = len(USERS_DAT_COLUMNS)
            layout = "UserID::Gender::Age::Occupation::Zip-code"
        else:
            fields = [f.strip() for f in line.strip().split(",")]
            expected = 2
            layout = "user,label"
        if len(fields) != expected:
            raise DataError(
                f"{path}, line {line_number}: expected {expected} fields ({layout}), "
                f"found {len(fields)}."
            )
        if not users_dat and index == header_index and not _is_int(fields[0]):
            continue  # header line
        user = _parse_int(fields[0], path, line_number, "user id")
        label = fields[USERS_DAT_COLUMNS.index(column)] if users_dat else fields[1]
        if not label:
            raise DataError(f"{path}, line {line_number}: user {user} has an empty label.")
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


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True
