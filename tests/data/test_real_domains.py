"""The ML-1M genre split on the real files, when a data root holds them (CI points
CLUE_DATA_DIR at ../shared/data). Marked slow; skipped without the files.

Expected counts come from a plain-Python pass over movies.dat and the sequences, and
are pinned as numbers too (default target genres, ``mixed: drop``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clue_fw.data.dataset import build_sequence_data
from clue_fw.data.domains import read_movie_genres, split_by_genres
from clue_fw.data.readers import read_sequence_file
from clue_fw.heads.cold_start import DEFAULT_TARGET_GENRES

DATA = Path(os.environ.get("CLUE_DATA_DIR", "/nonexistent"))
SEQUENCES = DATA / "ml-1m" / "ml-1m_sequences.txt"
MOVIES = DATA / "ml-1m" / "movies.dat"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SEQUENCES.is_file() and MOVIES.is_file()), reason="ml-1m not under CLUE_DATA_DIR"
    ),
]


def plain_counts(mixed: str) -> dict[str, int]:
    target = set(DEFAULT_TARGET_GENRES)
    genres = {}
    for line in MOVIES.read_text(encoding="latin-1").splitlines():
        if line.strip():
            movie, _, names = line.split("::")
            genres[int(movie)] = set(names.split("|"))
    sequences = [
        [int(m) for m in line.split()[1:]] for line in SEQUENCES.read_text().splitlines() if line
    ]
    rated = {m for row in sequences for m in row}
    source = {m for m in rated if not genres[m] & target}
    if mixed == "drop":
        in_target = {m for m in rated if genres[m] & target and genres[m] <= target}
    else:
        in_target = {m for m in rated if genres[m] & target}
    kept_users = [row for row in sequences if any(m in source for m in row)]
    return {
        "source items": len(source),
        "target items": len(in_target),
        "source users": len(kept_users),
        "source interactions": sum(m in source for row in kept_users for m in row),
        "target interactions": sum(m in in_target for row in kept_users for m in row),
        "users with target items": sum(any(m in in_target for m in row) for row in kept_users),
    }


@pytest.fixture(scope="module")
def ml1m() -> tuple[object, dict[int, frozenset[str]]]:
    return build_sequence_data(read_sequence_file(SEQUENCES)), read_movie_genres(MOVIES)


@pytest.mark.parametrize(
    ("mixed", "pinned"),
    [
        ("drop", (3116, 231, 6040, 831_448, 36_218, 4211)),
        ("target", (3116, 590, 6040, 831_448, 168_761, None)),
    ],
)
def test_ml1m_genre_split_counts(ml1m: tuple, mixed: str, pinned: tuple) -> None:
    data, genres = ml1m
    domains = split_by_genres(data, genres, DEFAULT_TARGET_GENRES, mixed)
    got = {
        "source items": domains.source.num_items,
        "target items": domains.num_target_items,
        "source users": domains.source.num_users,
        "source interactions": domains.source.num_interactions,
        "target interactions": int(domains.target.values.numel()),
        "users with target items": int((domains.target.lengths > 0).sum()),
    }
    assert got == plain_counts(mixed)
    for value, expected in zip(got.values(), pinned, strict=True):
        assert expected is None or value == expected
    if mixed == "drop":
        assert domains.counts == {
            "movies dropped (genres on both sides)": 359,
            "interactions dropped (movies on both sides)": 132_543,
        }


def test_ml1m_no_target_movie_leaks_into_a_source_sequence(ml1m: tuple) -> None:
    data, genres = ml1m
    target_genres = set(DEFAULT_TARGET_GENRES)
    domains = split_by_genres(data, genres, DEFAULT_TARGET_GENRES, "drop")
    source_movies = {int(m) for m in domains.source.item_ids[domains.source.sequences.values - 1]}
    target_movies = {int(m) for m in domains.target_item_ids}
    assert not source_movies & target_movies
    assert all(not genres[m] & target_genres for m in source_movies)
    assert all(genres[m] <= target_genres for m in target_movies)
