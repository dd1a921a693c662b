"""Tests for clue_fw.data.labels: label files (CSV, ML-1M users.dat) and alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clue_fw.data.labels import align_labels, read_label_file
from clue_fw.errors import DataError

USERS_DAT = "1::F::1::10::48067\n2::M::56::16::70072\n\n3::M::25::15::55117\n"


def write(tmp_path: Path, content: str | bytes, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "content", ["user,gender\n1,F\n2,M\n", "1,F\n2,M\n", "\ufeffuser , gender\r\n1, F\r\n 2,M\r\n"]
)
def test_csv_with_and_without_header(tmp_path: Path, content: str) -> None:
    assert read_label_file(write(tmp_path, content)) == {1: "F", 2: "M"}


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("gender", {1: "F", 2: "M", 3: "M"}),
        ("age", {1: "1", 2: "56", 3: "25"}),
        ("occupation", {1: "10", 2: "16", 3: "15"}),
    ],
)
def test_users_dat_columns(tmp_path: Path, column: str, expected: dict[int, str]) -> None:
    path = write(tmp_path, USERS_DAT, "users.dat")
    assert read_label_file(path, column) == expected  # type: ignore[arg-type]


def test_users_dat_unknown_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Unknown label column 'zip'"):
        read_label_file(write(tmp_path, USERS_DAT, "users.dat"), "zip")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("1,F\n2,M\n1,M\n", "line 3: user 1 appears again (first on line 1)"),
        ("1,F\nx,M\n", "line 2: user id 'x' is not an integer id"),
        ("1,F\n2\n", "line 2: expected 2 fields (user,label), found 1"),
        ("1,F,extra\n", "line 1: expected 2 fields"),
        ("1,F\n2,\n", "line 2: user 2 has an empty label"),
        ("user,label\n", "holds no labels"),
        ("", "is empty"),
        ("1::F::1::10\n", "expected 5 fields (UserID::Gender::Age::Occupation::Zip-code)"),
    ],
)
def test_malformed_label_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DataError) as info:
        read_label_file(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_binary_and_missing_label_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="binary"):
        read_label_file(write(tmp_path, b"\x80\x04\x95\x00\x00"))
    with pytest.raises(DataError, match="not found"):
        read_label_file(tmp_path / "absent.csv")


def test_align_orders_by_user_ids_and_ignores_extra_labels() -> None:
    labels = {1: "F", 2: "M", 3: "M", 99: "F"}
    assert align_labels(labels, np.array([3, 1, 2], dtype=np.int64)) == ["M", "F", "M"]


def test_align_reports_users_without_labels() -> None:
    labels = {1: "F"}
    with pytest.raises(DataError) as info:
        align_labels(labels, range(1, 9), source="users.dat")
    message = str(info.value)
    assert "7 of 8 users have no label in users.dat (e.g. users 2, 3, 4, 5, 6 ...)" in message
    assert "not in the data" not in message


def test_align_strict_reports_unknown_users_separately() -> None:
    labels = {1: "F", 2: "M", 98: "F", 99: "M"}
    assert align_labels(labels, [1, 2]) == ["F", "M"]
    with pytest.raises(DataError) as info:
        align_labels(labels, [1, 2, 3], strict=True)
    message = str(info.value)
    assert "1 of 3 users have no label in the label file (e.g. users 3)" in message
    assert "labels for 2 users that are not in the data (e.g. users 98, 99)" in message


# --------------------------------------------------------------------------- ML-100K u.user

U_USER = "1|24|M|technician|85711\n2|17|F|other|94043\n3|56|M|writer|32067\n4|50|F|other|15213\n"


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("age", {1: "18", 2: "1", 3: "56", 4: "50"}),
        ("gender", {1: "M", 2: "F", 3: "M", 4: "F"}),
        ("occupation", {1: "technician", 2: "other", 3: "writer", 4: "other"}),
    ],
)
@pytest.mark.parametrize("format", ["auto", "u_user"])
def test_u_user_columns(tmp_path: Path, column: str, expected: dict[int, str], format: str) -> None:
    path = write(tmp_path, U_USER, "u.user")
    assert read_label_file(path, column, format) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("years", "bracket"),
    [(0, 1), (17, 1), (18, 18), (24, 18), (25, 25), (44, 35), (45, 45), (49, 45), (50, 50)]
    + [(55, 50), (56, 56), (73, 56)],
)
def test_u_user_ages_map_to_ml1m_brackets(tmp_path: Path, years: int, bracket: int) -> None:
    path = write(tmp_path, f"7|{years}|F|other|00000\n", "u.user")
    assert read_label_file(path, "age") == {7: str(bracket)}


def test_u_user_age_must_be_a_number(tmp_path: Path) -> None:
    path = write(tmp_path, "1|24|M|x|1\n2|old|F|x|2\n", "u.user")
    with pytest.raises(DataError, match="line 2: age 'old'"):
        read_label_file(path, "age")


@pytest.mark.parametrize(
    ("content", "name", "format", "fragment"),
    [
        (U_USER, "u.user", "users_dat", "expected 5 fields (UserID::Gender::Age"),
        (U_USER, "u.user", "csv", "expected 2 fields (user,label), found 1"),
        (USERS_DAT, "users.dat", "u_user", "expected 5 fields (user id|age|gender"),
        (USERS_DAT, "users.dat", "csv", "expected 2 fields (user,label), found 1"),
        ("1,F\n2,M\n", "labels.csv", "users_dat", "expected 5 fields (UserID::"),
        ("1,F\n2,M\n", "labels.csv", "u_user", "expected 5 fields (user id|age"),
    ],
)
def test_explicit_format_mismatch_is_an_error(
    tmp_path: Path, content: str, name: str, format: str, fragment: str
) -> None:
    path = write(tmp_path, content, name)
    with pytest.raises(DataError) as info:
        read_label_file(path, "gender", format)  # type: ignore[arg-type]
    message = str(info.value)
    assert f"{path}, line 1: {fragment}" in message
    assert "Is this the right label format?" in message


@pytest.mark.parametrize("token", ["1_0", "+4", "\u0663"])
def test_label_user_ids_are_ascii_digits(tmp_path: Path, token: str) -> None:
    with pytest.raises(DataError, match="line 2: user id .* is not an integer id"):
        read_label_file(write(tmp_path, f"user,gender\n{token},F\n"))


def test_a_non_ascii_first_field_is_a_header(tmp_path: Path) -> None:
    assert read_label_file(write(tmp_path, "\u0663,gender\n1,F\n")) == {1: "F"}


def test_unknown_format_and_column_are_clipped(tmp_path: Path) -> None:
    path = write(tmp_path, "1::F::1::10::48067\n")
    with pytest.raises(DataError) as info:
        read_label_file(path, "x" * 10_000, "users_dat")  # type: ignore[arg-type]
    assert "(10,000 characters)" in str(info.value) and len(str(info.value)) < 400


@pytest.mark.parametrize("char", ["\x0c", "\x0b", "\x1e", "\x85", "\u2028"])
def test_only_newline_ends_a_label_line(tmp_path: Path, char: str) -> None:
    path = write(tmp_path, f"1,F\n2,M\n3,F{char}4,M\n")
    with pytest.raises(DataError, match=r"line 3: expected 2 fields"):
        read_label_file(path)


def test_labels_with_control_characters_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "1,F\n2,M\x0c\n")
    with pytest.raises(DataError, match=r"line 2: the label .* control character"):
        read_label_file(path)
