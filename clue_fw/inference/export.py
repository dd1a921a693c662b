"""Write vectors and recommendations to files; the format follows the file's suffix.

Vectors (ids plus ``[N, d]`` float32 vectors; ``name`` is ``user`` or ``item``):

- ``.npy``: one structured array with fields ``<name>`` (int64) and ``vector``
  (float32, ``(d,)``): ``a = np.load(path)``; ``a["user"]``, ``a["vector"]``. It needs
  no ``allow_pickle``.
- ``.safetensors``: tensors ``<name>_ids`` (int64 ``[N]``) and ``vectors`` (float32
  ``[N, d]``); the header metadata says which run, stage and users they are.
- ``.parquet``: columns ``<name>`` (int64) and ``vector`` (fixed-size list of float32),
  the same metadata in the schema; needs pyarrow (``pip install 'clue_fw[parquet]'``).

Recommendations: ``.csv`` with columns ``user,rank,item,score`` (rank 1 is the best).

Every file is written atomically (a temp file beside it, renamed into place); its folder
must exist. Any problem is a :class:`~clue_fw.errors.ClueError` that names the path.
"""

from __future__ import annotations

import csv
import importlib
import io
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from clue_fw.errors import ClueError, quote
from clue_fw.file_safety import check_user_output, write_output

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


def check_csv(out: Path, flag: str = "--out") -> None:
    """Refuse a recommendations file that does not end in ``.csv``."""
    if out.suffix.lower() != ".csv":
        raise ClueError(
            f"{flag} {quote(str(out))}: recommendations are written as CSV (columns user, "
            "rank, item, score); end the file name with .csv."
        )
    _check_folder(out)


def write_vectors(
    out: Path, name: str, ids: np.ndarray, vectors: np.ndarray, metadata: dict[str, str]
) -> None:
    """Write ``ids`` ``[N]`` and ``vectors`` ``[N, d]`` in the format of ``out``'s suffix."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or ids.shape != (vectors.shape[0],):
        raise ValueError(f"ids {ids.shape} and vectors {vectors.shape} do not match")
    suffix = vector_format(out)
    meta = {"format": "clue_fw.vectors/1", "ids": name, **metadata}
    if suffix == ".npy":
        table = np.empty(ids.size, dtype=[(name, "<i8"), ("vector", "<f4", (vectors.shape[1],))])
        table[name], table["vector"] = ids, vectors
        buffer = io.BytesIO()
        np.save(buffer, table)  # int64 and float32 fields only: no Python objects inside
        payload = buffer.getvalue()
    elif suffix == ".safetensors":
        from safetensors.torch import save

        tensors = {f"{name}_ids": torch.from_numpy(ids), "vectors": torch.from_numpy(vectors)}
        payload = save(tensors, metadata=meta)
    else:
        payload = _parquet(name, ids, vectors, meta)
    write_bytes(out, payload)


def write_recommendations(
    out: Path, users: Sequence[Any], items: torch.Tensor, scores: torch.Tensor
) -> int:
    """Write ``user,rank,item,score`` rows (slots without an item, ``-1``, are left out);
    return the number of rows."""
    check_csv(out)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["user", "rank", "item", "score"])
    rows = 0
    for user, row_items, row_scores in zip(users, items.tolist(), scores.tolist(), strict=True):
        for rank, (item, score) in enumerate(zip(row_items, row_scores, strict=True), start=1):
            if item == -1:
                break
            writer.writerow([user, rank, item, format(score, ".9g")])
            rows += 1
    write_bytes(out, buffer.getvalue().encode("utf-8"))
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


def _parquet(name: str, ids: np.ndarray, vectors: np.ndarray, meta: dict[str, str]) -> bytes:
    pa = _pyarrow()
    parquet = importlib.import_module("pyarrow.parquet")
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    table = pa.table({name: pa.array(ids, type=pa.int64()), "vector": column})
    table = table.replace_schema_metadata({f"clue_fw.{k}": v for k, v in meta.items()})
    sink = pa.BufferOutputStream()
    parquet.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())
