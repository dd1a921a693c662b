"""Tests for clue_fw.data.domains: genre split, target pair files and the per-user cap."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.data.domains import (
    Domains,
    cold_targets,
    read_movie_genres,
    read_target_pairs,
    split_by_genres,
)
from clue_fw.errors import DataError

MOVIES = """\
10::Heat (1995)::Action|Thriller
11::Clueless (1995)::Comedy|Romance
12::Toy Story (1995)::Animation|Children's
13::Aladdin (1992)::Animation|Comedy
14::Babe (1995)::Children's
15::Casino (1995)::Drama

16::Fargo (1996)::Crime|Drama|Thriller
"""
TARGET = ["Animation", "Children's"]

# Sequences in original movie ids. User 2 has only target movies (no source behaviour);
# 13 has genres on both sides (dropped with mixed=drop, a target movie with mixed=target).
SEQUENCES = {
    1: [10, 12, 11, 13, 14, 15],
    2: [12, 14, 13],
    3: [15, 13, 10, 16],
    4: [16, 11, 12, 15, 14, 10],
}


def sequence_data(sequences: dict[int, list[int]]) -> SequenceData:
    """SequenceData with contiguous ids by original id, as build_sequence_data makes them."""
    originals = np.array(sorted({i for row in sequences.values() for i in row}), dtype=np.int64)
    new_id = {int(o): n for n, o in enumerate(originals, start=1)}
    rows = [[new_id[i] for i in row] for row in sequences.values()]
    return SequenceData(
        Csr.from_lists(rows), len(originals), np.array(list(sequences), np.int64), originals
    )


def write_movies(folder: Path, text: str = MOVIES) -> Path:
    path = folder / "movies.dat"
    path.write_text(text, encoding="latin-1")
    return path


def source_rows(domains: Domains) -> dict[int, list[int]]:
    """Each source user's sequence in original ids."""
    ids = domains.source.item_ids
    seqs = domains.source.sequences
    return {
        int(user): [int(ids[i - 1]) for i in seqs.row(r).tolist()]
        for r, user in enumerate(domains.source.user_ids)
    }


def target_rows(domains: Domains) -> dict[int, list[int]]:
    ids = domains.target_item_ids
    return {
        int(user): [int(ids[i - 1]) for i in domains.target.row(r).tolist()]
        for r, user in enumerate(domains.source.user_ids)
    }


def genre_domains(folder: Path, mixed: str = "drop", target: list[str] = TARGET) -> Domains:
    genres = read_movie_genres(write_movies(folder))
    return split_by_genres(sequence_data(SEQUENCES), genres, target, mixed)


# --------------------------------------------------------------------------- movies.dat


def test_read_movie_genres(tmp_path: Path) -> None:
    genres = read_movie_genres(write_movies(tmp_path))
    assert genres[12] == frozenset({"Animation", "Children's"})
    assert genres[15] == frozenset({"Drama"})
    assert len(genres) == 7  # the blank line is skipped


def test_read_movie_genres_latin1_titles(tmp_path: Path) -> None:
    path = tmp_path / "movies.dat"
    path.write_bytes("1::Am\xe9lie (2001)::Comedy|Romance\n".encode("latin-1"))
    assert read_movie_genres(path) == {1: frozenset({"Comedy", "Romance"})}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1::Heat::Action\n2::Heat\n", "line 2: expected 3 fields (MovieID::Title::Genres)"),
        ("x::Heat::Action\n", "line 1: movie id 'x' is not an integer id"),
        ("1::Heat::\n", "line 1: movie 1 has no genre"),
    ],
)
def test_malformed_movies_dat(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        read_movie_genres(write_movies(tmp_path, text))


# --------------------------------------------------------------------------- genre split


def test_mixed_drop(tmp_path: Path) -> None:
    domains = genre_domains(tmp_path, "drop")
    # user 2 has no source movie: gone from both domains
    assert source_rows(domains) == {1: [10, 11, 15], 3: [15, 10, 16], 4: [16, 11, 15, 10]}
    assert target_rows(domains) == {1: [12, 14], 3: [], 4: [12, 14]}
    assert domains.target_item_ids.tolist() == [12, 14]
    assert domains.num_target_items == 2
    assert domains.source.item_ids.tolist() == [10, 11, 15, 16]
    assert domains.source.num_items == 4
    assert domains.counts == {
        "movies dropped (genres on both sides)": 1,
        # 13 three times, plus user 2's target interactions 12 and 14
        "interactions dropped (movies on both sides)": 5,
    }


def test_mixed_target(tmp_path: Path) -> None:
    domains = genre_domains(tmp_path, "target")
    assert source_rows(domains) == {1: [10, 11, 15], 3: [15, 10, 16], 4: [16, 11, 15, 10]}
    assert target_rows(domains) == {1: [12, 13, 14], 3: [13], 4: [12, 14]}
    assert domains.target_item_ids.tolist() == [12, 13, 14]
    assert domains.counts["movies dropped (genres on both sides)"] == 0


@pytest.mark.parametrize("mixed", ["drop", "target"])
def test_no_target_movie_in_any_source_sequence(tmp_path: Path, mixed: str) -> None:
    genres = read_movie_genres(write_movies(tmp_path))
    domains = genre_domains(tmp_path, mixed)
    targets = set(domains.target_item_ids.tolist())
    for user, row in source_rows(domains).items():
        assert not set(row) & targets, user
        assert all(not genres[m] & set(TARGET) for m in row), user
    for row in target_rows(domains).values():
        assert all(genres[m] & set(TARGET) for m in row)
        if mixed == "drop":
            assert all(genres[m] <= set(TARGET) for m in row)


def test_domains_keep_each_users_order(tmp_path: Path) -> None:
    domains = genre_domains(tmp_path, "target")
    for user, row in source_rows(domains).items():
        original = SEQUENCES[user]
        assert row == [m for m in original if m in row]  # a subsequence, in order
    for user, row in target_rows(domains).items():
        assert row == [m for m in SEQUENCES[user] if m in set(row)]


def test_unknown_target_genre(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        genre_domains(tmp_path, target=["Animation", "Horror", "Anime"])
    message = str(info.value)
    assert "Target genres ['Anime', 'Horror'] do not occur in movies.dat" in message
    assert "Action, Animation, Children's, Comedy, Crime, Drama, Romance, Thriller" in message


def test_every_genre_a_target_genre(tmp_path: Path) -> None:
    every = ["Action", "Animation", "Children's", "Comedy", "Crime", "Drama", "Romance"]
    with pytest.raises(DataError, match="source domain would be empty"):
        genre_domains(tmp_path, target=[*every, "Thriller"])


def test_items_missing_from_movies_dat(tmp_path: Path) -> None:
    genres = read_movie_genres(write_movies(tmp_path))
    data = sequence_data({1: [10, 11, 12, 99], 2: [98, 15, 99]})
    with pytest.raises(DataError) as info:
        split_by_genres(data, genres, TARGET, source_name="my/movies.dat")
    message = str(info.value)
    assert "2 items of the sequences are not in my/movies.dat (e.g. 98, 99)" in message


def test_genre_split_without_target_interactions(tmp_path: Path) -> None:
    genres = read_movie_genres(write_movies(tmp_path))
    data = sequence_data({1: [10, 11, 15], 2: [16, 15, 11]})
    with pytest.raises(DataError, match="empty target domain"):
        split_by_genres(data, genres, TARGET)


# --------------------------------------------------------------------------- target pairs


def pairs(folder: Path, text: str) -> Path:
    path = folder / "target.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_read_target_pairs_header_commas_and_order(tmp_path: Path) -> None:
    source = sequence_data(SEQUENCES)
    # users interleaved; each user's own lines are in time order
    text = "user,item\n3,700\n1,500\n3, 600\n\n4 700\n1\t900\n3,500\n"
    domains = read_target_pairs(pairs(tmp_path, text), source)
    assert domains.source is source
    assert domains.target_item_ids.tolist() == [500, 600, 700, 900]
    assert target_rows(domains) == {1: [500, 900], 2: [], 3: [700, 600, 500], 4: [700]}
    assert domains.counts == {"target users without source behaviour (skipped)": 0}


def test_read_target_pairs_unknown_users(tmp_path: Path) -> None:
    source = sequence_data(SEQUENCES)
    path = pairs(tmp_path, "1 500\n77 600\n3 600\n88 700\n77 500\n")
    with pytest.raises(DataError) as info:
        read_target_pairs(path, source)
    message = str(info.value)
    assert f"{path}: 2 target users have no source sequence (e.g. user 77 on line 2)" in message
    assert "drop_unknown_users: true" in message
    domains = read_target_pairs(path, source, drop_unknown_users=True)
    assert target_rows(domains) == {1: [500], 2: [], 3: [600], 4: []}
    assert domains.target_item_ids.tolist() == [500, 600]  # 700 was only user 88's
    assert domains.counts == {"target users without source behaviour (skipped)": 2}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1 500\n2 600 7\n", "line 2: expected 2 fields (user item), found 3"),
        ("1 500\nuser item\n", "line 2: user id 'user' is not an integer id"),
        ("1 x\n", "line 1: item id 'x' is not an integer id"),
        # only \n ends a line: a form feed or \u2028 is part of a token
        ("1 500\n3 600\x0c4 700\n", "line 2: expected 2 fields (user item), found 3"),
        ("1 500\x0b\n", "line 1: item id '500\\x0b' is not an integer id"),
        ("1 500\n\n3 600\u20284 700\n", "line 3: expected 2 fields"),
    ],
)
def test_malformed_target_pairs(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(DataError) as info:
        read_target_pairs(pairs(tmp_path, text), sequence_data(SEQUENCES))
    assert fragment in str(info.value)


def test_target_pairs_of_unknown_users_only(tmp_path: Path) -> None:
    path = pairs(tmp_path, "77 500\n")
    with pytest.raises(DataError, match="holds no target interaction"):
        read_target_pairs(path, sequence_data(SEQUENCES), drop_unknown_users=True)


# --------------------------------------------------------------------------- per-user cap


def target_csr(lengths: list[int]) -> Csr:
    """Row r holds ``100 * r + 1, 100 * r + 2, ...`` (its values name the row and order)."""
    return Csr.from_lists([[100 * r + j for j in range(1, n + 1)] for r, n in enumerate(lengths)])


def kept(users: torch.Tensor, items: torch.Tensor) -> dict[int, list[int]]:
    rows: dict[int, list[int]] = {}
    for user, item in zip(users.tolist(), items.tolist(), strict=True):
        rows.setdefault(user, []).append(item)
    return rows


def test_uniform_cap_draws_k_in_1_to_g_and_keeps_a_prefix() -> None:
    count, g = 3000, 3
    lengths = [10] * count
    users, items = cold_targets(target_csr(lengths), g, "uniform", seed=0)
    rows = kept(users, items)
    assert sorted(rows) == list(range(count))  # every user keeps at least one pair
    ks = Counter(len(row) for row in rows.values())
    assert set(ks) == {1, 2, 3}
    for k in (1, 2, 3):  # about a third each
        assert 0.3 < ks[k] / count < 0.37, ks
    for user, row in rows.items():
        assert row == [100 * user + j for j in range(1, len(row) + 1)]
    # users come out grouped, in row order
    assert users.tolist() == sorted(users.tolist())


def test_uniform_cap_never_exceeds_what_a_user_has() -> None:
    lengths = [0, 1, 2, 1, 5, 0, 2] * 200
    users, items = cold_targets(target_csr(lengths), 4, "uniform", seed=1)
    rows = kept(users, items)
    for row, n in enumerate(lengths):
        got = rows.get(row, [])
        assert 1 <= len(got) <= min(n, 4) if n else got == []
        assert got == [100 * row + j for j in range(1, len(got) + 1)]
    # users with 5 items see every k in 1..4
    assert {len(rows[r]) for r, n in enumerate(lengths) if n == 5} == {1, 2, 3, 4}


def test_first_keeps_min_of_g_and_available() -> None:
    lengths = [0, 1, 2, 3, 4, 7]
    users, items = cold_targets(target_csr(lengths), 3, "first", seed=0)
    assert kept(users, items) == {
        1: [101],
        2: [201, 202],
        3: [301, 302, 303],
        4: [401, 402, 403],
        5: [501, 502, 503],
    }


@pytest.mark.parametrize("per_user", ["uniform", "first"])
def test_no_cap_keeps_everything(per_user: str) -> None:
    lengths = [0, 1, 5, 9]
    csr = target_csr(lengths)
    users, items = cold_targets(csr, None, per_user, seed=0)
    assert torch.equal(items, csr.values)
    assert users.tolist() == [1] + [2] * 5 + [3] * 9


def test_uniform_cap_is_seeded() -> None:
    csr = target_csr([6] * 200)
    torch.manual_seed(0)
    first = cold_targets(csr, 5, "uniform", seed=7)
    torch.manual_seed(1)  # the global generator plays no part
    again = cold_targets(csr, 5, "uniform", seed=7)
    other = cold_targets(csr, 5, "uniform", seed=8)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
