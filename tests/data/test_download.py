"""Tests for clue_fw.data.download against a local HTTP server serving fake GroupLens zips."""

from __future__ import annotations

import hashlib
import io
import socket
import stat
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from clue_fw.data.download import DATASETS, build_sequences, download_dataset
from clue_fw.errors import DataError, DownloadError

# user 2 appears before user 1; timestamps out of order; user 1 has a tie (30) kept in file order
ML1M_RATINGS = "".join(
    line + "\n"
    for line in [
        "2::50::3::200",
        "1::10::5::30",
        "1::11::4::10",
        "2::51::2::100",
        "1::12::3::30",
        "10::7::1::5",
    ]
)
ML1M_EXPECTED = ["1 11 10 12", "2 51 50", "10 7"]
ML100K_DATA = "3\t33\t4\t900\n1\t5\t3\t500\n3\t31\t2\t100\n1\t6\t1\t400\n"
ML100K_EXPECTED = ["1 6 5", "3 31 33"]


def make_zip(members: dict[str, bytes], extra: list[zipfile.ZipInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for info in extra or []:
            zf.writestr(info, b"/etc/passwd")
    return buf.getvalue()


def ml1m_members() -> dict[str, bytes]:
    return {
        "ml-1m/ratings.dat": ML1M_RATINGS.encode(),
        "ml-1m/users.dat": b"1::F::1::10::48067\n",
        "ml-1m/movies.dat": "10::Am\xe9lie (2001)::Comedy\n".encode("latin-1"),
        "ml-1m/README": b"fake readme\n",
    }


def ml100k_members() -> dict[str, bytes]:
    return {
        "ml-100k/u.data": ML100K_DATA.encode(),
        "ml-100k/u.item": b"1|Toy Story (1995)|...\n",
        "ml-100k/u.user": b"1|24|M|technician|85711\n",
        "ml-100k/README": b"not copied\n",
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeServer:
    """Serves ``files`` (path -> bytes) and counts requests per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.base + path


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
        thread.join(timeout=5)


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_pinned_sources() -> None:
    assert set(DATASETS) == {"ml-1m", "ml-100k"}
    for name, src in DATASETS.items():
        assert src.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        assert len(src.sha256) == 64 and int(src.sha256, 16) >= 0


def test_ml1m_success_and_no_redownload(server: FakeServer, tmp_path: Path) -> None:
    data = make_zip(ml1m_members())
    url = server.serve("/ml-1m.zip", data)
    calls: list[tuple[int, int | None]] = []
    out = download_dataset(
        "ml-1m", tmp_path, url=url, sha256=sha(data), progress=lambda d, t: calls.append((d, t))
    )
    assert out == tmp_path / "ml-1m"
    assert visible(out) == ["README", "ml-1m_sequences.txt", "movies.dat", "users.dat"]
    assert (out / "ml-1m_sequences.txt").read_text().splitlines() == ML1M_EXPECTED
    assert (out / "movies.dat").read_bytes() == ml1m_members()["ml-1m/movies.dat"]
    assert calls and calls[-1] == (len(data), len(data))
    assert server.hits["/ml-1m.zip"] == 1

    assert download_dataset("ml-1m", tmp_path, url=url, sha256=sha(data)) == out
    assert server.hits["/ml-1m.zip"] == 1
    download_dataset("ml-1m", tmp_path, url=url, sha256=sha(data), force=True)
    assert server.hits["/ml-1m.zip"] == 2
    assert visible(out) == ["README", "ml-1m_sequences.txt", "movies.dat", "users.dat"]


def test_ml100k_layout(server: FakeServer, tmp_path: Path) -> None:
    data = make_zip(ml100k_members())
    url = server.serve("/ml-100k.zip", data)
    out = download_dataset("ml-100k", tmp_path, url=url, sha256=sha(data))
    assert visible(out) == ["ml-100k_sequences.txt", "u.data", "u.item", "u.user"]
    assert (out / "ml-100k_sequences.txt").read_text().splitlines() == ML100K_EXPECTED
    assert (out / "u.data").read_text() == ML100K_DATA
    download_dataset("ml-100k", tmp_path, url=url, sha256=sha(data))
    assert server.hits["/ml-100k.zip"] == 1


def test_default_root_from_env(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUE_DATA_DIR", str(tmp_path / "env-root"))
    data = make_zip(ml100k_members())
    out = download_dataset("ml-100k", url=server.serve("/a.zip", data), sha256=sha(data))
    assert out == tmp_path / "env-root" / "ml-100k"


def test_checksum_mismatch(server: FakeServer, tmp_path: Path) -> None:
    data = make_zip(ml1m_members())
    url = server.serve("/ml-1m.zip", data)
    with pytest.raises(DownloadError) as err:
        download_dataset("ml-1m", tmp_path, url=url, sha256="0" * 64)
    msg = str(err.value)
    assert "0" * 64 in msg and sha(data) in msg and "Checksum mismatch" in msg
    assert isinstance(err.value, DataError)
    assert visible(tmp_path) == []  # no partial files, no temp files, no empty folder


def test_mismatch_keeps_existing_folder_clean(server: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "keep.txt").write_text("x")
    url = server.serve("/ml-1m.zip", make_zip(ml1m_members()))
    with pytest.raises(DownloadError):
        download_dataset("ml-1m", tmp_path, url=url, sha256="f" * 64)
    assert visible(tmp_path / "ml-1m") == ["keep.txt"]


def _symlink_info() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("ml-1m/link")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    "bad",
    [
        zipfile.ZipInfo("ml-1m/../../evil"),
        zipfile.ZipInfo("../evil"),
        zipfile.ZipInfo("/etc/evil"),
        zipfile.ZipInfo("C:/evil"),
        zipfile.ZipInfo("ml-1m\\..\\..\\evil"),
        _symlink_info(),
    ],
    ids=["dotdot-nested", "dotdot", "absolute", "drive", "backslash", "symlink"],
)
def test_unsafe_members_refused(server: FakeServer, tmp_path: Path, bad: zipfile.ZipInfo) -> None:
    data = make_zip(ml1m_members(), extra=[bad])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # the bad name survived the round trip
        assert bad.filename in zf.namelist()
    url = server.serve("/ml-1m.zip", data)
    with pytest.raises(DownloadError, match="unsafe archive member") as err:
        download_dataset("ml-1m", tmp_path / "root", url=url, sha256=sha(data))
    assert repr(bad.filename) in str(err.value)
    assert visible(tmp_path / "root") == []
    assert not (tmp_path / "evil").exists()


def test_missing_member(server: FakeServer, tmp_path: Path) -> None:
    members = ml1m_members()
    del members["ml-1m/users.dat"]
    data = make_zip(members)
    url = server.serve("/ml-1m.zip", data)
    with pytest.raises(DownloadError, match="users.dat"):
        download_dataset("ml-1m", tmp_path, url=url, sha256=sha(data))
    assert visible(tmp_path) == []


def test_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"Unknown dataset 'ml-20m'.*ml-100k, ml-1m"):
        download_dataset("ml-20m", tmp_path)


def test_unreachable_url(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ml-1m.zip"
    with pytest.raises(DownloadError) as err:
        download_dataset("ml-1m", tmp_path, url=url)
    msg = str(err.value)
    assert url in msg and "manually" in msg and str(tmp_path / "ml-1m") in msg
    assert visible(tmp_path) == []


def test_http_404(server: FakeServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="Could not download"):
        download_dataset("ml-100k", tmp_path, url=server.base + "/missing.zip")
    assert visible(tmp_path) == []


def test_not_a_zip(server: FakeServer, tmp_path: Path) -> None:
    data = b"<html>not a zip</html>"
    url = server.serve("/x.zip", data)
    with pytest.raises(DownloadError, match="not a zip"):
        download_dataset("ml-100k", tmp_path, url=url, sha256=sha(data))
    assert visible(tmp_path) == []


def test_build_sequences_malformed() -> None:
    assert build_sequences("1 2 3 4\n\n", None) == ["1 2"]
    with pytest.raises(DownloadError, match="line 2"):
        build_sequences("1::2::3::4\n1::x::3::4\n", "::", "ratings.dat")
