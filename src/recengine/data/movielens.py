"""Readers for every MovieLens layout (ml-100k, ml-1m, ml-10m and the csv layouts of ml-20m onwards).

The happy path is one polars ``read_csv`` per file with explicit dtypes (a 20M-row ratings.csv in a
few seconds); only when that parse fails does :func:`find_bad_line` re-scan the file in Python, so
the error can name the file, the 1-based line and what is wrong with it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import polars as pl

from recengine.data.dataset import Dataset
from recengine.data.interactions import IdMap, Interactions, RatingScale
from recengine.errors import DataError, UnknownIdError

Kind = Literal["int", "float", "str"]
STARS = RatingScale(1.0, 5.0, 1.0)
HALF_STARS = RatingScale(0.5, 5.0, 0.5)

_DTYPES: dict[str, type[pl.DataType]] = {"int": pl.Int64, "float": pl.Float32, "str": pl.Utf8}
_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")
_FLOAT_RE = re.compile(r"^\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|nan|inf|infinity)\s*$", re.I)
# "Toy Story (1995)", "Fawlty Towers (1975-1979)", "Show (2007-)": title, then the first year.
_TITLE_RE = r"^(.*?)\s*\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$"

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
ML1M_OCCUPATIONS = (
    "other/not specified", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist", "self-employed",
    "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip


@dataclass(frozen=True)
class TableSpec:
    """How one delimited file is laid out: its columns (name, kind), separator as written in the file
    (``"::"`` included), expected header (None: the file has none), encoding and quoting."""

    columns: tuple[tuple[str, Kind], ...]
    sep: str
    header: tuple[str, ...] | None = None
    encoding: str = "utf-8"
    quoted: bool = False
    optional: frozenset[str] = frozenset()

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.columns]


def _cols(text: str) -> tuple[tuple[str, Kind], ...]:
    """``"user:int zip:str"`` → ``(("user", "int"), ("zip", "str"))``."""
    return tuple((n, cast(Kind, k)) for n, k in (f.split(":") for f in text.split()))


_RATINGS = _cols("user:int item:int rating:float timestamp:int")
_FLAGS = " ".join(f"g{k}:int" for k in range(19))
U_DATA = TableSpec(_RATINGS, "\t")
U_ITEM = TableSpec(
    _cols(f"item:int raw_title:str release_date:str video_date:str imdb_url:str {_FLAGS}"),
    "|",
    encoding="latin-1",
    optional=frozenset({"raw_title", "release_date", "video_date", "imdb_url"}),
)
U_USER = TableSpec(_cols("user:int age:int gender:str occupation:str zip:str"), "|")
DAT_RATINGS = TableSpec(_RATINGS, "::")
DAT_USERS = TableSpec(_cols("user:int gender:str age:int occupation:int zip:str"), "::")
DAT_TAGS = TableSpec(_cols("user:int item:int tag:str timestamp:int"), "::", optional=frozenset({"tag"}))
CSV_RATINGS = TableSpec(_RATINGS, ",", ("userId", "movieId", "rating", "timestamp"))
CSV_MOVIES = TableSpec(
    _cols("item:int raw_title:str raw_genres:str"), ",", ("movieId", "title", "genres"), quoted=True
)
CSV_TAGS = TableSpec(
    DAT_TAGS.columns, ",", ("userId", "movieId", "tag", "timestamp"), quoted=True, optional=frozenset({"tag"})
)
CSV_LINKS = TableSpec(
    _cols("item:int imdb_id:str tmdb_id:int"),
    ",",
    ("movieId", "imdbId", "tmdbId"),
    optional=frozenset({"imdb_id", "tmdb_id"}),
)


def dat_movies(encoding: str) -> TableSpec:
    """``MovieID::Title::Genres``: Latin-1 in ml-1m, UTF-8 in ml-10m."""
    return TableSpec(CSV_MOVIES.columns, "::", encoding=encoding)


# --------------------------------------------------------------------------------------------------
# Parsing: fast polars path, precise Python diagnosis on failure


def read_table(path: Path, spec: TableSpec) -> tuple[pl.DataFrame, int]:
    """The file as a DataFrame with ``spec``'s column names and dtypes, and the line of row 0.

    Blank lines in the middle are errors, trailing ones are ignored; any parse failure becomes a
    :class:`DataError` naming the first bad line.
    """
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"cannot read the file ({e.strerror or e})", path) from None
    if size == 0:
        raise DataError("the file is empty", path, 1)
    first_line = _check_header(path, spec)
    source: Path | bytes = path
    sep = spec.sep
    if len(sep) > 1 or spec.encoding.replace("-", "").lower() != "utf8":
        raw = path.read_bytes()
        if spec.encoding.replace("-", "").lower() != "utf8":
            raw = _recode(raw, path, spec)
        if len(sep) > 1:  # polars takes one-byte separators: swap "::" for a byte the data lacks
            one = next((c for c in ("\x1f", "\x1e", "\x1d", "\x1c") if c.encode() not in raw), None)
            if one is None:
                raise DataError("the file holds control bytes 0x1c-0x1f; cannot be a MovieLens file", path)
            raw, sep = raw.replace(sep.encode(), one.encode()), one
        source = raw
    schema = {name: _DTYPES[kind] for name, kind in spec.columns}
    try:
        df = pl.read_csv(
            source,
            has_header=False,
            skip_rows=first_line - 1,
            separator=sep,
            schema=schema,
            quote_char='"' if spec.quoted else None,
            encoding="utf8",
        )
    except pl.exceptions.NoDataError:
        df = pl.DataFrame(schema=schema)
    except (pl.exceptions.PolarsError, UnicodeDecodeError, ValueError) as e:
        raise _first_bad_line_error(path, spec, first_line, e) from None
    required = [n for n in spec.names if n not in spec.optional]
    if df.height and int(df.select(pl.col(required).null_count()).sum_horizontal().item()):
        df = _trim_trailing_blank(df)
        if int(df.select(pl.col(required).null_count()).sum_horizontal().item()):
            raise _first_bad_line_error(path, spec, first_line, None)
    if df.height == 0:
        raise DataError(
            "the file holds no data rows" + (" after the header" if spec.header else ""), path, first_line
        )
    return df, first_line


def _recode(raw: bytes, path: Path, spec: TableSpec) -> bytes:
    try:
        return raw.decode(spec.encoding).encode("utf-8")
    except UnicodeDecodeError:
        raise _first_bad_line_error(path, spec, 1, None) from None


def _check_header(path: Path, spec: TableSpec) -> int:
    """Line number of the first data row; a missing or different header is an error on line 1."""
    if spec.header is None:
        return 1
    with path.open("rb") as f:
        line = f.readline(1 << 16)
    text = line.decode(spec.encoding, errors="replace").lstrip("\ufeff").rstrip("\r\n")
    found = [x.strip().strip('"').lower() for x in text.split(spec.sep)]
    if found != [h.lower() for h in spec.header]:
        raise DataError(f"expected the header {spec.sep.join(spec.header)!r}, found {text[:200]!r}", path, 1)
    return 2


def _trim_trailing_blank(df: pl.DataFrame) -> pl.DataFrame:
    """Drop the all-null rows that trailing blank lines become."""
    blank = df.select(pl.all_horizontal(pl.all().is_null())).to_series().to_numpy()
    keep = len(blank)
    while keep and blank[keep - 1]:
        keep -= 1
    return df.head(keep)


def find_bad_line(path: Path, spec: TableSpec, first_line: int) -> tuple[int, str] | None:
    """First line (1-based) that does not fit ``spec``, and why; None when every line fits.

    The slow path: one Python pass over the file, run only after the fast parse has failed.
    """
    blank: int | None = None
    n = len(spec.columns)
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno < first_line:
                continue
            try:
                text = raw.decode(spec.encoding)
            except UnicodeDecodeError as e:
                return (
                    lineno,
                    f"not valid {spec.encoding} (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
                )
            text = text.rstrip("\r\n")
            if not text.strip():
                blank = lineno if blank is None else blank
                continue
            if blank is not None:
                return blank, "empty line"
            fields = next(csv.reader([text], delimiter=spec.sep)) if spec.quoted else text.split(spec.sep)
            if len(fields) != n:
                names = ", ".join(spec.names)
                return lineno, f"expected {n} fields ({names}) separated by {spec.sep!r}, found {len(fields)}"
            for (name, kind), value in zip(spec.columns, fields, strict=True):
                problem = _field_problem(name, kind, value, name in spec.optional)
                if problem:
                    return lineno, problem
    return None


def _field_problem(name: str, kind: Kind, value: str, optional: bool) -> str | None:
    if not value.strip():
        return None if optional else f"field {name!r} is empty"
    if kind == "int":
        if not _INT_RE.match(value):
            return f"field {name!r} must be an integer, found {value!r}"
        if not -(2**63) <= int(value) < 2**63:
            return f"field {name!r} is out of the 64-bit integer range: {value!r}"
    if kind == "float" and not _FLOAT_RE.match(value):
        return f"field {name!r} must be a number, found {value!r}"
    return None


def _first_bad_line_error(path: Path, spec: TableSpec, first_line: int, cause: Exception | None) -> DataError:
    found = find_bad_line(path, spec, first_line)
    if found is not None:
        return DataError(found[1], path, found[0])
    detail = str(cause).strip().splitlines()[0] if cause is not None else "unexpected empty fields"
    return DataError(f"could not be parsed: {detail}", path)


# --------------------------------------------------------------------------------------------------
# Ratings → Interactions


def ratings_to_interactions(
    df: pl.DataFrame,
    path: Path,
    scale: RatingScale,
    first_line: int,
    user_map: IdMap | None = None,
    item_map: IdMap | None = None,
) -> Interactions:
    """Columns user/item/rating/timestamp → validated Interactions (duplicates: see from_arrays)."""
    u = df["user"].to_numpy()
    i = df["item"].to_numpy()
    for ids, idmap in ((u, user_map), (i, item_map)):
        if idmap is not None:
            unknown = ~idmap.contains(ids)
            if bool(unknown.any()):
                row = int(np.argmax(unknown))
                raise DataError(
                    f"{idmap.name} {int(ids[row])} is not in the data set's {idmap.name}s "
                    f"({int(unknown.sum())} such rows)",
                    path,
                    first_line + row,
                )
    try:
        inter = Interactions.from_arrays(
            u,
            i,
            df["rating"].to_numpy(),
            df["timestamp"].to_numpy(),
            scale=scale,
            source=path,
            first_line=first_line,
            user_map=user_map,
            item_map=item_map,
        )
    except UnknownIdError as e:  # pragma: no cover - guarded above
        raise DataError(str(e), path) from None
    # polars hands out read-only views; downstream code may fairly expect to own its arrays.
    if inter.rating is not None and not inter.rating.flags.writeable:
        inter.rating = inter.rating.copy()
    if inter.timestamp is not None and not inter.timestamp.flags.writeable:
        inter.timestamp = inter.timestamp.copy()
    return inter


def read_ratings(path: Path, spec: TableSpec, scale: RatingScale) -> Interactions:
    df, first = read_table(path, spec)
    return ratings_to_interactions(df, path, scale, first)


# --------------------------------------------------------------------------------------------------
# Item, user and tag tables


def _title_year(raw: pl.Expr) -> list[pl.Expr]:
    s = raw.str.strip_chars()
    return [
        pl.coalesce(s.str.extract(_TITLE_RE, 1), s).alias("title"),
        s.str.extract(_TITLE_RE, 2).cast(pl.Int32).alias("year"),
    ]


def _genres(raw: pl.Expr) -> pl.Expr:
    empty = raw.is_null() | (raw.str.strip_chars() == "") | (raw == "(no genres listed)")
    return (
        pl.when(empty).then(pl.lit([], dtype=pl.List(pl.Utf8))).otherwise(raw.str.split("|")).alias("genres")
    )


def movies_table(path: Path, spec: TableSpec) -> pl.DataFrame:
    """movies.csv / movies.dat → item, title, year, genres."""
    df, _ = read_table(path, spec)
    return df.select(pl.col("item"), *_title_year(pl.col("raw_title")), _genres(pl.col("raw_genres")))


def ml100k_items(path: Path) -> pl.DataFrame:
    """u.item → item, title, year (from the title, else the release date), genres, release_date, imdb_url."""
    df, _ = read_table(path, U_ITEM)
    release = pl.col("release_date").str.to_date("%d-%b-%Y", strict=False)
    flags = [pl.when(pl.col(f"g{k}") == 1).then(pl.lit(g)) for k, g in enumerate(ML100K_GENRES)]
    title, year = _title_year(pl.col("raw_title"))
    return df.select(
        pl.col("item"),
        pl.coalesce(title, pl.lit("")).alias("title"),
        pl.coalesce(year, release.dt.year().cast(pl.Int32)).alias("year"),
        pl.concat_list(flags).list.drop_nulls().alias("genres"),
        release.alias("release_date"),
        pl.col("imdb_url"),
    )


def ml100k_users(path: Path) -> pl.DataFrame:
    df, _ = read_table(path, U_USER)
    return df.with_columns(pl.col("age").cast(pl.Int32))


def ml1m_users(path: Path) -> pl.DataFrame:
    """users.dat → user, age (the bucket code), gender, occupation (name from the README), zip."""
    df, _ = read_table(path, DAT_USERS)
    names = dict(enumerate(ML1M_OCCUPATIONS))
    occupation = pl.col("occupation").replace_strict(
        names, default=pl.lit("code ") + pl.col("occupation").cast(pl.Utf8), return_dtype=pl.Utf8
    )
    return df.select("user", pl.col("age").cast(pl.Int32), "gender", occupation.alias("occupation"), "zip")


def tags_table(path: Path, spec: TableSpec) -> pl.DataFrame:
    df, _ = read_table(path, spec)
    return df


def links_table(path: Path) -> pl.DataFrame:
    df, _ = read_table(path, CSV_LINKS)
    return df


def _optional(path: Path) -> Path | None:
    return path if path.exists() else None


# --------------------------------------------------------------------------------------------------
# Layout readers


def read_ml100k(path: Path, name: str | None = None) -> Dataset:
    """ml-100k: u.data, u.item (Latin-1), u.user; ratings 1–5 stars."""
    path = Path(path)
    inter = read_ratings(path / "u.data", U_DATA, STARS)
    items = ml100k_items(p) if (p := _optional(path / "u.item")) else None
    users = ml100k_users(p) if (p := _optional(path / "u.user")) else None
    return Dataset(name or path.name, "ml-100k", inter, items=items, users=users, path=path)


def read_ml100k_split(path: Path, users: IdMap, items: IdMap) -> Interactions:
    """A GroupLens split file (u1.base, ua.test, ...) in the id space of the whole data set."""
    path = Path(path)
    df, first = read_table(path, U_DATA)
    return ratings_to_interactions(df, path, STARS, first, user_map=users, item_map=items)


def read_ml1m(path: Path, name: str | None = None) -> Dataset:
    """ml-1m: ratings.dat, movies.dat (Latin-1), users.dat with coded age and occupation; 1–5 stars."""
    path = Path(path)
    inter = read_ratings(path / "ratings.dat", DAT_RATINGS, STARS)
    items = movies_table(p, dat_movies("latin-1")) if (p := _optional(path / "movies.dat")) else None
    users = ml1m_users(p) if (p := _optional(path / "users.dat")) else None
    return Dataset(name or path.name, "ml-1m", inter, items=items, users=users, path=path)


def read_ml10m(path: Path, name: str | None = None) -> Dataset:
    """ml-10m (ml-10M100K): ratings.dat, movies.dat (UTF-8), tags.dat; 0.5–5 in half stars."""
    path = Path(path)
    inter = read_ratings(path / "ratings.dat", DAT_RATINGS, HALF_STARS)
    items = movies_table(p, dat_movies("utf-8")) if (p := _optional(path / "movies.dat")) else None
    tags = tags_table(p, DAT_TAGS) if (p := _optional(path / "tags.dat")) else None
    return Dataset(name or path.name, "ml-10m", inter, items=items, tags=tags, path=path)


def read_movielens_csv(path: Path, layout: str = "movielens-csv", name: str | None = None) -> Dataset:
    """ml-20m, ml-25m, ml-latest, ml-latest-small: ratings.csv, movies.csv, tags.csv, links.csv."""
    path = Path(path)
    inter = read_ratings(path / "ratings.csv", CSV_RATINGS, HALF_STARS)
    items = movies_table(p, CSV_MOVIES) if (p := _optional(path / "movies.csv")) else None
    if items is not None and (p := _optional(path / "links.csv")):
        items = items.join(links_table(p), on="item", how="left")
    tags = tags_table(p, CSV_TAGS) if (p := _optional(path / "tags.csv")) else None
    return Dataset(name or path.name, layout, inter, items=items, tags=tags, path=path)
