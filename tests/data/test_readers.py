"""Tests for clue_fw.data.readers: sequence files and interaction tables."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from clue_fw.data.readers import RawSequences, read_interaction_table, read_sequence_file
from clue_fw.errors import DataError


def write(tmp_path: Path, content: str | bytes, name: str = "data.txt") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def as_dict(raw: RawSequences) -> dict[int, list[int]]:
    return dict(zip(raw.users, raw.sequences, strict=True))


# --------------------------------------------------------------------------- sequence files


def test_sequence_file_whitespace_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "\n7 10 11\t12\n\n   \n  3   30  31 \n\t\n5 50 51 52 53\n\n")
    raw = read_sequence_file(path)
    # file order is kept (no sorting by user id), items in line order
    assert raw.users == [7, 3, 5]
    assert raw.sequences == [[10, 11, 12], [30, 31], [50, 51, 52, 53]]
    assert raw.num_interactions == 9


def test_sequence_file_crlf_and_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeff1 10 11\r\n2 20 21 22\r\n")
    raw = read_sequence_file(path)
    assert raw.users == [1, 2]
    assert raw.sequences == [[10, 11], [20, 21, 22]]


def test_sequence_file_repeated_items_are_kept(tmp_path: Path) -> None:
    raw = read_sequence_file(write(tmp_path, "1 5 5 6 5\n"))
    assert raw.sequences == [[5, 5, 6, 5]]


def test_duplicated_user_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "1 10 11\n2 20 21\n\n1 12 13\n")
    with pytest.raises(DataError) as info:
        read_sequence_file(path)
    message = str(info.value)
    assert "line 4" in message
    assert "first on line 1" in message
    assert "user 1" in message
    assert str(path) in message


def test_user_without_items(tmp_path: Path) -> None:
    path = write(tmp_path, "1 10 11\n42\n")
    with pytest.raises(DataError, match=r"line 2: user 42 has no items"):
        read_sequence_file(path)


@pytest.mark.parametrize(
    ("content", "line", "token"),
    [("1 10 x11\n", 1, "x11"), ("1 10 11\nabc 3 4\n", 2, "abc"), ("1 10 1.5\n", 1, "1.5")],
)
def test_non_integer_id(tmp_path: Path, content: str, line: int, token: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DataError) as info:
        read_sequence_file(path)
    assert f"line {line}" in str(info.value)
    assert repr(token) in str(info.value)


@pytest.mark.parametrize("content", ["", "\n\n  \n", "\ufeff", "\ufeff\n \n"])
def test_empty_sequence_file(tmp_path: Path, content: str) -> None:
    with pytest.raises(DataError, match="empty"):
        read_sequence_file(write(tmp_path, content))


def test_binary_file(tmp_path: Path) -> None:
    path = write(tmp_path, pickle.dumps({"users": [1, 2, 3]}) + b"\x00\x01\x02")
    with pytest.raises(DataError, match="binary"):
        read_sequence_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_sequence_file(tmp_path / "nope.txt")


def test_directory_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        read_sequence_file(tmp_path)


# --------------------------------------------------------------------------- interaction tables


def test_grouplens_double_colon(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "2::50::3::978300760\n1::10::5::978300300\n1::11::4::978300100\n2::51::2::978300001\n",
    )
    raw = read_interaction_table(path)
    # users ordered by id; each user's items by time
    assert raw.users == [1, 2]
    assert raw.sequences == [[11, 10], [51, 50]]


def test_tab_separated_u_data(tmp_path: Path) -> None:
    path = write(
        tmp_path, "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t377\t1\t878887116\n"
    )
    raw = read_interaction_table(path)
    assert as_dict(raw) == {186: [302], 196: [377, 242]}


def test_three_columns_user_item_timestamp(tmp_path: Path) -> None:
    path = write(tmp_path, "1,10,3.5\n1,11,1.25\n1,12,2\n")
    assert read_interaction_table(path).sequences == [[11, 12, 10]]
    spaced = write(tmp_path, "1 10 30\n1 11 10\n", name="spaced.txt")
    assert read_interaction_table(spaced).sequences == [[11, 10]]


def test_timestamp_ties_keep_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "1::30::5::100\n1::20::5::100\n1::99::5::200\n1::10::5::50\n1::25::5::100\n",
    )
    # 10 (t=50), then 30, 20, 25 (t=100, file order, not item order), then 99 (t=200)
    assert read_interaction_table(path).sequences == [[10, 30, 20, 25, 99]]


def test_nanosecond_timestamps_keep_their_order(tmp_path: Path) -> None:
    # float() rounds these three to one value (a tie, file order 5, 6, 7).
    path = write(
        tmp_path, "1 5 1700000000000000100\n1 6 1700000000000000000\n1 7 1700000000000000200\n"
    )
    assert read_interaction_table(path).sequences == [[6, 5, 7]]


def test_integer_and_fractional_timestamps_compare_exactly(tmp_path: Path) -> None:
    # 100 and 100.0 tie (file order); 99.5 < 100; 2e2 == 200 ties with 200 (file order).
    path = write(tmp_path, "1 1 100\n1 2 100.0\n1 3 99.5\n1 4 2e2\n1 5 200\n1 6 -3\n")
    assert read_interaction_table(path).sequences == [[6, 3, 1, 2, 4, 5]]
    huge = write(tmp_path, "1 1 99999999999999999999\n1 2 5\n", name="huge.txt")
    assert read_interaction_table(huge).sequences == [[2, 1]]


def test_explicit_columns_and_header(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,item,user,rating\n5,100,1,4\n3,101,1,5\n4,200,2,1\n")
    raw = read_interaction_table(
        path, columns=["timestamp", "item", "user", "rating"], separator="comma", skip_header=True
    )
    assert as_dict(raw) == {1: [101, 100], 2: [200]}


def test_wrong_column_count_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "1::10::5::300\n1::11::5::301\n1::12::302\n")
    with pytest.raises(DataError, match=r"line 3: expected 4 columns .*found 3"):
        read_interaction_table(path)


@pytest.mark.parametrize("line", ["1::10\n", "1::10::5::7::9\n"])
def test_unguessable_column_count(tmp_path: Path, line: str) -> None:
    with pytest.raises(DataError, match=r"line 1: found \d columns"):
        read_interaction_table(write(tmp_path, line))


def test_header_line_numbers_count_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "user\titem\ttimestamp\n1\t2\t3\n1\tx\t4\n")
    with pytest.raises(DataError, match=r"line 3: item id 'x'"):
        read_interaction_table(path, skip_header=True)


def test_bad_timestamp(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 1: timestamp 'soon'"):
        read_interaction_table(write(tmp_path, "1,2,soon\n"))


def test_columns_must_include_required(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="timestamp"):
        read_interaction_table(write(tmp_path, "1,2,3\n"), columns=["user", "item", "rating"])


def test_unknown_separator(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="separator"):
        read_interaction_table(write(tmp_path, "1;2;3\n"), separator="semicolon")


def test_table_with_only_header_has_no_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no interaction rows"):
        read_interaction_table(write(tmp_path, "user,item,timestamp\n"), skip_header=True)


def test_empty_and_binary_tables(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        read_interaction_table(write(tmp_path, "", name="empty.dat"))
    with pytest.raises(DataError, match="binary"):
        read_interaction_table(write(tmp_path, b"1::2::3::4\n\x00\x00", name="bin.dat"))


# --------------------------------------------------------------------------- id tokens


@pytest.mark.parametrize(
    "token",
    ["1_0", "+4", "\u0663", "\uff14", "\u00b2", "4\u200b", "0x10", "1e3", "--4", "-", "\u22124"],
)
def test_ids_are_ascii_digits_only(tmp_path: Path, token: str) -> None:
    """int() reads 1_0, +4 and non-ASCII digits; an id is ASCII digits (and a minus) only."""
    with pytest.raises(DataError, match="is not an integer id") as info:
        read_sequence_file(write(tmp_path, f"1 2 3\n2 3 {token}\n"))
    assert "line 2" in str(info.value) and repr(token) in str(info.value)


@pytest.mark.parametrize("token", ["0", "007", "-3", str(2**63 - 1), str(-(2**63))])
def test_ascii_ids_are_read(tmp_path: Path, token: str) -> None:
    raw = read_sequence_file(write(tmp_path, f"1 2 {token}\n"))
    assert raw.sequences == [[2, int(token)]]


@pytest.mark.parametrize("token", [str(2**63), str(-(2**63) - 1), "9" * 10_000])
def test_ids_beyond_64_bits(tmp_path: Path, token: str) -> None:
    with pytest.raises(DataError, match="is out of range; ids must fit in a 64-bit") as info:
        read_sequence_file(write(tmp_path, f"1 2 {token}\n"))
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("token", ["x" * 100_000, "9" * 100_000, "\u0663" * 1000])
def test_errors_quote_at_most_40_characters_of_a_token(tmp_path: Path, token: str) -> None:
    with pytest.raises(DataError) as info:
        read_sequence_file(write(tmp_path, f"1 2 {token}\n"))
    message = str(info.value)
    assert token[:40] in message and token[:41] not in message
    assert f"... ({len(token):,} characters)" in message


def test_huge_tokens_are_clipped_in_table_errors(tmp_path: Path) -> None:
    stamp = "y" * 50_000
    with pytest.raises(DataError, match=r"timestamp 'y{40}'\.\.\. \(50,000 characters\)"):
        read_interaction_table(write(tmp_path, f"1::2::5::{stamp}\n"))
    with pytest.raises(DataError, match=r"timestamp '1_0' is not a number"):
        read_interaction_table(write(tmp_path, "1::2::5::1_0\n"))
    with pytest.raises(DataError, match=r"timestamp '\u0663' is not a number"):
        read_interaction_table(write(tmp_path, "1::2::5::\u0663\n"))
    line = "1\t2 " + "z" * 1000 + "\t3"
    with pytest.raises(DataError, match="mixes tabs and spaces") as info:
        read_interaction_table(write(tmp_path, line + "\n"))
    assert len(str(info.value)) < 400


# --------------------------------------------------------------------------- line breaks

# str.splitlines() also ends a line at these; an editor (and clue_fw) does not.
_NOT_LINE_BREAKS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", _NOT_LINE_BREAKS)
def test_only_newline_ends_a_line_in_sequence_files(tmp_path: Path, char: str) -> None:
    path = write(tmp_path, f"1 10 11\n2 20 21{char}3 30 31\n4 40 41\n")
    with pytest.raises(DataError, match=r"line 2: item id '21.*' is not an integer id"):
        read_sequence_file(path)


@pytest.mark.parametrize("char", _NOT_LINE_BREAKS)
def test_only_newline_ends_a_line_in_tables(tmp_path: Path, char: str) -> None:
    path = write(tmp_path, f"1,10,5\n2,20,6{char}3,30,7\n")
    with pytest.raises(DataError, match=r"line 2: "):
        read_interaction_table(path)


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1f", "\x85", "\xa0", "\u3000"])
def test_control_and_unicode_spaces_do_not_separate_fields(tmp_path: Path, char: str) -> None:
    path = write(tmp_path, f"1 10{char}11 12\n")
    with pytest.raises(DataError, match=r"line 1: item id .* is not an integer id"):
        read_sequence_file(path)


def test_line_numbers_match_an_editor_after_a_vertical_tab(tmp_path: Path) -> None:
    path = write(tmp_path, "1 10 11\n2 20\x0b21\n3 30 x\n")
    with pytest.raises(DataError, match=r"line 2: "):
        read_sequence_file(path)


def test_crlf_and_final_line_without_newline(tmp_path: Path) -> None:
    path = write(tmp_path, "1 10 11\r\n2 20 21\r\n3 30 31")
    assert as_dict(read_sequence_file(path)) == {1: [10, 11], 2: [20, 21], 3: [30, 31]}
