"""clue_fw.inference.export: vector files written chunk by chunk, read back as written."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from clue_fw.errors import ClueError
from clue_fw.inference.export import read_vectors, write_vector_chunks, write_vectors

FORMATS = [".npy", ".safetensors", ".parquet"]


def pieces(ids: np.ndarray, vectors: np.ndarray, sizes: list[int]) -> Iterator[tuple]:
    start = 0
    for size in sizes:
        yield ids[start : start + size], vectors[start : start + size]
        start += size


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.permutation(10_000)[:37].astype(np.int64), rng.standard_normal((37, 5))


@pytest.mark.parametrize("suffix", FORMATS)
def test_chunks_of_any_sizes_read_back_as_one_array(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], suffix: str
) -> None:
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    ids, vectors = data
    chunked, whole = tmp_path / f"chunked{suffix}", tmp_path / f"whole{suffix}"
    meta = {"run_id": "r1", "stage": "finetune"}
    write_vector_chunks(chunked, "user", 37, 5, meta, pieces(ids, vectors, [1, 0, 20, 16]))
    write_vectors(whole, "user", ids, vectors, meta)
    for path in (chunked, whole):
        found = read_vectors(path)
        assert found.name == "user" and found.ids.tolist() == ids.tolist()
        assert np.array_equal(found.vectors, vectors.astype(np.float32))
        if suffix != ".npy":
            assert found.metadata["run_id"] == "r1"
            assert found.metadata["format"] == "clue_fw.vectors/1"
    assert chunked.read_bytes() == whole.read_bytes() or suffix == ".parquet"  # row groups
    if suffix == ".npy":
        table = np.load(chunked)  # no allow_pickle
        assert table.dtype.names == ("user", "vector") and table.shape == (37,)
    if suffix == ".safetensors":  # the reference reader accepts the hand-written header
        with safe_open(str(chunked), framework="np") as handle:
            assert sorted(handle.keys()) == ["user_ids", "vectors"]
            assert handle.get_tensor("vectors").shape == (37, 5)


@pytest.mark.parametrize("suffix", [".npy", ".safetensors"])
def test_memory_holds_one_chunk_not_the_whole_file(tmp_path: Path, suffix: str) -> None:
    count, dim, chunk = 100_000, 64, 1_000  # 25.6 MB of vectors, 0.26 MB a chunk

    def made() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, count, chunk):
            ids = np.arange(start, start + chunk, dtype=np.int64)
            yield ids, np.full((chunk, dim), start, dtype=np.float32)

    tracemalloc.start()
    try:
        write_vector_chunks(tmp_path / f"big{suffix}", "user", count, dim, {}, made())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, f"peak {peak:,} bytes for a {count * dim * 4:,}-byte file"
    found = read_vectors(tmp_path / f"big{suffix}")
    assert found.ids[-1] == count - 1 and found.vectors[-1, 0] == count - chunk


@pytest.mark.parametrize(
    ("sizes", "fragment"), [([10, 10], "20 rows written, 37 announced"), ([30, 30], "more than")]
)
def test_a_wrong_count_leaves_no_file(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], sizes: list[int], fragment: str
) -> None:
    ids, vectors = data
    ids, vectors = np.concatenate([ids, ids]), np.concatenate([vectors, vectors])
    out = tmp_path / "users.npy"
    with pytest.raises(ValueError, match=fragment):
        write_vector_chunks(out, "user", 37, 5, {}, pieces(ids, vectors, sizes))
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temp file


def test_a_failure_inside_the_stream_leaves_no_file(tmp_path: Path) -> None:
    def broken() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        yield np.arange(3), np.zeros((3, 2))
        raise ClueError("the encoder failed")

    with pytest.raises(ClueError, match="encoder failed"):
        write_vector_chunks(tmp_path / "u.safetensors", "user", 6, 2, {}, broken())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"not a numpy file", "is not a vector file"),
        (None, "no such file"),
    ],
)
def test_read_vectors_names_a_bad_file(
    tmp_path: Path, content: bytes | None, fragment: str
) -> None:
    path = tmp_path / "v.npy"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ClueError, match=fragment):
        read_vectors(path)
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros((3, 2)))
    with pytest.raises(ClueError, match="structured array"):
        read_vectors(plain)
    twice = tmp_path / "twice.npy"
    write_vectors(twice, "user", np.array([1, 1]), np.zeros((2, 2)), {})
    with pytest.raises(ClueError, match="ids repeat"):
        read_vectors(twice)


def test_a_cut_npy_and_one_holding_objects_are_refused_without_unpickling(tmp_path: Path) -> None:
    whole = tmp_path / "users.npy"
    write_vectors(whole, "user", np.arange(5), np.ones((5, 3)), {})
    cut = tmp_path / "cut.npy"
    cut.write_bytes(whole.read_bytes()[:-7])
    with pytest.raises(ClueError, match="cut short: 4 of 5 rows"):
        read_vectors(cut)
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ClueError, match="only pickle can read; clue_fw never unpickles"):
        read_vectors(objects)
