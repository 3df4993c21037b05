"""The one entry point for reading a data set: by name (from the data home) or by path.

``load_dataset`` is what the CLI, the protocols and the server call, so that every part of the
project reads a given name or path the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

from recengine.data.dataset import Dataset
from recengine.data.home import dataset_dir
from recengine.data.movielens import read_ml1m, read_ml10m, read_ml100k, read_movielens_csv
from recengine.errors import DataError

CSV_DEFAULT = "movielens-csv"  # a full-size csv release whose directory name does not say which one
LAYOUTS = ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest", "ml-latest-small", CSV_DEFAULT)
#: Each MovieLens ratings file's name and how its first line reads.
_FIRST_LINES = {
    "u.data": re.compile(r"\d+\t\d+\t\d+\t\d+"),
    "ratings.dat": re.compile(r"\d+::\d+::[0-9.]+::\d+"),
    "ratings.csv": re.compile(r'"?userId"?,"?movieId"?,"?rating"?,"?timestamp"?'),
}
RATINGS_FILES = tuple(_FIRST_LINES)

_CSV_NAMES = (
    (re.compile(r"ml-?latest-?small"), "ml-latest-small"),
    (re.compile(r"ml-?latest"), "ml-latest"),
    (re.compile(r"ml-?20m"), "ml-20m"),
    (re.compile(r"ml-?25m"), "ml-25m"),
)


def detect_layout(path: Path) -> str:
    """Which MovieLens layout directory ``path`` holds, from its files and, where they agree, its name.

    The csv layouts (ml-20m, ml-25m, ml-latest, ml-latest-small) share one format; they are told
    apart by the directory name; else ``genome-scores.csv`` marks a full-size release (which one
    cannot be told: ``movielens-csv``) and its absence ml-latest-small. All read the same way.
    """
    path = Path(path)
    name = path.name.lower()
    if (path / "u.data").is_file():
        return "ml-100k"
    if (path / "ratings.dat").is_file():
        if "10m" in name:
            return "ml-10m"
        if "1m" in name:
            return "ml-1m"
        return "ml-1m" if (path / "users.dat").is_file() else "ml-10m"
    if (path / "ratings.csv").is_file():
        for pattern, layout in _CSV_NAMES:
            if pattern.search(name):
                return layout
        return CSV_DEFAULT if (path / "genome-scores.csv").is_file() else "ml-latest-small"
    if not path.exists():
        raise DataError("no such directory", path)
    if not path.is_dir():
        raise DataError("not a directory holding a MovieLens data set", path)
    raise DataError(
        "unknown data set layout: none of the MovieLens ratings files "
        f"({', '.join(RATINGS_FILES)}) is in this directory; for your own data use the generic "
        "reader (a CSV/TSV/Parquet/JSON Lines file with user and item columns)",
        path,
    )


def read_layout(path: Path, layout: str, name: str | None = None) -> Dataset:
    """Read directory ``path`` as ``layout`` (one of :data:`LAYOUTS`)."""
    if layout == "ml-100k":
        return read_ml100k(path, name)
    if layout == "ml-1m":
        return read_ml1m(path, name)
    if layout == "ml-10m":
        return read_ml10m(path, name)
    if layout in LAYOUTS:
        return read_movielens_csv(path, layout, name)
    raise DataError(f"unknown MovieLens layout {layout!r}; known layouts: {', '.join(LAYOUTS)}", path)


def read_dataset(path: Path, layout: str | None = None, name: str | None = None) -> Dataset:
    """Read a MovieLens directory (or its ratings file) as ``layout`` (detected when None)."""
    path = Path(path)
    if path.is_file() and path.name in RATINGS_FILES:
        path = path.parent
    return read_layout(path, layout or detect_layout(path), name)


def is_movielens_ratings_file(path: Path) -> bool:
    """Whether ``path`` is a MovieLens ratings file, read with its directory: named like one (u.data,
    ratings.dat, ratings.csv) and starting as one does. A file of one's own that happens to be called
    ratings.csv goes to the generic reader instead."""
    pattern = _FIRST_LINES.get(path.name)
    if pattern is None or not path.is_file():
        return False
    try:
        with path.open("rb") as f:
            first = f.readline(4096).decode("utf-8-sig", errors="replace").strip()
    except OSError:
        return False
    return pattern.fullmatch(first) is not None


def load_dataset(name_or_path: str | Path) -> Dataset:
    """A data set by path or by name.

    An existing directory is read as MovieLens; an existing MovieLens ratings file (u.data,
    ratings.dat, ratings.csv, starting as MovieLens' do) is read with its directory, any other file
    with the generic reader (column names recognised from the header). Anything else is looked up in
    the data home; missing there, the error says how to fetch it.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        if path.is_file() and not is_movielens_ratings_file(path):
            from recengine.data.generic import read_interactions

            return read_interactions(path)
        return read_dataset(path)
    name = str(name_or_path)
    home = dataset_dir(name) if _plain_name(name) else None
    if home is not None and home.is_dir():
        return read_dataset(_layout_root(home), name=name)
    if home is None:
        raise DataError("no such file or directory", path)
    raise DataError(
        f"no data set {name!r}: it is not a path that exists, nor in the data home ({home}); "
        f"run `recengine data fetch {name}` to download it, or give the path of its directory"
    )


def _plain_name(name: str) -> bool:
    """A data set name (``ml-100k``), not a path that happens not to exist."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def _layout_root(home: Path) -> Path:
    """``home`` itself, or its single sub-directory when the files sit one level down."""
    if any((home / f).is_file() for f in RATINGS_FILES):
        return home
    subdirs = [d for d in home.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if len(subdirs) == 1 and any((subdirs[0] / f).is_file() for f in RATINGS_FILES):
        return subdirs[0]
    return home
