"""The feedback store: ratings posted through the API, kept durably so that they change a user's
fold-in recommendations at once and can be trained on later (``feedback_interactions``).

The store is an append-only log of (namespace, user, item, rating, time) events; the latest event
per (user, item) wins when it is read. ``namespace`` is the data set the ids belong to, so two models
on different data sets never mix their users (models taking 0/1 labels keep theirs apart:
:func:`feedback_namespace`). SQLite (WAL mode, ``synchronous=FULL``, one connection
behind a lock, retries while another process holds the write lock) is the embedded default; a
``postgresql://`` URL uses PostgreSQL through psycopg. A rating is acknowledged only after its
transaction has committed, which is what makes "no acknowledged rating is lost" hold under SIGKILL.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from recengine.data.interactions import IdMap, Interactions, RatingScale
from recengine.errors import ConfigError, RecengineError

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS feedback ("
    " seq {pk},"
    " namespace TEXT NOT NULL,"
    " user_id TEXT NOT NULL,"
    " item_id TEXT NOT NULL,"
    " rating {real} NOT NULL,"
    " created {real} NOT NULL)",
    "CREATE INDEX IF NOT EXISTS feedback_user ON feedback (namespace, user_id, seq)",
)


class StoreError(RecengineError):
    """The feedback store cannot be opened or written (after retries); nothing was acknowledged."""


@dataclass(frozen=True)
class StoredRating:
    """One rating event as stored: ids are text (the store does not know the data set's id types)."""

    user: str
    item: str
    rating: float
    created: float  # Unix seconds
    seq: int  # position in the log: a later event has a larger seq


@dataclass(frozen=True)
class FeedbackRows:
    """Every stored event of a namespace as columns, in log order (for training on feedback)."""

    user: npt.NDArray[np.str_]
    item: npt.NDArray[np.str_]
    rating: npt.NDArray[np.float32]
    created: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.user)


def latest_per_item(events: Sequence[StoredRating]) -> list[StoredRating]:
    """The last event of each item, in the order those last events were written."""
    last: dict[str, StoredRating] = {}
    for e in events:
        last.pop(e.item, None)
        last[e.item] = e
    return list(last.values())


class FeedbackStore(ABC):
    """What the server and training need from a store; both back ends pass the same tests."""

    url: str

    @abstractmethod
    def add(self, namespace: str, user: str, ratings: Sequence[tuple[str, float]]) -> list[StoredRating]:
        """Append ``(item, rating)`` events for ``user`` in one committed transaction."""

    @abstractmethod
    def events(self, namespace: str, user: str) -> list[StoredRating]:
        """Every event of ``user``, in log order."""

    @abstractmethod
    def rows(self, namespace: str | None = None) -> FeedbackRows:
        """Every event (of ``namespace``, or of all), in log order."""

    @abstractmethod
    def close(self) -> None: ...

    def user_ratings(self, namespace: str, user: str) -> list[StoredRating]:
        """The user's current ratings: the latest event per item."""
        return latest_per_item(self.events(namespace, user))

    def count(self, namespace: str | None = None) -> int:
        return len(self.rows(namespace))

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rows_from(records: Sequence[tuple[Any, ...]]) -> FeedbackRows:
    return FeedbackRows(
        user=np.array([str(r[0]) for r in records], dtype=str),
        item=np.array([str(r[1]) for r in records], dtype=str),
        rating=np.array([float(r[2]) for r in records], dtype=np.float32),
        created=np.array([float(r[3]) for r in records], dtype=np.float64),
    )


class SQLiteStore(FeedbackStore):
    """SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk before it is acknowledged.

    One connection serves every thread behind a lock (SQLite serializes writers anyway); another
    process writing the same file makes ``BEGIN IMMEDIATE`` wait (``busy_timeout``) and then retry.
    """

    RETRIES = 8

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        self.url = f"sqlite://{self.path}"
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._write(lambda c: [c.execute(s) for s in _sqlite_schema()])
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the SQLite feedback store {self.path}: {e}") from None

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retrying while the database is busy."""
        delay = 0.01
        for attempt in range(self.RETRIES):
            with self._lock:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as e:
                    if not _busy(e) or attempt == self.RETRIES - 1:
                        raise StoreError(f"feedback store {self.path}: {e}") from None
                else:
                    try:
                        out = fn(self._conn)
                        self._conn.execute("COMMIT")
                        return out
                    except sqlite3.Error as e:
                        if self._conn.in_transaction:
                            self._conn.execute("ROLLBACK")
                        if not _busy(e) or attempt == self.RETRIES - 1:
                            raise StoreError(f"feedback store {self.path}: {e}") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        raise StoreError(f"feedback store {self.path}: still busy after {self.RETRIES} tries")

    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise StoreError(f"feedback store {self.path}: {e}") from None

    def add(self, namespace: str, user: str, ratings: Sequence[tuple[str, float]]) -> list[StoredRating]:
        now = time.time()

        def insert(c: sqlite3.Connection) -> list[StoredRating]:
            out = []
            for item, rating in ratings:
                cur = c.execute(
                    "INSERT INTO feedback (namespace, user_id, item_id, rating, created) VALUES (?,?,?,?,?)",
                    (namespace, user, item, float(rating), now),
                )
                out.append(StoredRating(user, item, float(rating), now, int(cur.lastrowid or 0)))
            return out

        return self._write(insert)

    def events(self, namespace: str, user: str) -> list[StoredRating]:
        rows = self._read(
            "SELECT user_id, item_id, rating, created, seq FROM feedback"
            " WHERE namespace = ? AND user_id = ? ORDER BY seq",
            (namespace, user),
        )
        return [StoredRating(str(u), str(i), float(r), float(t), int(s)) for u, i, r, t, s in rows]

    def rows(self, namespace: str | None = None) -> FeedbackRows:
        sql = "SELECT user_id, item_id, rating, created FROM feedback"
        args: tuple[Any, ...] = ()
        if namespace is not None:
            sql, args = sql + " WHERE namespace = ?", (namespace,)
        return _rows_from(self._read(sql + " ORDER BY seq", args))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _sqlite_schema() -> list[str]:
    return [s.format(pk="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL") for s in _SCHEMA]


def _busy(e: sqlite3.Error) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


class PostgresStore(FeedbackStore):
    """PostgreSQL through psycopg 3: each call is one committed transaction (durable by default).

    One connection behind a lock; a broken connection (server restarted) is reopened once per call.
    """

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigError("a postgresql:// store needs psycopg: pip install 'psycopg[binary]'") from None
        self._psycopg = psycopg
        self.url = url
        self._lock = threading.Lock()
        self._conn: Any = None

        def schema(cur: Any) -> None:
            cur.execute("SELECT pg_advisory_xact_lock(7130501)")  # concurrent first starts race on DDL
            for s in _SCHEMA:
                cur.execute(s.format(pk="BIGSERIAL PRIMARY KEY", real="DOUBLE PRECISION"))

        self._run(schema)

    def _run(self, fn: Callable[[Any], T]) -> T:
        """``fn(cursor)`` inside one transaction, committed on return; one reconnect if the link broke
        before anything was committed (a failed transaction is rolled back by the server)."""
        with self._lock:
            for attempt in (0, 1):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self._psycopg.connect(self.url, connect_timeout=10)
                    with self._conn.transaction(), self._conn.cursor() as cur:
                        return fn(cur)
                except self._psycopg.OperationalError as e:
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    if attempt == 1:
                        raise StoreError(f"PostgreSQL feedback store: {e}") from None
                except self._psycopg.Error as e:
                    raise StoreError(f"PostgreSQL feedback store: {e}") from None
        raise StoreError("PostgreSQL feedback store: unreachable")  # the loop returns or raises

    def add(self, namespace: str, user: str, ratings: Sequence[tuple[str, float]]) -> list[StoredRating]:
        now = time.time()

        def insert(cur: Any) -> list[StoredRating]:
            out = []
            for item, rating in ratings:
                cur.execute(
                    "INSERT INTO feedback (namespace, user_id, item_id, rating, created)"
                    " VALUES (%s, %s, %s, %s, %s) RETURNING seq",
                    (namespace, user, item, float(rating), now),
                )
                out.append(StoredRating(user, item, float(rating), now, int(cur.fetchone()[0])))
            return out

        return self._run(insert)

    def events(self, namespace: str, user: str) -> list[StoredRating]:
        def select(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(
                "SELECT user_id, item_id, rating, created, seq FROM feedback"
                " WHERE namespace = %s AND user_id = %s ORDER BY seq",
                (namespace, user),
            )
            return list(cur.fetchall())

        return [
            StoredRating(str(u), str(i), float(r), float(t), int(s)) for u, i, r, t, s in self._run(select)
        ]

    def rows(self, namespace: str | None = None) -> FeedbackRows:
        sql = "SELECT user_id, item_id, rating, created FROM feedback"
        args: tuple[Any, ...] = ()
        if namespace is not None:
            sql, args = sql + " WHERE namespace = %s", (namespace,)

        def select(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql + " ORDER BY seq", args)
            return list(cur.fetchall())

        return _rows_from(self._run(select))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def default_store_path() -> Path:
    """Where the embedded store lives when no URL is given: the data home, never the working directory."""
    from recengine.data.home import data_home

    return data_home() / "feedback.sqlite3"


def open_store(url: str | Path | None = None) -> FeedbackStore:
    """A store from a URL: ``postgresql://...``, ``sqlite://PATH`` (``sqlite:///abs/path``), or a plain
    file path; None opens the default SQLite file in the data home."""
    if url is None:
        return SQLiteStore(default_store_path())
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text)
    if text.startswith("sqlite://"):
        text = text[len("sqlite://") :]
    elif "://" in text:
        raise ConfigError(
            f"unknown feedback store URL {text!r}: use a file path, sqlite://PATH or postgresql://"
        )
    if not text:
        raise ConfigError("the feedback store URL names no file")
    return SQLiteStore(Path(text).expanduser() if text != ":memory:" else text)


# ----- training on feedback --------------------------------------------------------------------------


def feedback_namespace(dataset: str, scale: RatingScale | None) -> str:
    """Where feedback for models of ``dataset`` taking ratings on ``scale`` is kept: the data set's
    name, and apart from it (``NAME:labels``) for models that take 0/1 labels, whose likes must not
    meet another model's stars (nor its stars them)."""
    return f"{dataset}:labels" if scale is not None and scale.is_binary else dataset


def feedback_interactions(store: FeedbackStore | str | Path, namespace: str | None = None) -> FeedbackRows:
    """Every stored rating (of data set ``namespace``, or all) as columns, for training.

    Accepts an open store or a store URL (which is opened and closed here)."""
    if isinstance(store, FeedbackStore):
        return store.rows(namespace)
    with open_store(store) as s:
        return s.rows(namespace)


def merge_feedback(train: Interactions, feedback: FeedbackRows) -> Interactions:
    """``train`` plus the feedback ratings, the feedback winning over a training rating of the same
    (user, item) pair and a later feedback event over an earlier one.

    Feedback users and items not in ``train`` get new ids after the known ones (known ids keep their
    numbers); ids are read as integers where the training map is numeric and every feedback id parses
    as one, else the maps become text. Feedback outside the training data's rating scale is an error
    (the server never stores such a rating).
    """
    if len(feedback) == 0:
        return train
    if train.rating is None:
        raise ConfigError("the training data is implicit; feedback ratings need explicit training data")
    users = _ids_like(train.users, feedback.user)
    items = _ids_like(train.items, feedback.item)
    u_ext = np.concatenate([_as(train.users, users).external[train.user], users])
    i_ext = np.concatenate([_as(train.items, items).external[train.item], items])
    ratings = np.concatenate([train.rating, feedback.rating]).astype(np.float32)
    # Feedback is newer than every training row: order alone decides, timestamps or not (ties keep
    # the later row). Times are kept as posted, so ratings posted together stay one session.
    n = len(train)
    if train.timestamp is not None:
        newest = int(train.timestamp.max()) if n else 0
        fb_ts = np.maximum(np.floor(feedback.created).astype(np.int64), newest + 1)
        timestamps: npt.NDArray[np.int64] | None = np.concatenate([train.timestamp, fb_ts])
    else:
        timestamps = None
    umap = _extended(_as(train.users, users), users)
    imap = _extended(_as(train.items, items), items)
    return Interactions.from_arrays(
        u_ext, i_ext, ratings, timestamps, scale=train.scale, user_map=umap, item_map=imap
    )


def _ids_like(idmap: IdMap, ids: npt.NDArray[np.str_]) -> np.ndarray:
    """Feedback ids (text) as integers when the map is numeric and they all parse, else as text."""
    if idmap.is_numeric:
        try:
            return np.array([int(x) for x in ids], dtype=np.int64)
        except (ValueError, OverflowError):
            pass
    return ids.astype(str)


def _as(idmap: IdMap, ids: np.ndarray) -> IdMap:
    """``idmap`` itself, or a text copy of it when the feedback ids are text."""
    if idmap.is_numeric and ids.dtype.kind not in "iu":
        return IdMap(idmap.external.astype(str), idmap.name)
    return idmap


def _extended(idmap: IdMap, ids: np.ndarray) -> IdMap:
    """``idmap`` with the unknown ``ids`` appended (text ids keep their full length)."""
    fresh = np.unique(ids[~idmap.contains(ids)])
    if len(fresh) == 0:
        return idmap
    return IdMap(np.concatenate([idmap.external, fresh]), idmap.name)  # text widens to the longest id
