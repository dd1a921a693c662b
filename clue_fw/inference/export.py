"""Write vectors and recommendations to files; the format follows the file's suffix.

Vectors (ids plus ``[N, d]`` float32 vectors; ``name`` is ``user`` or ``item``):

- ``.npy``: one structured array with fields ``<name>`` (int64) and ``vector``
  (float32, ``(d,)``): ``a = np.load(path)``; ``a["user"]``, ``a["vector"]``. It needs
  no ``allow_pickle``.
- ``.safetensors``: tensors ``<name>_ids`` (int64 ``[N]``) and ``vectors`` (float32
  ``[N, d]``); the header metadata says which run, stage and users they are.
- ``.parquet``: columns ``<name>`` (int64) and ``vector`` (fixed-size list of float32),
  the same metadata in the schema; needs pyarrow (``pip install 'clue_fw[parquet]'``).

:func:`read_vectors` reads any of the three back (``clue neighbours`` does).

Recommendations: ``.csv`` with columns ``user,rank,item,score`` (rank 1 is the best);
nearest users (``clue neighbours``): ``user,rank,neighbour,score``.

Every file is written atomically (a temp file beside it, renamed into place); its folder
must exist. Any problem is a :class:`~clue_fw.errors.ClueError` that names the path.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import numpy as np
import torch

from clue_fw.errors import ClueError, quote
from clue_fw.file_safety import check_user_output, write_output, write_output_with

VECTOR_FORMATS = (".npy", ".safetensors", ".parquet")
PARQUET_EXTRA = "pip install 'clue_fw[parquet]'"


def vector_format(out: Path, flag: str = "--out") -> str:
    """The format of a vector file from its suffix; checks pyarrow for ``.parquet``."""
    suffix = out.suffix.lower()
    if suffix not in VECTOR_FORMATS:
        raise ClueError(
            f"{flag} {quote(str(out))}: cannot tell the format from the suffix "
            f"{quote(out.suffix or '(none)')}; end the file name with .npy, .safetensors or "
            ".parquet."
        )
    if suffix == ".parquet":
        _pyarrow()
    _check_folder(out)
    return suffix


def check_csv(out: Path, what: str = "item", flag: str = "--out") -> None:
    """Refuse a ranking file (recommendations, nearest users) that does not end in ``.csv``."""
    if out.suffix.lower() != ".csv":
        rows = "recommendations" if what == "item" else "nearest users"
        raise ClueError(
            f"{flag} {quote(str(out))}: {rows} are written as CSV (columns user, "
            f"rank, {what}, score); end the file name with .csv."
        )
    _check_folder(out)


VectorChunks = Iterable[tuple[np.ndarray, np.ndarray]]
"""``(ids [n], vectors [n, d])`` pieces of a vector file, in order."""


def write_vectors(
    out: Path, name: str, ids: np.ndarray, vectors: np.ndarray, metadata: dict[str, str]
) -> None:
    """Write ``ids`` ``[N]`` and ``vectors`` ``[N, d]`` in the format of ``out``'s suffix
    (:func:`write_vector_chunks` with one chunk)."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or np.shape(ids) != (vectors.shape[0],):
        raise ValueError(f"ids {np.shape(ids)} and vectors {vectors.shape} do not match")
    write_vector_chunks(out, name, vectors.shape[0], vectors.shape[1], metadata, [(ids, vectors)])


def write_vector_chunks(
    out: Path, name: str, count: int, dim: int, metadata: dict[str, str], chunks: VectorChunks
) -> None:
    """Write ``count`` ids and ``[count, dim]`` vectors that arrive in ``chunks``, each
    written as it comes: memory holds one chunk, whatever ``count`` is (``clue embed``
    streams 1M users through here). The file appears only when every chunk is in
    (atomically, through a temp file); a failure leaves no file behind."""
    suffix = vector_format(out)
    _check_folder(out)
    meta = {"format": "clue_fw.vectors/1", "ids": name, **metadata}
    writer = {".npy": _NpyChunks, ".safetensors": _SafetensorsChunks, ".parquet": _ParquetChunks}

    def fill(temp: Path) -> None:
        with open(temp, "wb") as handle:
            sink = writer[suffix](handle, name, count, dim, meta)
            done = 0
            for ids, vectors in chunks:
                ids = np.ascontiguousarray(ids, dtype=np.int64)
                vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                if vectors.ndim != 2 or vectors.shape[1] != dim or ids.shape != vectors.shape[:1]:
                    raise ValueError(f"a chunk of ids {ids.shape} and vectors {vectors.shape}")
                if done + ids.size > count:
                    raise ValueError(f"more than the {count} rows announced")
                sink.write(done, ids, vectors)
                done += ids.size
            if done != count:
                raise ValueError(f"{done} rows written, {count} announced")
            sink.close()

    write_output_with(out, fill)


class _NpyChunks:
    """One structured ``.npy`` array: the header (its shape known up front), then rows."""

    def __init__(
        self, handle: BinaryIO, name: str, count: int, dim: int, meta: dict[str, str]
    ) -> None:
        self.handle, self.name = handle, name
        self.dtype = np.dtype([(name, "<i8"), ("vector", "<f4", (dim,))])
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (count,),
        }
        np.lib.format.write_array_header_1_0(handle, header)

    def write(self, start: int, ids: np.ndarray, vectors: np.ndarray) -> None:
        table = np.empty(ids.size, dtype=self.dtype)
        table[self.name], table["vector"] = ids, vectors
        self.handle.write(table.tobytes())  # int64 and float32 fields only: no pickle

    def close(self) -> None:
        pass


class _SafetensorsChunks:
    """A ``.safetensors`` file written in place: its header is known from ``count`` and
    ``dim``, so each chunk's ids and vectors go straight to their offsets."""

    def __init__(
        self, handle: BinaryIO, name: str, count: int, dim: int, meta: dict[str, str]
    ) -> None:
        self.handle, self.count, self.dim = handle, count, dim
        ids_bytes, vector_bytes = 8 * count, 4 * count * dim
        header = {
            "__metadata__": meta,
            f"{name}_ids": {"dtype": "I64", "shape": [count], "data_offsets": [0, ids_bytes]},
            "vectors": {
                "dtype": "F32",
                "shape": [count, dim],
                "data_offsets": [ids_bytes, ids_bytes + vector_bytes],
            },
        }
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
        handle.write(struct.pack("<Q", len(text)) + text)
        self.base = 8 + len(text)
        handle.truncate(self.base + ids_bytes + vector_bytes)

    def write(self, start: int, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.handle.seek(self.base + 8 * start)
        self.handle.write(ids.astype("<i8").tobytes())
        self.handle.seek(self.base + 8 * self.count + 4 * self.dim * start)
        self.handle.write(vectors.astype("<f4").tobytes())

    def close(self) -> None:
        self.handle.seek(0, io.SEEK_END)


class _ParquetChunks:
    """A ``.parquet`` file with one row group per chunk."""

    def __init__(
        self, handle: BinaryIO, name: str, count: int, dim: int, meta: dict[str, str]
    ) -> None:
        self.pa = _pyarrow()
        parquet = importlib.import_module("pyarrow.parquet")
        self.name, self.dim = name, dim
        schema = self.pa.schema(
            [(name, self.pa.int64()), ("vector", self.pa.list_(self.pa.float32(), dim))],
            metadata={f"clue_fw.{key}": value for key, value in meta.items()},
        )
        self.writer = parquet.ParquetWriter(handle, schema)

    def write(self, start: int, ids: np.ndarray, vectors: np.ndarray) -> None:
        pa = self.pa
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        column = pa.FixedSizeListArray.from_arrays(flat, self.dim)
        ids_column = pa.array(ids, type=pa.int64())
        self.writer.write_table(pa.table({self.name: ids_column, "vector": column}))

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True)
class VectorFile:
    """What :func:`read_vectors` found: ``ids`` (int64 ``[N]``, named ``name``: ``user`` or
    ``item``), ``vectors`` (float32 ``[N, d]``) and the file's metadata (run, stage...;
    empty for ``.npy``)."""

    name: str
    ids: np.ndarray
    vectors: np.ndarray
    metadata: dict[str, str]


def read_vectors(path: Path, flag: str = "VECTORS") -> VectorFile:
    """Read a vector file that :func:`write_vectors` (``clue embed``) wrote; anything else
    is a ClueError that names the file and says what was expected."""
    suffix = path.suffix.lower()
    if suffix not in VECTOR_FORMATS:
        raise ClueError(
            f"{flag} {quote(str(path))}: cannot tell the format from the suffix "
            f"{quote(path.suffix or '(none)')}; give a file that `clue embed` wrote (.npy, "
            ".safetensors or .parquet), or a run directory."
        )
    if not path.is_file():
        raise ClueError(f"{flag} {quote(str(path))}: no such file.")
    expected = (
        f"{flag} {quote(str(path))} is not a vector file of `clue embed`, which holds ids "
        "(int64) and vectors (float32, one row per id)"
    )
    try:
        if suffix == ".npy":
            found = _read_npy(path)
        elif suffix == ".safetensors":
            found = _read_safetensors(path)
        else:
            found = _read_parquet(path)
    except ClueError:
        raise
    except Exception as error:  # a damaged or foreign file: say which, not where it broke
        raise ClueError(f"{expected}: {type(error).__name__}: {error}") from None
    name, ids, vectors, metadata = found
    if (
        vectors.ndim != 2
        or ids.ndim != 1
        or ids.shape[0] != vectors.shape[0]
        or vectors.shape[1] == 0
    ):
        raise ClueError(f"{expected}; found ids {ids.shape} and vectors {vectors.shape}.")
    if np.unique(ids).size != ids.size:
        raise ClueError(f"{expected}; its ids repeat, so a row cannot be told from another.")
    return VectorFile(name, ids.astype(np.int64), vectors.astype(np.float32), metadata)


def _read_npy(path: Path) -> tuple[str, np.ndarray, np.ndarray, dict[str, str]]:
    table = _plain_npy(path)
    fields = table.dtype.names or ()
    names = [field for field in fields if field != "vector"]
    if "vector" not in fields or len(names) != 1:
        raise ClueError(
            f"{path}: expected a structured array with an id field (user or item) and a "
            f"'vector' field; found fields {list(fields) or 'none'}."
        )
    return names[0], table[names[0]], table["vector"], {}


def _plain_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array read by its header alone: a dtype that holds Python objects (which
    only pickle could restore) is refused before any data is read, so nothing in the file
    can run code; a file shorter than its header says is refused too."""
    read_header = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version not in read_header:
            raise ValueError(f".npy format version {version} is not supported")
        shape, fortran_order, dtype = read_header[version](handle)
        if dtype.hasobject:
            raise ClueError(
                f"{path} holds Python objects, which only pickle can read; clue_fw never "
                "unpickles. Export the vectors again with `clue embed`."
            )
        count = int(np.prod(shape)) if shape else 1
        data = np.fromfile(handle, dtype=dtype, count=count)
    if data.size != count:
        raise ValueError(f"the file is cut short: {data.size:,} of {count:,} rows are there")
    return data.reshape(shape, order="F" if fortran_order else "C")


def _read_safetensors(path: Path) -> tuple[str, np.ndarray, np.ndarray, dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        keys = set(handle.keys())
        metadata = dict(handle.metadata() or {})
        id_keys = sorted(key for key in keys if key.endswith("_ids"))
        if "vectors" not in keys or len(id_keys) != 1:
            raise ClueError(
                f"{path}: expected the tensors 'vectors' and one '<user|item>_ids'; found "
                f"{sorted(keys) or 'none'}."
            )
        return (
            id_keys[0].removesuffix("_ids"),
            handle.get_tensor(id_keys[0]),
            handle.get_tensor("vectors"),
            metadata,
        )


def _read_parquet(path: Path) -> tuple[str, np.ndarray, np.ndarray, dict[str, str]]:
    _pyarrow()
    parquet = importlib.import_module("pyarrow.parquet")
    table = parquet.read_table(path)
    names = [name for name in table.column_names if name != "vector"]
    if "vector" not in table.column_names or len(names) != 1:
        raise ClueError(
            f"{path}: expected an id column (user or item) and a 'vector' column; found "
            f"{table.column_names}."
        )
    column = table.column("vector").combine_chunks()
    width = column.type.list_size
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    raw = table.schema.metadata or {}
    metadata = {key.decode().removeprefix("clue_fw."): value.decode() for key, value in raw.items()}
    return names[0], table.column(names[0]).to_numpy(), vectors, metadata


def write_recommendations(
    out: Path,
    users: Sequence[Any],
    items: torch.Tensor,
    scores: torch.Tensor,
    what: str = "item",
) -> int:
    """Write ``user,rank,<what>,score`` rows (slots without an item, ``-1``, are left out),
    streamed to the file one user at a time; return the number of rows. ``what`` names
    the ranked column (``neighbour`` for ``clue neighbours``)."""
    check_csv(out, what)
    rows = 0

    def fill(temp: Path) -> None:
        nonlocal rows
        with open(temp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["user", "rank", what, "score"])
            for start in range(0, len(users), 4096):  # tolist() a block at a time
                block = slice(start, start + 4096)
                for user, row_items, row_scores in zip(
                    users[block], items[block].tolist(), scores[block].tolist(), strict=True
                ):
                    pairs = zip(row_items, row_scores, strict=True)
                    for rank, (item, score) in enumerate(pairs, start=1):
                        if item == -1:
                            break
                        writer.writerow([user, rank, item, format(score, ".9g")])
                        rows += 1

    write_output_with(out, fill)
    return rows


def write_bytes(out: Path, payload: bytes) -> None:
    """Write ``payload`` atomically through the checked output target
    (:func:`~clue_fw.file_safety.write_output`); a problem is a ClueError naming ``out``."""
    _check_folder(out)
    write_output(out, payload)


def _check_folder(out: Path) -> None:
    """Refuse ``out`` when its folder is missing, or when it is not a place a command may
    write (a named pipe, a file of a run directory); checked before any work is done."""
    check_user_output(out)
    if not out.parent.is_dir():
        raise ClueError(
            f"Cannot write {out}: its folder {out.parent} does not exist. Create it first, or "
            "choose another --out."
        )


def _pyarrow() -> ModuleType:
    try:
        return importlib.import_module("pyarrow")
    except ImportError:
        raise ClueError(
            f"Writing .parquet needs pyarrow, which is not installed: {PARQUET_EXTRA} (or "
            "choose .npy or .safetensors)."
        ) from None
