"""The generic reader: each format, header aliases, string ids, implicit data, scales and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recengine.data.generic import read_interactions
from recengine.data.interactions import RatingScale
from recengine.data.load import load_dataset
from recengine.errors import DataError


def ext_pairs(ds_path: Path, **kw: object) -> list[tuple[object, object]]:
    inter = read_interactions(ds_path, **kw).interactions  # type: ignore[arg-type]
    return list(
        zip(
            inter.users.to_external(inter.user).tolist(),
            inter.items.to_external(inter.item).tolist(),
            strict=True,
        )
    )


def test_csv_with_aliases_and_string_ids(tmp_path: Path) -> None:
    p = tmp_path / "events.csv"
    p.write_text(
        "Timestamp,ItemId,UserID,Score,note\n2020-01-01,sku-1,alice,4,x\n2020-01-02 10:00:00,sku-2,bob,5,y\n"
    )
    ds = read_interactions(p)
    inter = ds.interactions
    assert (ds.layout, ds.name, ds.path) == ("generic", "events", p)
    assert ext_pairs(p) == [("alice", "sku-1"), ("bob", "sku-2")]
    assert inter.rating is not None and inter.rating.tolist() == [4.0, 5.0]
    assert inter.timestamp is not None and inter.timestamp.tolist() == [1577836800, 1577959200]
    assert inter.scale == RatingScale(4.0, 5.0, 1.0)  # inferred


@pytest.mark.parametrize(
    ("user", "item", "rating", "ts"),
    [
        ("userId", "movieId", "rating", "timestamp"),
        ("user_id", "item_id", "stars", "time"),
        ("uid", "iid", "value", "ts"),
        ("customer_id", "product_id", "score", "datetime"),
        ("visitorid", "itemid", "RATING", "date"),
        ("USER", "Movie_Id", "Stars", "TS"),
    ],
)
def test_header_aliases(tmp_path: Path, user: str, item: str, rating: str, ts: str) -> None:
    p = tmp_path / "r.csv"
    p.write_text(f"{ts},{rating},{item},{user}\n100,3.5,7,1\n200,4.5,8,2\n")
    inter = read_interactions(p).interactions
    assert ext_pairs(p) == [(1, 7), (2, 8)]
    assert inter.rating is not None and inter.rating.tolist() == [3.5, 4.5]
    assert inter.scale is not None and inter.scale.step == 0.5
    assert inter.timestamp is not None and inter.timestamp.tolist() == [100, 200]


def test_tsv_without_header_and_explicit_mapping(tmp_path: Path) -> None:
    p = tmp_path / "r.tsv"
    p.write_text("1\t10\t3\t100\n2\t20\t4\t200\n")
    assert ext_pairs(p, header=False) == [(1, 10), (2, 20)]
    swapped = ext_pairs(p, header=False, user_col=1, item_col=0, rating_col=2, timestamp_col=3)
    assert swapped == [(10, 1), (20, 2)]
    q = tmp_path / "r.txt"
    q.write_text("a;b;c\nu1;i1;2\n")
    inter = read_interactions(q, user_col="A", item_col="b", rating_col="c", sep=";").interactions
    assert inter.users.to_list() == ["u1"] and inter.items.to_list() == ["i1"]


def test_implicit_data(tmp_path: Path) -> None:
    p = tmp_path / "clicks.csv"
    p.write_text("visitorid,itemid,rating\n1,5,9\n1,6,9\n2,5,9\n")
    inter = read_interactions(p, implicit=True).interactions
    assert inter.rating is None and not inter.is_explicit and len(inter) == 3
    assert inter.csr().toarray().tolist() == [[1.0, 1.0], [1.0, 0.0]]
    q = tmp_path / "pairs.csv"
    q.write_text("1,5\n2,6\n")
    assert len(read_interactions(q, header=False, implicit=True).interactions) == 2


def test_declared_scale_is_checked(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("user,item,rating\n1,2,3\n1,3,10\n")
    assert read_interactions(p).interactions.scale == RatingScale(3.0, 10.0, 1.0)
    with pytest.raises(DataError, match=r"r\.csv, line 3: rating 10 is outside the declared scale 1–5"):
        read_interactions(p, scale=RatingScale(1, 5, 1))


def test_parquet(tmp_path: Path) -> None:
    p = tmp_path / "r.parquet"
    times = pl.Series(["2020-01-01 00:00:00", "2021-01-01 00:00:00"]).str.to_datetime()
    pl.DataFrame(
        {"customer_id": ["x", "y"], "product_id": [5, 6], "stars": [1.0, 2.0], "date": times}
    ).write_parquet(p)
    inter = read_interactions(p).interactions
    assert ext_pairs(p) == [("x", 5), ("y", 6)]
    assert inter.timestamp is not None and inter.timestamp.tolist() == [1577836800, 1609459200]
    q = tmp_path / "data.bin"
    q.write_bytes(p.read_bytes())
    assert len(read_interactions(q, fmt="parquet").interactions) == 2


@pytest.mark.parametrize(
    ("columns", "pattern"),
    [
        ({"rating": ["3", "good"]}, r"r\.parquet, row 2: rating must be a number, found 'good'"),
        ({"rating": [3.0, None]}, r"r\.parquet, row 2: rating is missing or not a number"),
        ({"user": [1, None]}, r"r\.parquet, row 2: user id is empty"),
        ({"rating": [3.0, 2.5]}, r"r\.parquet, row 2: rating 2\.5 is outside the declared scale"),
    ],
)
def test_parquet_errors_name_the_row(tmp_path: Path, columns: dict[str, list[object]], pattern: str) -> None:
    p = tmp_path / "r.parquet"
    pl.DataFrame({"user": [1, 2], "item": [5, 6], "rating": [3.0, 4.0]} | columns).write_parquet(p)
    with pytest.raises(DataError, match=pattern) as err:
        read_interactions(p, scale=RatingScale(1, 5, 1))
    assert err.value.line == 2 and err.value.unit == "row" and "line" not in str(err.value)


def test_a_parquet_file_without_rows_names_no_line(tmp_path: Path) -> None:
    p = tmp_path / "r.parquet"
    pl.DataFrame({"user": [], "item": [], "rating": []}).write_parquet(p)
    with pytest.raises(DataError, match=r"^[^,]*r\.parquet: the file holds no data rows$"):
        read_interactions(p)
    p.write_bytes(b"")
    with pytest.raises(DataError, match=r"r\.parquet: the file is empty$"):
        read_interactions(p)


def test_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    rows = [{"user": "a", "item": 1, "rating": 3, "ts": 5}, {"user": "b", "item": 2, "rating": 4.5, "ts": 6}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    inter = read_interactions(p).interactions
    assert ext_pairs(p) == [("a", 1), ("b", 2)]
    assert inter.scale == RatingScale(3.0, 4.5, 0.5)


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    p.write_text('{"user": 1, "item": 2, "rating": 3}\n\n{"user": 1, "item": 3, "rating": null}\n')
    with pytest.raises(DataError, match=r"r\.jsonl, line 3: rating is missing"):
        read_interactions(p)
    p.write_text('{"user": 1, "item": 2, "rating": 3}\n{"user": 1, "item"\n')
    with pytest.raises(DataError, match=r"r\.jsonl, line 2: not valid JSON \(.* at column 19\)"):
        read_interactions(p)  # the column on that line, not the newline's on the next


def test_a_column_of_lists_is_no_id_column(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    p.write_text('{"u": [1], "i": 2, "r": 4}\n{"u": [2], "i": 3, "r": 5}\n')
    with pytest.raises(DataError, match=r"r\.jsonl, line 1: the user column holds List values"):
        read_interactions(p, user_col="u", item_col="i", rating_col="r")


def test_ids_keep_leading_zeros_as_strings(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("user,item,rating\n007,0012,1\n7,12,2\n")
    inter = read_interactions(p).interactions
    assert inter.n_users == 2 and inter.users.to_list() == ["007", "7"]


def test_string_ids_load_with_integer_looking_queries(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("user,item,rating\n1,10,1\n2,20,2\n")
    inter = read_interactions(p).interactions
    assert inter.users.is_numeric
    assert inter.users.to_internal(["2"]).tolist() == [1]


def test_dataset_csv_matches_movielens_reader(mlsmall_dir: Path) -> None:
    generic = read_interactions(mlsmall_dir / "ratings.csv").interactions
    ml = load_dataset(mlsmall_dir).interactions
    assert len(generic) == len(ml) and generic.users == ml.users and generic.items == ml.items
    assert np.array_equal(generic.values(), ml.values())


def test_load_dataset_uses_the_generic_reader_for_other_files(tmp_path: Path) -> None:
    p = tmp_path / "mine.csv"
    p.write_text("user,item,rating\n1,2,3\n")
    assert load_dataset(p).layout == "generic"


@pytest.mark.parametrize(
    ("name", "body", "kw", "pattern"),
    [
        (
            "r.csv",
            "user,product,rating\n1,2,3\n",
            {},
            r"r\.csv: no item column .*file has columns: user, product, rating",
        ),
        ("r.csv", "user,item\n1,2\n", {}, r"no rating column.*implicit"),
        (
            "r.csv",
            "user,item,rating\n1,2,3\n",
            {"item_col": "sku"},
            r"no column 'sku' for the item; the file has columns",
        ),
        ("r.csv", "user,item,rating\n1,2,3\n", {"user_col": 7}, r"user column 7 is out of range"),
        ("r.csv", "user,item,rating\n1,2,3\n4,5\n", {}, r"r\.csv, line 3: expected 3 fields"),
        ("r.csv", "user,item,rating\n1,2,3\n4,5,3,9\n", {}, r"r\.csv, line 3: expected 3 fields"),
        (
            "r.csv",
            "user,item,rating\n1,2,3\n4,5,good\n",
            {},
            r"r\.csv, line 3: rating must be a number, found 'good'",
        ),
        ("r.csv", "user,item,rating\n1,,3\n", {}, r"r\.csv, line 2: field 'item' is empty"),
        (
            "r.csv",
            "user,item,rating,time\n1,2,3,soon\n",
            {},
            r"line 2: timestamp 'soon' is neither unix seconds",
        ),
        (  # the line of the bad time, not of the first time that is no date
            "r.csv",
            "user,item,rating,time\n1,2,3,1000\n1,3,3,soon\n",
            {},
            r"line 3: timestamp 'soon' is neither unix seconds",
        ),
        (
            "r.csv",
            "user,item,rating,time\n1,2,3,2024-05-01\n1,3,3,1000.5\n",
            {},
            r"line 2: the timestamps mix unix seconds \('1000.5', line 3\) and dates/times",
        ),
        (
            "r.csv",
            "user,item,rating,time\n1,2,3,1e300\n",
            {},
            r"line 2: timestamp 1e\+300 is beyond any time",
        ),
        ("r.csv", "", {}, r"r\.csv, line 1: the file is empty"),
        ("r.csv", "user,item,rating\n", {}, r"r\.csv, line 2: the file holds no data rows after the header"),
        ("r.xlsx", "user,item\n", {}, r"unknown file type '\.xlsx'"),
        ("r.csv", "user,item\n1,2\n", {"fmt": "xml"}, r"unknown format 'xml'"),
        ("r.parquet", "not parquet", {}, r"r\.parquet: not a readable Parquet file"),
    ],
)
def test_errors(tmp_path: Path, name: str, body: str, kw: dict[str, object], pattern: str) -> None:
    p = tmp_path / name
    p.write_text(body)
    with pytest.raises(DataError, match=pattern):
        read_interactions(p, **kw)  # type: ignore[arg-type]


def test_a_column_named_twice_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("user,item,rating,rating\n1,10,4,3\n")
    with pytest.raises(DataError, match=r"r\.csv, line 1: column 'rating' appears twice in the header"):
        read_interactions(p)
    p.write_text("user,item,rating,note,note\n1,10,4,a,b\n")  # unused columns may repeat
    assert read_interactions(p).interactions.values().tolist() == [4.0]


def test_messages_for_misread_headers(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("user,item,rating\n1,10,4\n")
    with pytest.raises(DataError, match=r"one column: is the separator right\?"):
        read_interactions(p, sep=";")
    with pytest.raises(DataError, match="column 'user' is given as the user and item; each role needs"):
        read_interactions(p, user_col="user", item_col="user")


def test_ids_longer_than_the_api_takes_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text(f"user,item,rating\n1,10,4\n2,{'9' * 2_000},5\n")  # not an int64: read as text
    with pytest.raises(DataError, match=r"r\.csv, line 3: item id is 2,000 characters long"):
        read_interactions(p)
    p.write_text(f"user,item,rating\n1,{'x' * 200},4\n")
    assert len(read_interactions(p).interactions.items.external[0]) == 200
