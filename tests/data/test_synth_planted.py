"""Tests for what `clue data synth` plants next to the sequences (clue_fw.data.synth_planted):
user attributes, a cold-start target domain and the generator's latent."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from clue_fw.data import synth
from clue_fw.data.dataset import build_sequence_data
from clue_fw.data.domains import read_target_pairs
from clue_fw.data.labels import read_label_file
from clue_fw.data.readers import RawSequences, read_sequence_file
from clue_fw.data.synth import SynthStats, write_synthetic_sequences
from clue_fw.data.synth_planted import ATTRIBUTES, TARGET_MAX_PER_USER, TASTE_CLASSES, TASTE_DIMS
from clue_fw.errors import DataError

USERS, ITEMS, PER_USER = 5000, 400, 3
CLASSES = {"easy": 2, "hard": 2, "taste": TASTE_CLASSES}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> SynthStats:
    out = tmp_path_factory.mktemp("planted") / "s.txt"
    return write_synthetic_sequences(
        out, USERS, ITEMS, seed=3, mean_length=30, attributes=True, cold_start=True, latent=True
    )


def labels_of(stats: SynthStats, name: str) -> np.ndarray:
    labels = read_label_file(stats.outputs[name])  # the profile head's reader, format auto
    assert list(labels) == list(range(1, USERS + 1))
    return np.array([int(labels[user]) for user in range(1, USERS + 1)])


def genre_weights(latent: dict[str, np.ndarray]) -> np.ndarray:
    """``[U, C]``: the share of each user's preferred-genre draws on each genre."""
    preferred = latent["preferred"]
    weights = np.zeros((preferred.shape[0], latent["genre_profile"].shape[0]))
    rows = np.repeat(np.arange(preferred.shape[0]), preferred.shape[1])
    np.add.at(weights, (rows, preferred.ravel()), 1 / preferred.shape[1])
    return weights


def genre_histogram(raw: RawSequences, item_genre: np.ndarray, genres: int) -> np.ndarray:
    """``[U, C]``: the share of each user's items in each genre (what behaviour shows)."""
    rows = np.repeat(np.arange(raw.num_users), np.diff(raw.offsets))
    counts = np.zeros((raw.num_users, genres))
    np.add.at(counts, (rows, item_genre[raw.items - 1]), 1)
    return counts / counts.sum(axis=1, keepdims=True)


def with_pairs(features: np.ndarray) -> np.ndarray:
    """The features and their pairwise products (a linear read-out of these can compute
    any quadratic function of the features, such as the sign of a product of two tastes)."""
    i, j = np.triu_indices(features.shape[1])
    return np.hstack([features, features[:, i] * features[:, j]])


def held_out(features: np.ndarray, labels: np.ndarray, classes: int) -> tuple[float, float]:
    """(accuracy, majority accuracy) on the last 30% of users of a ridge classifier fitted
    on the first 70% (least squares on one-hot labels: deterministic and fast)."""
    cut = int(0.7 * labels.size)
    x = np.hstack([features, np.ones((labels.size, 1))])
    gram = x[:cut].T @ x[:cut] + 1e-2 * np.eye(x.shape[1])
    coef = np.linalg.solve(gram, x[:cut].T @ np.eye(classes)[labels[:cut]])
    accuracy = float((np.argmax(x[cut:] @ coef, axis=1) == labels[cut:]).mean())
    majority = float((labels[cut:] == np.bincount(labels[:cut]).argmax()).mean())
    return accuracy, majority


def test_the_planted_files_leave_the_sequences_as_they_were(tmp_path: Path) -> None:
    plain, rich = tmp_path / "plain.txt", tmp_path / "rich.txt"
    write_synthetic_sequences(plain, 700, 90, seed=5, repeat_rate=0.1)
    stats = write_synthetic_sequences(
        rich, 700, 90, seed=5, repeat_rate=0.1, attributes=True, cold_start=True, latent=True
    )
    assert plain.read_bytes() == rich.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["plain.txt", "rich.txt", "rich_easy.csv", "rich_hard.csv", "rich_taste.csv"]
        + ["rich_target.txt", "rich_latent.safetensors"]
    )
    assert stats.outputs["sequences"] == rich and stats.path == rich


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    def files(name: str, seed: int) -> list[bytes]:
        stats = write_synthetic_sequences(
            tmp_path / f"{name}.txt", 300, 80, seed=seed, attributes=True, cold_start=True,
            latent=True,
        )  # fmt: skip
        return [path.read_bytes() for path in stats.outputs.values()]

    a, b, c = files("a", 1), files("b", 1), files("c", 2)
    assert a == b
    assert all(x != y for x, y in zip(a, c, strict=True))


def test_chunks_stream_the_planted_files_in_user_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synth, "CHUNK_USERS", 37)
    stats = write_synthetic_sequences(
        tmp_path / "s.txt", 200, 80, seed=1, attributes=True, cold_start=True, latent=True
    )
    for name in ATTRIBUTES:
        assert list(read_label_file(stats.outputs[name])) == list(range(1, 201))
    latent = load_file(stats.outputs["latent"])
    assert latent["preferred"].shape == (200, PER_USER)
    taste = latent["genre_profile"][latent["preferred"]].mean(axis=1)
    np.testing.assert_allclose(latent["taste"], taste, rtol=1e-5, atol=1e-6)
    target = np.loadtxt(stats.outputs["target"], dtype=np.int64)
    assert np.all(np.diff(target[:, 0]) >= 0)  # users in order, every chunk's after the last


def test_attributes_are_what_the_profile_head_reads(planted: SynthStats) -> None:
    for name in ATTRIBUTES:
        labels = labels_of(planted, name)
        shares = np.bincount(labels, minlength=CLASSES[name]) / USERS
        assert shares.size == CLASSES[name]
        assert shares.min() > 0.5 / CLASSES[name]  # no class is rare: the floor is ~1/classes
        assert planted.outputs[name].read_text().startswith(f"user,{name}\n")


def test_latent_file(planted: SynthStats) -> None:
    latent = load_file(planted.outputs["latent"])
    genres = round(ITEMS**0.5)
    assert {name: value.shape for name, value in latent.items()} == {
        "preferred": (USERS, PER_USER),
        "taste": (USERS, TASTE_DIMS),
        "genre_profile": (genres, TASTE_DIMS),
        "item_genre": (ITEMS,),
        "target_item_genre": (max(ITEMS // 10, 5 * genres),),
    }
    assert latent["preferred"].min() >= 0 and latent["preferred"].max() < genres
    assert np.array_equal(np.unique(latent["item_genre"]), np.arange(genres))
    with safe_open(str(planted.outputs["latent"]), "np") as handle:
        metadata = handle.metadata()
    assert metadata["seed"] == "3" and "20% flipped" in metadata["rules"]


def test_sequences_and_target_domain_visit_the_preferred_genres(planted: SynthStats) -> None:
    """The latent drives behaviour: most items of both domains are in preferred genres."""
    latent = load_file(planted.outputs["latent"])
    raw = read_sequence_file(planted.path)
    rows = np.repeat(np.arange(USERS), np.diff(raw.offsets))
    genre = latent["item_genre"][raw.items - 1]
    inside = (latent["preferred"][rows] == genre[:, None]).any(axis=1)
    assert inside.mean() > 0.85  # 1 - explore (0.1), plus explorations that land inside
    pairs = np.loadtxt(planted.outputs["target"], dtype=np.int64)
    target_genre = latent["target_item_genre"][pairs[:, 1] - 1]
    inside = (latent["preferred"][pairs[:, 0] - 1] == target_genre[:, None]).any(axis=1)
    assert inside.mean() > 0.85


def test_target_domain_is_cold_and_what_the_cold_start_head_reads(planted: SynthStats) -> None:
    source = build_sequence_data(read_sequence_file(planted.path), source=str(planted.path))
    domains = read_target_pairs(planted.outputs["target"], source)
    per_user = domains.target.lengths.numpy()
    assert per_user.min() >= 1 and per_user.max() <= TARGET_MAX_PER_USER
    assert set(np.unique(per_user)) == set(range(1, TARGET_MAX_PER_USER + 1))
    assert int(per_user.sum()) == planted.target_interactions
    pairs = np.loadtxt(planted.outputs["target"], dtype=np.int64)
    key = pairs[:, 0] * 10**6 + pairs[:, 1]
    assert np.unique(key).size == key.size  # a user's target items are distinct


def test_attributes_are_recoverable_from_the_latent_and_not_from_noise(
    planted: SynthStats,
) -> None:
    """A linear read-out of the true genre weights (with their pairwise products) is well
    above the majority class on held-out users; of a random vector it is not; and the
    hard attribute is clearly harder than the easy one."""
    latent = with_pairs(genre_weights(load_file(planted.outputs["latent"])))
    noise = np.random.default_rng(0).standard_normal(latent.shape)
    scores = {}
    for name in ATTRIBUTES:
        labels = labels_of(planted, name)
        accuracy, majority = held_out(latent, labels, CLASSES[name])
        random_accuracy, _ = held_out(noise, labels, CLASSES[name])
        assert random_accuracy < majority + 0.04, name
        scores[name] = accuracy - majority
    assert scores["easy"] > 0.3  # 0.90 against 0.54 (the best possible is 0.95)
    assert scores["taste"] > 0.5  # 0.83 against 0.17
    assert 0.1 < scores["hard"] < scores["easy"] - 0.1  # 0.72 against 0.51 (best 0.80)


def test_attributes_are_recoverable_from_behaviour(planted: SynthStats) -> None:
    """What a user encoder can learn: the genres of the items in the sequence file (no
    latent read) already give every attribute above the majority class."""
    latent = load_file(planted.outputs["latent"])
    genres = latent["genre_profile"].shape[0]
    shown = with_pairs(
        genre_histogram(read_sequence_file(planted.path), latent["item_genre"], genres)
    )
    gains = {}
    for name in ATTRIBUTES:
        accuracy, majority = held_out(shown, labels_of(planted, name), CLASSES[name])
        gains[name] = accuracy - majority
    assert gains["easy"] > 0.2 and gains["taste"] > 0.3 and gains["hard"] > 0.05
    assert gains["hard"] < gains["easy"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"target_items": 50}, "--target-items) sizes the cold-start target domain; add"),
        ({"cold_start": True, "target_items": 3}, "between the number of genres (9: every"),
    ],
)
def test_bad_planted_options(tmp_path: Path, options: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        write_synthetic_sequences(tmp_path / "s.txt", 10, 80, **options)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_every_planted_file_needs_overwrite(tmp_path: Path) -> None:
    (tmp_path / "s_target.txt").write_text("precious\n")
    with pytest.raises(DataError, match="s_target.txt already exists; pass --overwrite"):
        write_synthetic_sequences(tmp_path / "s.txt", 10, 10, cold_start=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s_target.txt"]
    write_synthetic_sequences(tmp_path / "s.txt", 10, 10, cold_start=True, overwrite=True)
    assert (tmp_path / "s_target.txt").read_text() != "precious\n"
