"""Download or import the GroupLens MovieLens archives into the data home, verified and all-or-nothing.

Every fetch works in one staging directory inside the data home (``.<name>.<random>.partial``): the
archive is streamed there, its size checked against Content-Length, its checksum verified, the zip
unpacked (its single top-level folder flattened), the layout's files checked, and a marker file
(:data:`MARKER`) written last; only then is the directory renamed to ``<data home>/<name>``. A
directory without the marker is never taken for a complete data set. On any failure the staging
directory is removed and the data home is left as it was, an existing complete data set included.

Checksums: GroupLens publishes ``<archive>.zip.md5`` beside each archive. The MD5s of the archives
that never change are pinned below (with the SHA-256 where it is widely published); for
``ml-latest`` and ``ml-latest-small``, which GroupLens re-issues, the published ``.md5`` beside the
archive is read at fetch time instead (beside a local zip: ``<zip>.md5``). ``checksum=`` overrides
both, and is required for an archive that is neither official nor accompanied by its ``.md5``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from recengine.data.home import data_home, dataset_dir
from recengine.errors import FetchError

MARKER = ".recengine-complete.json"
BASE_URL = "https://files.grouplens.org/datasets/movielens"
CHUNK = 1 << 20
TIMEOUT_S = 60.0
_HASHES = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}


@dataclass(frozen=True)
class Archive:
    """One GroupLens archive: where it lives, what it unpacks into, how to verify it."""

    name: str
    url: str
    folder: str
    """The zip's single top-level folder (flattened away on unpacking)."""
    required: tuple[str, ...]
    """Layout files that must be present for the data set to count as complete."""
    checksums: tuple[str, ...] = ()
    """Pinned ``algo:hex`` values, all verified; empty: read the published ``.md5`` at fetch time."""
    description: str = ""


def _gl(name: str) -> str:
    return f"{BASE_URL}/{name}.zip"


# The MD5s are GroupLens' own, from the <name>.zip.md5 files published beside each archive
# ("MD5 (ml-1m.zip) = c4d9..."), as quoted identically by many independent projects (MLPerf's NCF
# verify_dataset.sh, torch/TF dataset classes, papers' reproduction notes); ml-100k's SHA-256
# (4,924,029 bytes) is equally widely pinned. None of these archives has changed since release.
# ml-latest and ml-latest-small are re-issued by GroupLens: their published .md5 is read at fetch time.
ARCHIVES: dict[str, Archive] = {
    a.name: a
    for a in (
        Archive(
            "ml-100k",
            _gl("ml-100k"),
            "ml-100k",
            ("u.data", "u.item", "u.user"),
            (
                "md5:0e33842e24a9c977be4e0107933c0723",
                "sha256:50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            ),
            "MovieLens 100K (1998): 100,000 ratings 1-5 by 943 users on 1,682 movies, predefined splits",
        ),
        Archive(
            "ml-1m",
            _gl("ml-1m"),
            "ml-1m",
            ("ratings.dat", "movies.dat", "users.dat"),
            ("md5:c4d9eecfca2ab87c1945afe126590906",),
            "MovieLens 1M (2003): 1,000,209 ratings 1-5 by 6,040 users, with user demographics",
        ),
        Archive(
            "ml-10m",
            _gl("ml-10m"),
            "ml-10M100K",
            ("ratings.dat", "movies.dat"),
            ("md5:ce571fd55effeba0271552578f2648bd",),
            "MovieLens 10M (2009): 10,000,054 ratings 0.5-5 in half stars, and tags",
        ),
        Archive(
            "ml-20m",
            _gl("ml-20m"),
            "ml-20m",
            ("ratings.csv", "movies.csv"),
            ("md5:cd245b17a1ae2cc31bb14903e1204af3",),
            "MovieLens 20M (2015): 20,000,263 ratings 0.5-5, tags and the tag genome",
        ),
        Archive(
            "ml-25m",
            _gl("ml-25m"),
            "ml-25m",
            ("ratings.csv", "movies.csv"),
            ("md5:6b51fb2759a8657d3bfcbfc42b592ada",),
            "MovieLens 25M (2019): 25,000,095 ratings 0.5-5 by 162,541 users, tags and the tag genome",
        ),
        Archive(
            "ml-latest-small",
            _gl("ml-latest-small"),
            "ml-latest-small",
            ("ratings.csv", "movies.csv"),
            (),
            "MovieLens latest, small (re-issued by GroupLens): about 100,000 ratings 0.5-5 by 610 users",
        ),
        Archive(
            "ml-latest",
            _gl("ml-latest"),
            "ml-latest",
            ("ratings.csv", "movies.csv"),
            (),
            "MovieLens latest, full (re-issued by GroupLens): tens of millions of ratings 0.5-5, tags",
        ),
    )
}


def archive(name: str) -> Archive:
    """The registry entry for ``name``; an unknown name is a :class:`FetchError` listing the known ones."""
    try:
        return ARCHIVES[name]
    except KeyError:
        raise FetchError(f"unknown data set {name!r}; known: {', '.join(ARCHIVES)}") from None


def parse_checksum(value: str) -> str:
    """Normalize ``md5:HEX`` / ``sha256:HEX`` (or a bare hex digest, recognized by its length)."""
    text = value.strip()
    algo, sep, digest = text.partition(":")
    if not sep:
        algo, digest = "", text
    digest = digest.strip().lower()
    algo = algo.strip().lower()
    if not algo:
        algo = next((a for a, n in _HASHES.items() if n == len(digest)), "")
    if algo not in _HASHES or len(digest) != _HASHES[algo] or not re.fullmatch(r"[0-9a-f]+", digest):
        raise FetchError(
            f"checksum {value!r} is not understood: write md5:<32 hex digits> or sha256:<64 hex digits>"
        )
    return f"{algo}:{digest}"


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The completion marker of a data set directory, or None if it is missing or unreadable."""
    try:
        data = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(path: str | Path) -> bool:
    """True when the directory holds a finished fetch (the marker is written last, so it proves it)."""
    return read_marker(path) is not None


def status(name: str) -> dict[str, Any]:
    """Where a known data set lives and whether it is there: absent, incomplete or complete."""
    spec = archive(name)
    path = dataset_dir(name)
    marker = read_marker(path)
    state = "complete" if marker is not None else ("incomplete" if path.exists() else "absent")
    return {
        "name": name,
        "state": state,
        "present": marker is not None,
        "path": str(path),
        "url": spec.url,
        "fetched_at": marker.get("fetched_at") if marker else None,
        "source": marker.get("source") if marker else None,
        "description": spec.description,
    }


def fetch(
    name: str,
    *,
    source: str | Path | None = None,
    checksum: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Put data set ``name`` into ``data_home()/<name>`` and return that directory.

    ``source``: a URL (http, https, file), a local zip or a local directory with the layout's files
    (default: the official GroupLens URL). ``checksum`` (``md5:...``/``sha256:...``) overrides the
    pinned value; it does not apply to a directory. A complete data set is kept as it is unless
    ``force``; a failed fetch leaves the data home exactly as it was.
    """
    spec = archive(name)
    dest = dataset_dir(name)
    if not force and is_complete(dest):
        return dest
    expected = (parse_checksum(checksum),) if checksum is not None else spec.checksums
    origin = "given" if checksum is not None else ("pinned" if spec.checksums else None)
    kind, where = _classify(source if source is not None else spec.url)

    home = data_home()
    created = [p for p in (home, *home.parents) if not p.exists()]
    try:
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=home))
    except OSError as e:
        raise FetchError(f"cannot write to the data home {home} (set $RECENGINE_DATA): {e}") from None
    ok = False
    try:
        data = staging / "data"
        if kind == "dir":
            if checksum is not None:
                raise FetchError(f"a checksum applies to an archive, not to the directory {where}")
            _import_dir(Path(where), data, spec)
            expected, origin = (), None
        else:
            zip_path: Path
            if kind == "url":
                if not expected:
                    expected, origin = (_published_md5(where, name),), f"published {where}.md5"
                zip_path = staging / f"{name}.zip"
                actual = _download(where, zip_path, expected, progress)
            else:
                zip_path = Path(where)
                if not expected:
                    expected, origin = _sidecar_md5(zip_path, name), f"published {zip_path}.md5"
                actual = _hash_file(zip_path, expected)
            _verify(name, where, expected, actual)
            _unpack(zip_path, data, where)
            if zip_path.parent == staging:
                zip_path.unlink()  # free the space before the rename, not after
        _check_layout(data, spec, where)
        _write_marker(data, name, where, expected, origin)
        _install(data, dest, home, name)
        ok = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            for p in created:  # directories this call made, innermost first
                with contextlib.suppress(OSError):
                    p.rmdir()
    return dest


def _classify(source: str | Path) -> tuple[str, str]:
    """("url", url) | ("zip", path) | ("dir", path) for a fetch source."""
    if isinstance(source, str):
        try:
            scheme = urllib.parse.urlsplit(source).scheme.lower()
        except ValueError as e:  # e.g. an unclosed IPv6 bracket
            raise FetchError(f"cannot fetch from {source}: not a URL ({e})") from None
        if scheme in ("http", "https", "file"):
            return "url", source
        if len(scheme) > 1:
            raise FetchError(f"cannot fetch from {source}: only http, https and file URLs are supported")
    path = Path(source).expanduser()
    if path.is_dir():
        return "dir", str(path)
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise FetchError(f"{path} is not a zip archive (nor a directory of data files)")
        return "zip", str(path)
    raise FetchError(f"no such file or directory: {path}")


def _open_url(url: str, what: str) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": _user_agent()})
    try:
        return urllib.request.urlopen(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        e.close()
        raise FetchError(f"{what} {url} failed: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise FetchError(f"{what} {url} failed: {e.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise FetchError(f"{what} {url} failed: {e}") from None


def _user_agent() -> str:
    from recengine import __version__

    return f"recengine/{__version__} (+https://grouplens.org/datasets/movielens/)"


_MD5_RE = re.compile(r"\b[0-9a-fA-F]{32}\b")


def _md5_from_text(text: str) -> str | None:
    """The digest out of ``MD5 (x.zip) = HEX`` (BSD, as GroupLens writes it) or ``HEX  x.zip`` (GNU)."""
    m = _MD5_RE.search(text)
    return f"md5:{m.group(0).lower()}" if m else None


def _published_md5(url: str, name: str) -> str:
    """Read the ``.md5`` that GroupLens publishes beside the archive (for archives it re-issues)."""
    md5_url = url + ".md5"
    with _open_url(md5_url, f"no checksum is pinned for {name}, and reading the published checksum") as r:
        try:
            text = r.read(4096).decode("ascii", "replace")
        except (OSError, http.client.HTTPException) as e:
            raise FetchError(f"reading the published checksum {md5_url} failed: {e}") from None
    found = _md5_from_text(text)
    if found is None:
        raise FetchError(f"{md5_url} holds no MD5 digest; pass --checksum md5:... to fetch {name}")
    return found


def _sidecar_md5(zip_path: Path, name: str) -> tuple[str, ...]:
    side = zip_path.with_name(zip_path.name + ".md5")
    found = _md5_from_text(side.read_text(errors="replace")[:4096]) if side.is_file() else None
    if found is None:
        raise FetchError(
            f"no checksum is pinned for {name} and no {side.name} lies beside {zip_path}: pass "
            f"--checksum sha256:<digest> (e.g. from `sha256sum {zip_path.name}`) to import it"
        )
    return (found,)


def _hashers(expected: tuple[str, ...]) -> dict[str, Any]:
    algos = dict.fromkeys(c.split(":", 1)[0] for c in expected)
    return {algo: hashlib.new(algo, usedforsecurity=False) for algo in algos}


def _hash_file(path: Path, expected: tuple[str, ...]) -> dict[str, str]:
    hs = _hashers(expected)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                for h in hs.values():
                    h.update(chunk)
    except OSError as e:
        raise FetchError(f"cannot read {path}: {e}") from None
    return {a: h.hexdigest() for a, h in hs.items()}


def _download(url: str, out: Path, expected: tuple[str, ...], progress: bool) -> dict[str, str]:
    """Stream ``url`` into ``out``, hashing on the way; a short body (vs Content-Length) is an error."""
    hs = _hashers(expected)
    got = 0
    with _open_url(url, "download of") as resp:
        header = resp.headers.get("Content-Length")
        total = int(header) if header is not None and header.strip().isdigit() else None
        try:
            with open(out, "wb") as f, _progress_bar(progress, url.rsplit("/", 1)[-1], total) as advance:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    for h in hs.values():
                        h.update(chunk)
                    got += len(chunk)
                    advance(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            detail = f" of {total}" if total is not None else ""
            raise FetchError(f"download of {url} broke off after {got}{detail} bytes: {e!r}") from None
    if total is not None and got != total:
        raise FetchError(f"download of {url} is truncated: received {got} of {total} bytes")
    return {a: h.hexdigest() for a, h in hs.items()}


@contextlib.contextmanager
def _progress_bar(enabled: bool, label: str, total: int | None) -> Iterator[Any]:
    """A rich download bar on stderr (stdout stays clean for --json); a no-op when disabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:  # a log file gets no bar (rich would leave a blank line there)
        yield lambda n: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _verify(name: str, where: str, expected: tuple[str, ...], actual: dict[str, str]) -> None:
    for want in expected:
        algo, digest = want.split(":", 1)
        if actual.get(algo) != digest:
            raise FetchError(
                f"checksum mismatch for {name} from {where}: expected {want}, got {algo}:{actual.get(algo)}; "
                "the download was discarded and the data home left as it was"
            )


def _member_path(info: zipfile.ZipInfo, archive_label: str) -> tuple[str, ...]:
    """The member's path parts, refusing anything that could land outside the target directory."""
    raw = info.filename.replace("\\", "/")
    parts = tuple(p for p in raw.split("/") if p not in ("", "."))
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw) or ".." in parts:
        raise FetchError(f"unsafe path {info.filename!r} in {archive_label}: refusing to unpack it")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise FetchError(f"symbolic link {info.filename!r} in {archive_label}: refusing to unpack it")
    return parts


def _unpack(zip_path: Path, out: Path, label: str) -> None:
    """Unpack safely into ``out`` (new), dropping the zip's single top-level folder if it has one."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = [
                (info, _member_path(info, label))
                for info in zf.infolist()
                if not info.filename.startswith("__MACOSX/")
            ]
            members = [(i, p) for i, p in members if p]
            files = [(i, p) for i, p in members if not i.is_dir()]
            if not files:
                raise FetchError(f"the archive {label} holds no files")
            tops = {p[0] for _, p in members}
            strip = 1 if len(tops) == 1 and all(len(p) > 1 for _, p in files) else 0
            out.mkdir()
            for info, parts in files:
                target = out.joinpath(*parts[strip:])
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    _copy(src, dst)
    except FetchError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        raise FetchError(f"the archive {label} is corrupt: {e}") from None
    except OSError as e:
        raise FetchError(f"unpacking {label} failed: {e}") from None


def _copy(src: IO[bytes], dst: IO[bytes]) -> None:
    while chunk := src.read(CHUNK):
        dst.write(chunk)


def _import_dir(src: Path, out: Path, spec: Archive) -> None:
    """Copy a directory holding the layout (or holding the archive's folder that does) into ``out``."""
    if not all((src / f).is_file() for f in spec.required) and all(
        (src / spec.folder / f).is_file() for f in spec.required
    ):
        src = src / spec.folder
    _check_layout(src, spec, str(src))
    try:
        shutil.copytree(src, out, ignore=shutil.ignore_patterns(MARKER))
    except (OSError, shutil.Error) as e:
        raise FetchError(f"copying {src} into the data home failed: {e}") from None
    # A directory has no checksum: its files are read once here, so a broken line is reported now,
    # naming the source, rather than by the first command that uses the installed copy.
    from recengine.data.load import load_dataset
    from recengine.errors import DataError

    try:
        load_dataset(out)
    except DataError as e:
        raise FetchError(f"{src} does not read as {spec.name}: {e}".replace(str(out), str(src))) from None


def _check_layout(path: Path, spec: Archive, where: str) -> None:
    missing = [f for f in spec.required if not (path / f).is_file()]
    if missing:
        raise FetchError(
            f"{where} does not hold the {spec.name} layout: missing {', '.join(missing)} "
            f"(expected {', '.join(spec.required)})"
        )


def _write_marker(data: Path, name: str, where: str, checksums: tuple[str, ...], origin: str | None) -> None:
    """Written last, inside the staging directory: its presence is what "complete" means."""
    from recengine import __version__

    files = {p.relative_to(data).as_posix(): p.stat().st_size for p in sorted(data.rglob("*")) if p.is_file()}
    marker = {
        "name": name,
        "source": where,
        "checksums": list(checksums),
        "checksum_origin": origin,
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "recengine_version": __version__,
        "files": files,
    }
    tmp = data / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, data / MARKER)


def _install(data: Path, dest: Path, home: Path, name: str) -> None:
    """Rename the finished directory into place; an old one is moved aside first and restored on failure."""
    if not (dest.exists() or dest.is_symlink()):
        try:
            os.rename(data, dest)
            return
        except OSError as e:
            raise FetchError(f"cannot move the fetched {name} into {dest}: {e}") from None
    aside = home / f".{name}.{uuid.uuid4().hex[:8]}.old"
    try:
        os.rename(dest, aside)
    except OSError as e:
        raise FetchError(f"cannot replace {dest}: {e}") from None
    try:
        os.rename(data, dest)
    except OSError as e:
        os.rename(aside, dest)
        raise FetchError(f"cannot move the fetched {name} into {dest}: {e}") from None
    if aside.is_symlink() or aside.is_file():
        aside.unlink()
    else:
        shutil.rmtree(aside, ignore_errors=True)
