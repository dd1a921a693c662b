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
