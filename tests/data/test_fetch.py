"""``recengine.data.fetch``: verified, all-or-nothing fetches, exercised against a local HTTP server."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from recengine.data import fetch as fetch_mod
from recengine.data.fetch import ARCHIVES, MARKER, fetch, is_complete, parse_checksum, read_marker, status
from recengine.errors import FetchError

NAME = "ml-latest-small"

# A tiny ml-latest-small: 3 users, 4 movies, 8 rows of which (3, 6) is rated twice (the later one counts).
RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,1,4.0,100\n1,3,4.5,101\n1,6,5.0,102\n"
    "2,1,3.5,200\n2,2,2.0,201\n"
    "3,3,1.0,300\n3,6,0.5,301\n3,6,3.0,302\n"
)
MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    "2,Jumanji (1995),Adventure|Children|Fantasy\n"
    '3,"Grumpier Old Men, The (1995)",Comedy|Romance\n'
    "6,Heat (1995),Action|Crime|Thriller\n"
)
LINKS = "movieId,imdbId,tmdbId\n1,0114709,862\n2,0113497,8844\n3,0113228,15602\n6,0113277,949\n"
TAGS = "userId,movieId,tag,timestamp\n1,6,heist,103\n"
FILES = {
    "ratings.csv": RATINGS,
    "movies.csv": MOVIES,
    "links.csv": LINKS,
    "tags.csv": TAGS,
    "README.txt": "Tiny test data in the ml-latest-small layout.\n",
}


def make_zip(members: Mapping[str, str | bytes], folder: str | None = NAME) -> bytes:
    """A zip like GroupLens' (one top-level folder, with its directory entry) built in memory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if folder:
            zf.writestr(zipfile.ZipInfo(folder + "/"), b"")
        for name, data in members.items():
            zf.writestr(f"{folder}/{name}" if folder else name, data)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def snapshot(path: Path) -> dict[str, bytes] | None:
    """Every file (hidden ones too) under ``path`` with its content; None when it does not exist."""
    if not path.exists():
        return None
    return {
        p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    } | {p.relative_to(path).as_posix() + "/": b"" for p in sorted(path.rglob("*")) if p.is_dir()}


Route = bytes | Callable[[BaseHTTPRequestHandler], None]


class Server:
    """A real HTTP server on 127.0.0.1 serving ``routes`` (path -> body or handler function)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        routes, hits = self.routes, self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                route = routes.get(self.path)
                if route is None:
                    self.send_error(404, "Not Found")
                elif callable(route):
                    route(self)
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/zip")
                    self.send_header("Content-Length", str(len(route)))
                    self.end_headers()
                    self.wfile.write(route)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("RECENGINE_DATA", str(h))
    return h


@pytest.fixture
def archive_bytes() -> bytes:
    return make_zip(FILES)


def assert_installed(home: Path, data: dict[str, str] = FILES) -> None:
    d = home / NAME
    for name, text in data.items():
        assert (d / name).read_text() == text
    assert is_complete(d)
    # Nothing but the data set itself in the data home: no staging directories, archives or backups.
    assert sorted(p.name for p in home.iterdir()) == [NAME]


# --- success ----------------------------------------------------------------------------------


def test_fetch_from_url_with_checksum(home: Path, server: Server, archive_bytes: bytes) -> None:
    server.routes["/ml-latest-small.zip"] = archive_bytes
    path = fetch(
        NAME, source=server.url("/ml-latest-small.zip"), checksum=sha256(archive_bytes), progress=False
    )
    assert path == home / NAME
    assert (path / "ratings.csv").is_file()  # flattened: no ml-latest-small/ml-latest-small/
    assert_installed(home)
    marker = read_marker(path)
    assert marker is not None
    assert marker["name"] == NAME
    assert marker["source"] == server.url("/ml-latest-small.zip")
    assert marker["checksums"] == [sha256(archive_bytes)]
    assert marker["checksum_origin"] == "given"
    assert marker["files"]["ratings.csv"] == len(RATINGS)
    assert status(NAME)["state"] == "complete"


def test_fetch_reads_published_md5_beside_archive(home: Path, server: Server, archive_bytes: bytes) -> None:
    md5 = hashlib.md5(archive_bytes).hexdigest()
    server.routes["/ml-latest-small.zip"] = archive_bytes
    server.routes["/ml-latest-small.zip.md5"] = f"MD5 (ml-latest-small.zip) = {md5}\n".encode()
    path = fetch(NAME, source=server.url("/ml-latest-small.zip"), progress=False)
    assert_installed(home)
    marker = read_marker(path)
    assert marker is not None
    assert marker["checksums"] == [f"md5:{md5}"]
    assert marker["checksum_origin"].startswith("published ")


def test_fetch_with_progress_bar(home: Path, server: Server, archive_bytes: bytes) -> None:
    server.routes["/a.zip"] = archive_bytes
    fetch(NAME, source=server.url("/a.zip"), checksum=sha256(archive_bytes), progress=True)
    assert_installed(home)


def test_fetch_from_file_url(home: Path, tmp_path: Path, archive_bytes: bytes) -> None:
    z = tmp_path / "ml-latest-small.zip"
    z.write_bytes(archive_bytes)
    fetch(NAME, source=z.as_uri(), checksum=sha256(archive_bytes), progress=False)
    assert_installed(home)


def test_flat_zip_without_top_folder(home: Path, server: Server) -> None:
    data = make_zip(FILES, folder=None)
    server.routes["/flat.zip"] = data
    fetch(NAME, source=server.url("/flat.zip"), checksum=sha256(data), progress=False)
    assert_installed(home)


def test_complete_dataset_is_not_fetched_again(home: Path, server: Server, archive_bytes: bytes) -> None:
    server.routes["/a.zip"] = archive_bytes
    fetch(NAME, source=server.url("/a.zip"), checksum=sha256(archive_bytes), progress=False)
    before = snapshot(home)
    # Without --force a complete data set is returned as it is; the source is not even contacted.
    assert fetch(NAME, source=server.url("/gone.zip"), progress=False) == home / NAME
    assert server.hits == ["/a.zip"]
    assert snapshot(home) == before


def test_force_replaces_complete_dataset(home: Path, server: Server, archive_bytes: bytes) -> None:
    server.routes["/a.zip"] = archive_bytes
    fetch(NAME, source=server.url("/a.zip"), checksum=sha256(archive_bytes), progress=False)
    newer = dict(FILES, **{"ratings.csv": "userId,movieId,rating,timestamp\n1,1,5.0,1\n"})
    newer_bytes = make_zip(newer)
    server.routes["/b.zip"] = newer_bytes
    fetch(NAME, source=server.url("/b.zip"), checksum=sha256(newer_bytes), force=True, progress=False)
    assert_installed(home, newer)


def test_incomplete_directory_is_replaced(home: Path, server: Server, archive_bytes: bytes) -> None:
    (home / NAME).mkdir(parents=True)
    (home / NAME / "ratings.csv").write_text("userId,movieId\n1,")  # an interrupted copy, no marker
    assert status(NAME)["state"] == "incomplete"
    assert not is_complete(home / NAME)
    server.routes["/a.zip"] = archive_bytes
    fetch(NAME, source=server.url("/a.zip"), checksum=sha256(archive_bytes), progress=False)
    assert_installed(home)


# --- failures leave the data home as it was ----------------------------------------------------


@pytest.fixture(params=["absent", "empty", "other-data"])
def prior_home(request: pytest.FixtureRequest, home: Path) -> Path:
    """The data home before a failing fetch: not there, empty, or holding another data set."""
    if request.param != "absent":
        home.mkdir(parents=True)
    if request.param == "other-data":
        (home / "ml-100k").mkdir()
        (home / "ml-100k" / "u.data").write_text("1\t1\t5\t1\n")
    return home


def fails_cleanly(home: Path, match: str, **kwargs: object) -> FetchError:
    before = snapshot(home)
    with pytest.raises(FetchError, match=match) as info:
        fetch(NAME, progress=False, **kwargs)  # type: ignore[arg-type]
    assert snapshot(home) == before
    return info.value


def test_checksum_mismatch(prior_home: Path, server: Server, archive_bytes: bytes) -> None:
    server.routes["/a.zip"] = archive_bytes
    wrong = "sha256:" + "0" * 64
    err = fails_cleanly(prior_home, "checksum mismatch", source=server.url("/a.zip"), checksum=wrong)
    assert wrong in str(err)
    assert sha256(archive_bytes) in str(err)  # expected and actual, both named
    assert server.url("/a.zip") in str(err)


def test_truncated_transfer(prior_home: Path, server: Server, archive_bytes: bytes) -> None:
    def short(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(archive_bytes) + 5000))
        h.end_headers()
        h.wfile.write(archive_bytes[: len(archive_bytes) // 2])
        h.wfile.flush()
        h.close_connection = True

    server.routes["/short.zip"] = short
    # The checksum given is that of the whole archive: only the byte count can tell the transfer broke.
    err = fails_cleanly(
        prior_home, "truncated|broke off", source=server.url("/short.zip"), checksum=sha256(archive_bytes)
    )
    assert str(len(archive_bytes) + 5000) in str(err)


def test_http_404(prior_home: Path, server: Server) -> None:
    fails_cleanly(prior_home, "HTTP 404", source=server.url("/missing.zip"), checksum="md5:" + "0" * 32)


def test_unreachable_host(prior_home: Path, server: Server) -> None:
    url = server.url("/a.zip")
    server.stop()  # nothing listens on the port any more
    server.stop = lambda: None  # type: ignore[method-assign]
    fails_cleanly(prior_home, "failed", source=url, checksum="md5:" + "0" * 32)


def test_no_published_md5_and_no_checksum(prior_home: Path, server: Server, archive_bytes: bytes) -> None:
    server.routes["/a.zip"] = archive_bytes
    err = fails_cleanly(prior_home, "no checksum is pinned", source=server.url("/a.zip"))
    assert server.url("/a.zip.md5") in str(err)
    assert "/a.zip" not in server.hits  # gave up before downloading the archive


def test_not_a_zip(prior_home: Path, server: Server) -> None:
    body = b"<html>maintenance</html>" * 10
    server.routes["/a.zip"] = body
    fails_cleanly(prior_home, "corrupt", source=server.url("/a.zip"), checksum=sha256(body))


def test_corrupt_zip_member(prior_home: Path, server: Server) -> None:
    good = make_zip({"ratings.csv": RATINGS * 50, "movies.csv": MOVIES})
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        info = zf.getinfo(f"{NAME}/ratings.csv")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    bad = bytearray(good)
    for i in range(start + 10, start + 20):  # scramble compressed bytes: inflate or CRC check fails
        bad[i] ^= 0xFF
    server.routes["/a.zip"] = bytes(bad)
    fails_cleanly(prior_home, "corrupt", source=server.url("/a.zip"), checksum=sha256(bytes(bad)))


@pytest.mark.parametrize(
    "evil", ["../evil.txt", f"{NAME}/../../evil.txt", "/tmp/evil-abs.txt", "C:/evil.txt"]
)
def test_zip_with_unsafe_member(prior_home: Path, tmp_path: Path, server: Server, evil: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in FILES.items():
            zf.writestr(f"{NAME}/{name}", text)
        zf.writestr(zipfile.ZipInfo(evil), b"gotcha")
    data = buf.getvalue()
    server.routes["/a.zip"] = data
    fails_cleanly(prior_home, "unsafe path", source=server.url("/a.zip"), checksum=sha256(data))
    assert not (tmp_path / "evil.txt").exists()
    assert not (prior_home.parent / "evil.txt").exists()


def test_zip_without_the_layout(prior_home: Path, server: Server) -> None:
    data = make_zip({"README.txt": "nothing here"})
    server.routes["/a.zip"] = data
    err = fails_cleanly(prior_home, "layout", source=server.url("/a.zip"), checksum=sha256(data))
    assert "ratings.csv" in str(err)


def test_failed_refetch_keeps_complete_dataset(home: Path, server: Server, archive_bytes: bytes) -> None:
    server.routes["/a.zip"] = archive_bytes
    fetch(NAME, source=server.url("/a.zip"), checksum=sha256(archive_bytes), progress=False)
    bad = make_zip({"ratings.csv": "garbage"})
    server.routes["/bad.zip"] = bad
    wrong = "sha256:" + "1" * 64
    fails_cleanly(home, "checksum mismatch", source=server.url("/bad.zip"), checksum=wrong, force=True)
    fails_cleanly(home, "HTTP 404", source=server.url("/nope.zip"), checksum=wrong, force=True)
    fails_cleanly(home, "layout", source=server.url("/bad.zip"), checksum=sha256(bad), force=True)
    assert_installed(home)


def test_failed_install_restores_old_dataset(
    home: Path, server: Server, archive_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/a.zip"] = archive_bytes
    fetch(NAME, source=server.url("/a.zip"), checksum=sha256(archive_bytes), progress=False)
    real_rename = fetch_mod.os.rename

    def flaky(src: object, dst: object) -> None:
        if str(src).endswith(".partial/data"):
            raise OSError("disk on fire")
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(fetch_mod.os, "rename", flaky)
    fails_cleanly(
        home, "disk on fire", source=server.url("/a.zip"), checksum=sha256(archive_bytes), force=True
    )
    monkeypatch.undo()
    assert_installed(home)


# --- local sources --------------------------------------------------------------------------------


def test_from_local_zip(home: Path, tmp_path: Path, archive_bytes: bytes) -> None:
    z = tmp_path / "download.zip"
    z.write_bytes(archive_bytes)
    fetch(NAME, source=z, checksum=sha256(archive_bytes), progress=False)
    assert_installed(home)
    assert z.exists()  # the user's own file is left alone


def test_from_local_zip_with_md5_beside(home: Path, tmp_path: Path, archive_bytes: bytes) -> None:
    z = tmp_path / "ml-latest-small.zip"
    z.write_bytes(archive_bytes)
    (tmp_path / "ml-latest-small.zip.md5").write_text(f"{hashlib.md5(archive_bytes).hexdigest()}  x.zip\n")
    fetch(NAME, source=str(z), progress=False)
    assert_installed(home)


def test_from_local_zip_needs_a_checksum(prior_home: Path, tmp_path: Path, archive_bytes: bytes) -> None:
    z = tmp_path / "download.zip"
    z.write_bytes(archive_bytes)
    fails_cleanly(prior_home, "--checksum", source=z)
    fails_cleanly(prior_home, "checksum mismatch", source=z, checksum="md5:" + "a" * 32)


def test_from_local_zip_pinned_checksum_applies(home: Path, tmp_path: Path) -> None:
    # A local file named as an official archive is checked against the pinned checksum.
    z = tmp_path / "ml-100k.zip"
    z.write_bytes(make_zip({"u.data": "1\t1\t5\t1\n", "u.item": "", "u.user": ""}, folder="ml-100k"))
    with pytest.raises(FetchError, match="expected md5:0e33842e24a9c977be4e0107933c0723"):
        fetch("ml-100k", source=z, progress=False)
    assert not home.exists()


def test_from_local_directory(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, text in FILES.items():
        (src / name).write_text(text)
    path = fetch(NAME, source=src, progress=False)
    assert_installed(home)
    marker = read_marker(path)
    assert marker is not None
    assert marker["checksums"] == []
    assert (src / "ratings.csv").exists()  # copied, not moved


def test_from_directory_holding_the_archive_folder(home: Path, tmp_path: Path) -> None:
    (tmp_path / "unzipped" / NAME).mkdir(parents=True)
    for name, text in FILES.items():
        (tmp_path / "unzipped" / NAME / name).write_text(text)
    fetch(NAME, source=tmp_path / "unzipped", progress=False)
    assert_installed(home)


def test_from_directory_with_ml100k_layout(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "built"
    src.mkdir()
    for name in ("u.data", "ua.base", "ua.test"):
        (src / name).write_text("1\t1\t5\t881250949\n")
    (src / "u.item").write_text(
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    )
    (src / "u.user").write_text("1|24|M|technician|85711\n")
    (src / "u.genre").write_text("unknown|0\n")
    path = fetch("ml-100k", source=src, progress=False)
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [MARKER, "u.data", "u.item", "u.user", "u.genre", "ua.base", "ua.test"]
    )


def test_a_directory_is_read_before_it_is_installed(prior_home: Path, tmp_path: Path) -> None:
    """It has no checksum: a broken line is reported now, naming the source's file and line."""
    src = tmp_path / "src"
    src.mkdir()
    for name, text in FILES.items():
        (src / name).write_text(text)
    lines = (src / "ratings.csv").read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ",1,three,964982703"
    (src / "ratings.csv").write_text("\n".join(lines) + "\n")
    err = fails_cleanly(prior_home, "does not read as", source=src)
    assert f"{src / 'ratings.csv'}, line 3" in str(err) and "three" in str(err)


def test_from_directory_missing_layout_files(prior_home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "movies.csv").write_text(MOVIES)
    err = fails_cleanly(prior_home, "missing ratings.csv", source=src)
    assert str(src) in str(err)


def test_directory_takes_no_checksum(prior_home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, text in FILES.items():
        (src / name).write_text(text)
    fails_cleanly(prior_home, "not to the directory", source=src, checksum="md5:" + "0" * 32)


def test_missing_local_source(prior_home: Path, tmp_path: Path) -> None:
    fails_cleanly(prior_home, "no such file", source=tmp_path / "nowhere.zip")


def test_local_file_that_is_not_a_zip(prior_home: Path, tmp_path: Path) -> None:
    f = tmp_path / "ratings.csv"
    f.write_text(RATINGS)
    fails_cleanly(prior_home, "not a zip", source=f)


def test_unsupported_url_scheme(prior_home: Path) -> None:
    fails_cleanly(prior_home, "only http", source="ftp://example.org/ml-latest-small.zip")


def test_malformed_url(prior_home: Path) -> None:
    fails_cleanly(prior_home, r"cannot fetch from http://\[::1: not a URL", source="http://[::1")


# --- registry and helpers -----------------------------------------------------------------------------


def test_unknown_name(home: Path) -> None:
    with pytest.raises(FetchError, match=r"unknown data set 'ml-5k'.*ml-100k"):
        fetch("ml-5k", progress=False)
    assert not home.exists()


def test_registry() -> None:
    assert list(ARCHIVES) == [
        "ml-100k",
        "ml-1m",
        "ml-10m",
        "ml-20m",
        "ml-25m",
        "ml-latest-small",
        "ml-latest",
    ]
    for name, a in ARCHIVES.items():
        assert a.name == name
        assert a.url.startswith("https://files.grouplens.org/datasets/movielens/")
        assert a.required
        for c in a.checksums:
            assert parse_checksum(c) == c
    assert ARCHIVES["ml-10m"].url.endswith("/ml-10m.zip")
    assert ARCHIVES["ml-10m"].folder == "ml-10M100K"
    assert ARCHIVES["ml-100k"].checksums[0] == "md5:0e33842e24a9c977be4e0107933c0723"
    # The re-issued archives are checked against GroupLens' .md5 published beside them at fetch time.
    assert ARCHIVES["ml-latest"].checksums == ARCHIVES["ml-latest-small"].checksums == ()


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("md5:0E33842E24A9C977BE4E0107933C0723", "md5:0e33842e24a9c977be4e0107933c0723"),
        ("0e33842e24a9c977be4e0107933c0723", "md5:0e33842e24a9c977be4e0107933c0723"),
        (" sha256:" + "ab" * 32, "sha256:" + "ab" * 32),
        ("cd" * 32, "sha256:" + "cd" * 32),
    ],
)
def test_parse_checksum(given: str, normal: str) -> None:
    assert parse_checksum(given) == normal


@pytest.mark.parametrize("bad", ["", "md5:xyz", "sha256:" + "0" * 32, "crc32:deadbeef", "12345"])
def test_parse_checksum_rejects(bad: str) -> None:
    with pytest.raises(FetchError, match="not understood"):
        parse_checksum(bad)


def test_status_of_absent_dataset(home: Path) -> None:
    s = status("ml-1m")
    assert s["state"] == "absent"
    assert s["present"] is False
    assert s["path"] == str(home / "ml-1m")
    assert json.dumps(s)


def test_shared_real_data_imports(home: Path) -> None:
    """The real ml-latest-small directory (if the machine has it) passes the layout check."""
    from tests.conftest import shared_data_dir

    src = shared_data_dir() / NAME
    if not (src / "ratings.csv").exists():
        pytest.skip("no shared ml-latest-small")
    path = fetch(NAME, source=src, progress=False)
    assert (path / "ratings.csv").stat().st_size == (src / "ratings.csv").stat().st_size
    shutil.rmtree(home)
