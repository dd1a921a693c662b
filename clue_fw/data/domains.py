"""Two domains for cold-start cross-domain recommendation.

The **source** domain holds each user's behaviour sequence; the **target** domain a few
interactions per user (cold users). Every user of the target domain must have source
behaviour. Two ways to get them:

* :func:`split_by_genres` cuts one dataset (MovieLens-1M) into two domains by disjoint
  genre sets of ``movies.dat``. A movie belongs to the **target** domain when one of
  its genres is a target genre and (``mixed: drop``, the default) none is a source
  genre; to the **source** domain when none of its genres is a target genre. With
  ``mixed: drop`` a movie with genres on both sides is in neither domain (so each
  domain's movies carry only its own genres); with ``mixed: target`` it is a target
  movie. The source sequence of a user is their interactions with source movies, in
  their original order; their target interactions are those with target movies, in
  order. No target movie can be in any source sequence.
* :func:`read_target_pairs` reads a generic target file (``user item`` per line, in
  chronological order per user) for data that really comes from two platforms.

:func:`cold_targets` then keeps at most ``g`` target interactions per user: the first
``k_u`` of them, with ``k_u`` drawn uniformly from ``1..g`` by a seeded generator (so
about one user in ``g`` has a single interaction, as in the paper's ColdRec data) or,
with ``per_user: first``, ``min(g, available)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.data.readers import (
    SPACE,
    _parse_int,
    _read_text,
    is_blank,
    is_int_token,
    split_fields,
    split_lines,
)
from clue_fw.errors import QUOTE_LIMIT, DataError, quote

ML1M_GENRES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

GENRES_SHOWN = 30
"""At most this many genre names are listed in an error message."""


@dataclass(frozen=True)
class Domains:
    """A source domain (sequences) and, per source user, their target interactions.

    ``source``: the source-domain :class:`SequenceData` (its own contiguous item ids).
    ``target``: a :class:`Csr` with one row per ``source`` user (same order) holding
    target item ids ``1..num_target_items`` in chronological order (rows may be empty).
    ``target_item_ids[j - 1]`` is the original id of target item ``j``.
    """

    source: SequenceData
    target: Csr
    num_target_items: int
    target_item_ids: np.ndarray
    counts: dict[str, int]


def read_movie_genres(path: Path) -> dict[int, frozenset[str]]:
    """``{movie id: genres}`` from a MovieLens ``movies.dat`` (``id::title::A|B``)."""
    genres: dict[int, frozenset[str]] = {}
    for line_number, line in enumerate(split_lines(_read_text(path)), start=1):
        if is_blank(line):
            continue
        fields = line.split("::")
        if len(fields) != 3:
            raise DataError(
                f"{path}, line {line_number}: expected 3 fields (MovieID::Title::Genres), "
                f"found {len(fields)}. Is this MovieLens movies.dat?"
            )
        movie = _parse_int(fields[0].strip(SPACE), path, line_number, "movie id")
        names = frozenset(
            g.strip(SPACE) for g in fields[2].strip(SPACE).split("|") if g.strip(SPACE)
        )
        if not names:
            raise DataError(f"{path}, line {line_number}: movie {movie} has no genre.")
        genres[movie] = names
    return genres


def _clip(name: str) -> str:
    return name if len(name) <= QUOTE_LIMIT else name[:QUOTE_LIMIT] + "..."


def _restrict(data: SequenceData, keep_item: np.ndarray) -> tuple[Csr, np.ndarray]:
    """Keep the items ``keep_item[i]`` (indexed by contiguous id); re-index them.

    Returns ``(per-user Csr of the new ids, original ids of the kept items)``.
    """
    values = data.sequences.values.numpy()
    kept_ids = np.flatnonzero(keep_item[1:]) + 1
    new_id = np.zeros(data.num_items + 1, dtype=np.int64)
    new_id[kept_ids] = np.arange(1, kept_ids.size + 1)
    keep = keep_item[values]
    user_of = np.repeat(np.arange(data.num_users), data.sequences.lengths.numpy())
    lengths = np.bincount(user_of[keep], minlength=data.num_users)
    offsets = np.zeros(data.num_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    csr = Csr(torch.from_numpy(offsets), torch.from_numpy(new_id[values[keep]]))
    return csr, data.item_ids[kept_ids - 1]


def _drop_empty_users(
    source: Csr, target: Csr, user_ids: np.ndarray
) -> tuple[Csr, Csr, np.ndarray]:
    """Users without source behaviour cannot be encoded: drop them from both domains."""
    keep = source.lengths > 0
    rows = torch.nonzero(keep).reshape(-1)
    return source.select_rows(rows), target.select_rows(rows), user_ids[keep.numpy()]


def split_by_genres(
    data: SequenceData,
    genres: Mapping[int, frozenset[str]],
    target_genres: Sequence[str],
    mixed: str = "drop",
    source_name: str = "movies.dat",
) -> Domains:
    """Cut ``data`` into a source and a target domain by genre (see the module docstring)."""
    target_set = frozenset(target_genres)
    known = frozenset().union(*genres.values()) if genres else frozenset()
    unknown = sorted(target_set - known)
    if unknown:
        names = sorted(known)
        listed = ", ".join(_clip(name) for name in names[:GENRES_SHOWN])
        more = f" and {len(names) - GENRES_SHOWN:,} more" if len(names) > GENRES_SHOWN else ""
        asked = ", ".join(quote(name) for name in unknown[:GENRES_SHOWN])
        raise DataError(
            f"Target genres [{asked}] do not occur in {source_name}; its genres are {listed}{more}."
        )
    if known <= target_set:
        raise DataError("Every genre is a target genre: the source domain would be empty.")
    missing = [int(i) for i in data.item_ids if int(i) not in genres]
    if missing:
        raise DataError(
            f"{len(missing):,} items of the sequences are not in {source_name} (e.g. "
            f"{', '.join(map(str, missing[:5]))}). Do the sequences and {source_name} come "
            "from the same dataset?"
        )
    is_target = np.zeros(data.num_items + 1, dtype=bool)
    is_source = np.zeros(data.num_items + 1, dtype=bool)
    for index, original in enumerate(data.item_ids, start=1):
        item_genres = genres[int(original)]
        touches_target = bool(item_genres & target_set)
        touches_source = bool(item_genres - target_set)
        is_source[index] = not touches_target
        is_target[index] = touches_target and (mixed == "target" or not touches_source)
    source_csr, source_ids = _restrict(data, is_source)
    target_csr, target_ids = _restrict(data, is_target)
    source_csr, target_csr, user_ids = _drop_empty_users(source_csr, target_csr, data.user_ids)
    for name, side in (("source", source_csr), ("target", target_csr)):
        if side.values.numel() == 0:
            raise DataError(
                f"The genre split leaves an empty {name} domain; choose other target genres."
            )
    source = SequenceData(source_csr, int(source_ids.size), user_ids, source_ids)
    counts = {
        "movies dropped (genres on both sides)": int(
            data.num_items - is_source[1:].sum() - is_target[1:].sum()
        ),
        "interactions dropped (movies on both sides)": int(
            data.num_interactions - source_csr.values.numel() - target_csr.values.numel()
        ),
    }
    return Domains(source, target_csr, int(target_ids.size), target_ids, counts)


def read_target_pairs(
    path: Path, source: SequenceData, drop_unknown_users: bool = False
) -> Domains:
    """Read a target file, ``user item`` per line (whitespace or comma), in time order.

    Users must be users of ``source`` (the source-domain sequences); with
    ``drop_unknown_users`` the lines of other users are skipped instead.
    """
    row_of = {int(user): row for row, user in enumerate(source.user_ids)}
    users: list[int] = []
    items: list[int] = []
    unknown: dict[int, int] = {}
    for line_number, line in enumerate(split_lines(_read_text(path)), start=1):
        tokens = split_fields(line.replace(",", " "))
        if not tokens:
            continue
        if line_number == 1 and not is_int_token(tokens[0]):
            continue  # header such as "user,item"
        if len(tokens) != 2:
            raise DataError(
                f"{path}, line {line_number}: expected 2 fields (user item), found {len(tokens)}."
            )
        user = _parse_int(tokens[0], path, line_number, "user id")
        item = _parse_int(tokens[1], path, line_number, "item id")
        if user not in row_of:
            unknown.setdefault(user, line_number)
            continue
        users.append(row_of[user])
        items.append(item)
    if unknown and not drop_unknown_users:
        first = sorted(unknown.items(), key=lambda kv: kv[1])[:5]
        raise DataError(
            f"{path}: {len(unknown):,} target users have no source sequence (e.g. user "
            f"{first[0][0]} on line {first[0][1]}). Every cold user needs source behaviour; "
            "set drop_unknown_users: true to skip them."
        )
    if not items:
        raise DataError(f"{path} holds no target interaction of a user with source behaviour.")
    item_ids, contiguous = np.unique(np.asarray(items, dtype=np.int64), return_inverse=True)
    user_array = np.asarray(users, dtype=np.int64)
    order = np.argsort(user_array, kind="stable")  # keeps each user's file order
    lengths = np.bincount(user_array, minlength=source.num_users)
    offsets = np.zeros(source.num_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = torch.from_numpy(contiguous[order].astype(np.int64) + 1)
    target = Csr(torch.from_numpy(offsets), values)
    return Domains(
        source,
        target,
        int(item_ids.size),
        item_ids,
        {"target users without source behaviour (skipped)": len(unknown)},
    )


def cold_targets(
    target: Csr, max_per_user: int | None, per_user: str, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(user rows, target items)`` of the kept (user, item) pairs, user by user.

    Keeps each user's first ``k_u`` target interactions: ``k_u`` uniform in
    ``1..max_per_user`` (``per_user: uniform``) or ``max_per_user`` (``first``), never
    more than the user has. ``max_per_user=None`` keeps all.
    """
    lengths = target.lengths
    if max_per_user is None:
        keep = lengths
    elif per_user == "uniform":
        generator = torch.Generator().manual_seed(seed)
        drawn = torch.randint(1, max_per_user + 1, (target.num_rows,), generator=generator)
        keep = torch.minimum(lengths, drawn)
    else:
        keep = lengths.clamp(max=max_per_user)
    kept = target.take_prefix(keep)
    users = torch.repeat_interleave(torch.arange(target.num_rows), kept.lengths)
    return users, kept.values
