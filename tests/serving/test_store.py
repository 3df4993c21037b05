"""The feedback store: latest rating wins, namespaces apart, durable across reopen, nothing lost under
concurrent writers; the same contract for SQLite and (where a local server can be started) PostgreSQL."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recengine.data.interactions import Interactions, RatingScale
from recengine.errors import ConfigError, DataError
from recengine.serving.store import (
    FeedbackRows,
    FeedbackStore,
    PostgresStore,
    SQLiteStore,
    feedback_interactions,
    merge_feedback,
    open_store,
)
from tests.serving.fixtures import free_port


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server (Debian's ``postgresql`` package), or skip."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="recengine-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(root / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot start a local PostgreSQL server: {e}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'fb.sqlite3'}"
        return
    url = request.getfixturevalue("postgres_url")
    pg = PostgresStore(url)  # a clean table for each test
    pg._run(lambda cur: cur.execute("TRUNCATE feedback"))
    pg.close()
    yield url


def test_latest_rating_per_item_wins(store_url: str) -> None:
    with open_store(store_url) as s:
        s.add("ml", "7", [("1", 4.0), ("2", 3.0)])
        s.add("ml", "7", [("1", 2.0)])
        latest = s.user_ratings("ml", "7")
        assert [(r.item, r.rating) for r in latest] == [("2", 3.0), ("1", 2.0)]
        assert len(s.events("ml", "7")) == 3
        assert s.user_ratings("ml", "8") == []


def test_namespaces_are_apart_and_rows_in_log_order(store_url: str) -> None:
    with open_store(store_url) as s:
        s.add("a", "u", [("1", 5.0)])
        s.add("b", "u", [("2", 1.0)])
        s.add("a", "v", [("3", 2.5)])
        assert [r.item for r in s.user_ratings("a", "u")] == ["1"]
        rows = s.rows("a")
        assert rows.user.tolist() == ["u", "v"] and rows.item.tolist() == ["1", "3"]
        assert rows.rating.tolist() == [5.0, 2.5]
        assert len(s.rows()) == 3 and s.count("b") == 1


def test_ratings_survive_reopen(store_url: str) -> None:
    with open_store(store_url) as s:
        stored = s.add("ml", "1", [("50", 5.0)])
        assert stored[0].seq > 0 and stored[0].created > 0
    with open_store(store_url) as s:
        assert [(r.item, r.rating) for r in s.user_ratings("ml", "1")] == [("50", 5.0)]


def test_concurrent_writers_lose_nothing(store_url: str) -> None:
    """Eight threads on one store object plus two more store objects (as other processes would
    open the same database), each writing 40 ratings one transaction at a time."""
    stores = [open_store(store_url) for _ in range(3)]
    errors: list[BaseException] = []

    def writer(s: FeedbackStore, w: int) -> None:
        try:
            for n in range(40):
                s.add("ml", f"w{w}", [(str(n), 1.0 + n % 5)])
        except Exception as e:  # collected, then reported by the test thread
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(stores[w % 3], w)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = stores[0].rows("ml")
    assert len(rows) == 8 * 40
    for w in range(8):
        assert len(stores[1].user_ratings("ml", f"w{w}")) == 40
    for s in stores:
        s.close()


def test_sqlite_is_wal_and_fully_synchronous(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "f.sqlite3") as s:
        assert isinstance(s, SQLiteStore)
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_open_store_urls(tmp_path: Path) -> None:
    for url in (str(tmp_path / "a.db"), f"sqlite://{tmp_path / 'b.db'}", tmp_path / "c.db"):
        with open_store(url) as s:
            assert isinstance(s, SQLiteStore)
    assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()
    with pytest.raises(ConfigError, match="unknown feedback store URL"):
        open_store("mysql://x")
    with pytest.raises(ConfigError, match="names no file"):
        open_store("sqlite://")


def test_default_store_is_in_the_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECENGINE_DATA", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with open_store(None) as s:
        s.add("ml", "1", [("1", 3.0)])
    assert (tmp_path / "home" / "feedback.sqlite3").exists()
    assert not list(Path.cwd().glob("*.sqlite3"))  # never the working directory


# ----- training on feedback ------------------------------------------------------------------------
def _train() -> Interactions:
    return Interactions.from_arrays(
        [1, 1, 2], [10, 20, 10], [4.0, 3.0, 5.0], [100, 101, 102], scale=RatingScale(1.0, 5.0, 1.0)
    )


def test_merge_feedback_overrides_and_extends() -> None:
    fb = FeedbackRows(
        user=np.array(["1", "3", "1"]),
        item=np.array(["20", "30", "20"]),
        rating=np.array([1.0, 2.0, 5.0], dtype=np.float32),
        created=np.array([1.0, 2.0, 3.0]),
    )
    merged = merge_feedback(_train(), fb)
    assert merged.users.is_numeric and merged.items.is_numeric
    assert merged.users.to_list() == [1, 2, 3] and merged.items.to_list() == [10, 20, 30]
    got = {
        (int(merged.users.external[u]), int(merged.items.external[i])): float(r)
        for u, i, r in zip(merged.user, merged.item, merged.values(), strict=True)
    }
    assert got == {(1, 10): 4.0, (1, 20): 5.0, (2, 10): 5.0, (3, 30): 2.0}  # the latest feedback wins


def test_merged_feedback_keeps_the_times_it_was_posted_at() -> None:
    """Ratings posted in one second stay in one second and a real gap stays (sessions read them);
    feedback older than the training data moves just after it."""
    fb = FeedbackRows(
        user=np.array(["7", "7", "8", "8"]),
        item=np.array(["10", "20", "10", "20"]),
        rating=np.array([4.0, 2.0, 3.0, 5.0], dtype=np.float32),
        created=np.array([1000.2, 1000.7, 1030.0, 50.0]),
    )
    merged = merge_feedback(_train(), fb)
    assert merged.timestamp is not None
    when = {
        (int(merged.users.external[u]), int(merged.items.external[i])): int(t)
        for u, i, t in zip(merged.user, merged.item, merged.timestamp, strict=True)
    }
    assert when[(7, 10)] == when[(7, 20)] == 1000 and when[(8, 10)] == 1030 and when[(8, 20)] == 103


def test_merge_feedback_text_users_and_checks() -> None:
    fb = FeedbackRows(
        user=np.array(["web-alice"]),
        item=np.array(["10"]),
        rating=np.array([2.0], np.float32),
        created=np.ones(1),
    )
    merged = merge_feedback(_train(), fb)
    assert not merged.users.is_numeric and "web-alice" in merged.users.to_list()
    assert merged.items.is_numeric and len(merged) == 4
    train = _train()
    empty = FeedbackRows(np.zeros(0, str), np.zeros(0, str), np.zeros(0, np.float32), np.zeros(0))
    assert merge_feedback(train, empty) is train
    bad = FeedbackRows(np.array(["1"]), np.array(["10"]), np.array([9.0], np.float32), np.ones(1))
    with pytest.raises(DataError, match="outside"):
        merge_feedback(_train(), bad)


def test_feedback_interactions_from_url(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'fb.sqlite3'}"
    with open_store(url) as s:
        s.add("ml-100k", "1", [("10", 1.0)])
        s.add("other", "1", [("10", 5.0)])
    rows = feedback_interactions(url, "ml-100k")
    assert len(rows) == 1 and rows.rating.tolist() == [1.0]
    merged = merge_feedback(_train(), rows)
    assert float(merged.values()[(merged.user == 0) & (merged.item == 0)][0]) == 1.0
