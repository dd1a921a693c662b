"""Download MovieLens archives, verify them and write clue_fw's canonical layout.

``clue data download ml-1m`` calls :func:`download_dataset`. The archive is streamed to a
temporary file inside ``root/<name>/``, checked against a pinned SHA-256, its member names
are checked for path traversal, and the needed files are written atomically:

* ``<name>/<name>_sequences.txt``: one line per user, ``UserID MovieID MovieID ...`` with
  original ids, users ascending, items in ascending timestamp order (ties keep file order);
* the raw files listed in :attr:`DatasetSource.copy_members`, copied verbatim.

Offline, ``clue data prepare ml-1m --from PATH`` calls :func:`prepare_dataset`: PATH is the
archive downloaded by hand (checked against the same pinned SHA-256) or the folder it
unpacks to, and the canonical layout is written exactly as after a download.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from clue_fw.data.readers import is_blank, split_fields, split_lines
from clue_fw.data.root import DATA_DIR_ENV, data_root
from clue_fw.errors import DownloadError, quote
from clue_fw.file_safety import file_kind

ProgressCallback = Callable[[int, "int | None"], None]
"""Called as ``progress(bytes_done, total_bytes_or_None)`` while downloading."""

_CHUNK = 1 << 16
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from and how to turn its archive into the canonical layout."""

    name: str
    url: str
    sha256: str
    archive_folder: str
    ratings_member: str
    ratings_sep: str | None  # ``None``: any whitespace
    copy_members: tuple[str, ...]
    size_bytes: int | None = None

    @property
    def sequences_file(self) -> str:
        return f"{self.name}_sequences.txt"

    def canonical_files(self, root: Path) -> list[Path]:
        folder = root / self.name
        return [folder / m for m in self.copy_members] + [folder / self.sequences_file]


# Checksums and sizes: tensorflow/datasets tensorflow_datasets/url_checksums/movielens.txt
# (commit 1c076ac3c19c8ea83e1d1a75e0623c9a699e0d7c); the same SHA-256 values are pinned
# independently by many other public projects. GroupLens itself publishes MD5 only
# (ml-1m c4d9eecfca2ab87c1945afe126590906, ml-100k 0e33842e24a9c977be4e0107933c0723).
DATASETS: dict[str, DatasetSource] = {
    "ml-1m": DatasetSource(
        name="ml-1m",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        archive_folder="ml-1m",
        ratings_member="ratings.dat",
        ratings_sep="::",
        copy_members=("users.dat", "movies.dat", "README"),
        size_bytes=5917549,
    ),
    "ml-100k": DatasetSource(
        name="ml-100k",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        archive_folder="ml-100k",
        ratings_member="u.data",
        ratings_sep=None,
        copy_members=("u.data", "u.item", "u.user"),
        size_bytes=4924029,
    ),
}


def download_dataset(
    name: str,
    root: Path | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Fetch dataset ``name`` into ``root/<name>/`` and return that folder.

    ``root`` defaults to :func:`~clue_fw.data.root.data_root`. ``url`` and ``sha256`` override
    the pinned source (mirrors, tests). If every canonical file already exists and ``force``
    is false, nothing is downloaded. Raises :class:`~clue_fw.errors.DownloadError`.
    """
    source = dataset_source(name)
    root = Path(root) if root is not None else data_root()
    target = root / source.name
    if not force and all(p.is_file() for p in source.canonical_files(root)):
        return target
    url = url or source.url
    expected = (sha256 or source.sha256).lower()

    def write(temps: list[Path]) -> list[tuple[Path, Path]]:
        archive = _fetch(source, url, target, temps, progress)
        actual = _sha256_of(archive)
        if actual != expected:
            raise DownloadError(
                f"Checksum mismatch for {url}: expected sha256 {expected}, got {actual}. "
                "The download is corrupt or the file changed upstream; nothing was written. "
                "Retry, or pass the expected checksum of a trusted mirror."
            )
        with _zip_members(source, archive, target) as open_member:
            return _stage_files(source, open_member, target, temps)

    _write_layout(target, write)
    return target


def prepare_dataset(name: str, source_path: str | Path, root: Path | None = None) -> Path:
    """Write dataset ``name``'s canonical layout into ``root/<name>/`` from local files.

    ``source_path`` is the archive downloaded by hand (``ml-1m.zip``; its SHA-256 must be
    the pinned one) or the folder it unpacks to (``ml-1m/`` with ``ratings.dat``, or its
    parent). The result is the same as :func:`download_dataset` writes after fetching;
    existing canonical files are replaced. Raises :class:`~clue_fw.errors.DownloadError`.
    """
    source = dataset_source(name)
    given = Path(source_path).expanduser()
    root = Path(root) if root is not None else data_root()
    target = root / source.name
    if given.is_dir():

        def write(temps: list[Path]) -> list[tuple[Path, Path]]:
            return _stage_files(source, _folder_members(source, given), target, temps)

    elif given.is_file():
        actual = _sha256_of(given)
        if actual != source.sha256:
            raise DownloadError(
                f"{given} is not the {source.name} archive clue_fw knows: its sha256 is "
                f"{actual}, expected {source.sha256} ({source.url}). Download that file "
                "again, or unpack your copy and pass the folder to --from."
            )

        def write(temps: list[Path]) -> list[tuple[Path, Path]]:
            with _zip_members(source, given, target) as open_member:
                return _stage_files(source, open_member, target, temps)

    elif given.exists():  # a named pipe, a device, a socket: never read
        raise DownloadError(
            f"--from {given}: it is {file_kind(os.stat(given).st_mode)}, not an archive file "
            f"or a folder, so it is not read. Give the {source.name} archive "
            f"({source.name}.zip, a regular file) or the folder it unpacks to."
        )
    else:
        raise DownloadError(
            f"--from {given}: no such file or folder. Give the {source.name} archive "
            f"({source.url.rsplit('/', 1)[-1]}) or the folder it unpacks to."
        )
    _write_layout(target, write)
    return target


def dataset_source(name: str) -> DatasetSource:
    """The pinned :class:`DatasetSource` of ``name``, or a DownloadError naming the known ones."""
    source = DATASETS.get(name)
    if source is None:
        known = ", ".join(sorted(DATASETS))
        raise DownloadError(f"Unknown dataset {name!r}. Known datasets: {known}.")
    return source


def _write_layout(target: Path, write: Callable[[list[Path]], list[tuple[Path, Path]]]) -> None:
    """Create ``target``, stage its files with ``write(temps)`` and move them into place
    (the sequences file last, so it marks completion); clean up on any failure."""
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"Cannot create {target}: {exc}.") from exc
    temps: list[Path] = []
    try:
        for tmp, final in write(temps):
            os.replace(tmp, final)
            temps.remove(tmp)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if created and target.is_dir() and not any(target.iterdir()):
            target.rmdir()


def _fetch(
    source: DatasetSource,
    url: str,
    folder: Path,
    temps: list[Path],
    progress: ProgressCallback | None,
) -> Path:
    """Stream ``url`` into a temporary ``.part`` file in ``folder`` (registered in ``temps``)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".download-", suffix=".part")
    path = Path(name)
    temps.append(path)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(
            f"Could not download {url}: {reason}. Check your network connection, or download "
            f"the archive manually and run `clue data prepare {source.name} --from PATH` "
            f"(PATH: the .zip, or the folder it unpacks to); it writes {folder} "
            f"(the data root is set by {DATA_DIR_ENV})."
        ) from exc
    return path


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_members(zf: zipfile.ZipFile, target: Path) -> None:
    """Refuse archives with absolute, drive, ``..``, symlink or escaping member names."""
    base = target.resolve()
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        bad = (
            name.startswith("/")
            or _DRIVE.match(name) is not None
            or ".." in name.split("/")
            or stat.S_ISLNK(info.external_attr >> 16)
            or not (base / name).resolve().is_relative_to(base)
        )
        if bad:
            raise DownloadError(
                f"Refusing unsafe archive member {info.filename!r}: archives may not contain "
                "absolute paths, '..' components, drive letters or symbolic links."
            )


def _member(zf: zipfile.ZipFile, source: DatasetSource, filename: str) -> zipfile.ZipInfo:
    names = {i.filename.replace("\\", "/"): i for i in zf.infolist()}
    for candidate in (f"{source.archive_folder}/{filename}", filename):
        if candidate in names:
            return names[candidate]
    raise DownloadError(
        f"The {source.name} archive has no {source.archive_folder}/{filename}; "
        "it is not the expected GroupLens release."
    )


@contextmanager
def _zip_members(
    source: DatasetSource, archive: Path, target: Path
) -> Iterator[Callable[[str], IO[bytes]]]:
    """Open ``archive`` (member names checked against path traversal); yield an opener of
    its members by file name."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"The {source.name} archive {archive} is not a zip file.") from exc
    with zf:
        _check_members(zf, target)
        yield lambda filename: zf.open(_member(zf, source, filename))


def _folder_members(source: DatasetSource, folder: Path) -> Callable[[str], IO[bytes]]:
    """An opener of the dataset's files in an unpacked ``folder`` (or its ``<name>/``)."""

    def open_member(filename: str) -> IO[bytes]:
        for candidate in (folder / filename, folder / source.archive_folder / filename):
            if candidate.is_file():
                return candidate.open("rb")
        raise DownloadError(
            f"{folder} holds no {filename} (nor {source.archive_folder}/{filename}): give "
            f"--from the folder the {source.name} archive unpacks to, with "
            f"{', '.join(sorted({source.ratings_member, *source.copy_members}))}."
        )

    return open_member


def _stage_files(
    source: DatasetSource,
    open_member: Callable[[str], IO[bytes]],
    target: Path,
    temps: list[Path],
) -> list[tuple[Path, Path]]:
    """Write every canonical file to a temp file; return ``(temp, final)`` pairs."""
    staged: list[tuple[Path, Path]] = []

    def new_temp() -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=target, prefix=".stage-", suffix=".tmp")
        temps.append(Path(name))
        return fd, Path(name)

    for filename in source.copy_members:
        fd, tmp = new_temp()
        with os.fdopen(fd, "wb") as out, open_member(filename) as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
        staged.append((tmp, target / filename))
    with open_member(source.ratings_member) as src:
        raw = src.read()
    lines = build_sequences(raw.decode("latin-1"), source.ratings_sep, source.ratings_member)
    fd, tmp = new_temp()
    with os.fdopen(fd, "w", encoding="ascii", newline="\n") as out:
        out.writelines(line + "\n" for line in lines)
    staged.append((tmp, target / source.sequences_file))
    return staged


def build_sequences(text: str, sep: str | None, origin: str = "ratings") -> list[str]:
    """Turn ``user<sep>item<sep>rating<sep>timestamp`` lines into one line per user.

    Users ascend by id; each user's items are sorted by timestamp, stably.
    """
    per_user: dict[int, list[tuple[int, int]]] = {}
    for lineno, line in enumerate(split_lines(text), start=1):
        if is_blank(line):
            continue
        fields = line.split(sep) if sep is not None else split_fields(line)
        try:
            user, item, ts = int(fields[0]), int(fields[1]), int(fields[3])
        except (IndexError, ValueError) as exc:
            raise DownloadError(f"Malformed line {lineno} in {origin}: {quote(line)}.") from exc
        per_user.setdefault(user, []).append((ts, item))
    out = []
    for user in sorted(per_user):
        events = sorted(per_user[user], key=lambda e: e[0])
        out.append(" ".join([str(user), *(str(item) for _, item in events)]))
    return out
