"""MovieLens readers: the real ml-latest-small and ml-100k, and small files written in the exact
ml-1m, ml-10m, ml-20m and ml-25m layouts (those cannot be downloaded here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recengine.data.home import dataset_dir
from recengine.data.load import detect_layout, load_dataset, read_dataset
from recengine.data.movielens import read_ml100k, read_ml100k_split, read_movielens_csv
from recengine.errors import DataError

# --------------------------------------------------------------------------------------------------
# Layout fixtures written by the tests


def write_ml1m(root: Path) -> Path:
    d = root / "ml-1m"
    d.mkdir()
    (d / "ratings.dat").write_text(
        "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::2::2::978299000\n"
    )
    movies = (
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "2::Misérables, Les (1995)::Drama|Musical\n"
    )
    (d / "movies.dat").write_bytes(movies.encode("latin-1"))
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    return d


def write_ml10m(root: Path) -> Path:
    d = root / "ml-10M100K"
    d.mkdir()
    (d / "ratings.dat").write_text("1::122::5::838985046\n1::185::4.5::838983525\n2::4::0.5::838983000\n")
    movies = (
        "122::Boomerang (1992)::Comedy|Romance\n"
        "185::Net, The (1995)::Action|Crime|Thriller\n"
        "4::Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)::Comedy|Romance\n"
    )
    (d / "movies.dat").write_bytes(movies.encode("utf-8"))
    (d / "tags.dat").write_text("15::4::excellent!::1215184630\n20::122::dark hero::1188263867\n")
    return d


def write_csv_layout(root: Path, name: str, genome: bool = True) -> Path:
    d = root / name
    d.mkdir()
    (d / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,3.5,1112484676\n2,11,4.0,974820598\n"
        "2,2,0.5,974820691\n"
    )
    (d / "movies.csv").write_text(
        "movieId,title,genres\n"
        "2,Jumanji (1995),Adventure|Children|Fantasy\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        '29,"City of Lost Children, The (Cité des enfants perdus, La) (1995) ",Adventure|Drama|Sci-Fi\n'
        "40697,Babylon 5,Sci-Fi\n"
        "143410,Hyena Road,(no genres listed)\n"
        "150000,Fawlty Towers (1975-1979),Comedy\n"
    )
    (d / "tags.csv").write_text(
        'userId,movieId,tag,timestamp\n18,2,"Mark Waters, director",1240597180\n65,11,dark hero,1368150078\n'
    )
    (d / "links.csv").write_text("movieId,imdbId,tmdbId\n2,0113497,8844\n11,0112346,9087\n29,0112682,\n")
    if genome:
        (d / "genome-scores.csv").write_text("movieId,tagId,relevance\n2,1,0.025\n")
    return d


# --------------------------------------------------------------------------------------------------
# Real data


def test_ml_latest_small(mlsmall_dir: Path) -> None:
    ds = read_dataset(mlsmall_dir)
    inter = ds.interactions
    assert (ds.layout, ds.name, ds.path) == ("ml-latest-small", "ml-latest-small", mlsmall_dir)
    assert (len(inter), inter.n_users, inter.n_items) == (100_836, 610, 9_724)
    assert inter.report.duplicates_removed == 0
    assert (inter.scale.low, inter.scale.high, inter.scale.step) == (0.5, 5.0, 0.5)  # type: ignore[union-attr]
    # first row of ratings.csv: 1,1,4.0,964982703
    assert inter.users.to_external(inter.user[:1])[0] == 1
    assert inter.items.to_external(inter.item[:1])[0] == 1
    assert (float(inter.values()[0]), int(inter.timestamp[0])) == (4.0, 964982703)  # type: ignore[index]
    items = ds.items
    assert items is not None and items.height == 9_742
    toy = items.filter(pl.col("item") == 1).row(0, named=True)
    assert toy["title"] == "Toy Story" and toy["year"] == 1995
    assert toy["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert (toy["imdb_id"], toy["tmdb_id"]) == ("0114709", 862)
    assert items.schema["year"] == pl.Int32 and items.schema["genres"] == pl.List(pl.Utf8)
    dusk = items.filter(pl.col("item") == 27008).row(0, named=True)  # trailing space after the year
    assert (dusk["title"], dusk["year"]) == ("From Dusk Till Dawn 2: Texas Blood Money", 1999)
    babylon = items.filter(pl.col("item") == 40697).row(0, named=True)
    assert (babylon["title"], babylon["year"]) == ("Babylon 5", None)
    assert items.filter(pl.col("item") == 143410)["genres"].to_list() == [[]]
    tags = ds.tags
    assert tags is not None and tags.height == 3_683
    assert tags.row(0) == (2, 60756, "funny", 1445714994)
    assert ds.users is None


def test_ml100k(ml100k_dir: Path) -> None:
    ds = read_ml100k(ml100k_dir)
    inter = ds.interactions
    assert ds.layout == "ml-100k"
    assert (len(inter), inter.n_users, inter.n_items) == (100_000, 943, 1_682)
    assert str(inter.scale) == "1–5 step 1"
    assert inter.users.to_external(inter.user[:1])[0] == 196  # u.data starts "196	242	3	881250949"
    items = ds.items
    assert items is not None and items.height == 1_682
    mis = items.filter(pl.col("item") == 543).row(0, named=True)  # Latin-1 é
    assert (mis["title"], mis["year"]) == ("Misérables, Les", 1995)
    toy = items.filter(pl.col("item") == 1).row(0, named=True)
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]
    assert str(toy["release_date"]) == "1995-01-01" and toy["imdb_url"].startswith("http://us.imdb.com/")
    unknown = items.filter(pl.col("item") == 267).row(0, named=True)
    assert (unknown["title"], unknown["year"], unknown["genres"]) == ("unknown", None, ["unknown"])
    users = ds.users
    assert users is not None and users.height == 943
    assert users.row(0) == (1, 24, "M", "technician", "85711")
    assert users.columns == ["user", "age", "gender", "occupation", "zip"]


def test_ml100k_splits_share_the_maps(ml100k_dir: Path) -> None:
    full = read_ml100k(ml100k_dir).interactions
    base = read_ml100k_split(ml100k_dir / "u1.base", full.users, full.items)
    test = read_ml100k_split(ml100k_dir / "u1.test", full.users, full.items)
    assert (len(base), len(test)) == (80_000, 20_000)
    assert base.users is full.users and test.items is full.items
    assert base.csr().shape == test.csr().shape == (943, 1_682)
    ua = read_ml100k_split(ml100k_dir / "ua.test", full.users, full.items)
    assert len(ua) == 9_430 and bool(np.all(ua.user_counts() == 10))


def test_load_by_path_and_ratings_file(mlsmall_dir: Path, ml100k_dir: Path) -> None:
    assert load_dataset(mlsmall_dir / "ratings.csv").layout == "ml-latest-small"
    assert len(load_dataset(str(ml100k_dir / "u.data")).interactions) == 100_000


def test_a_file_of_ones_own_called_ratings_csv_is_read_as_such(tmp_path: Path) -> None:
    """Only a file that starts as MovieLens' do is read with its directory as MovieLens."""
    own = tmp_path / "ratings.csv"
    own.write_text("user,item,rating\n196,242,3\n186,302,3\n")
    ds = load_dataset(own)
    assert len(ds.interactions) == 2 and ds.layout != "ml-latest-small"


# --------------------------------------------------------------------------------------------------
# Written layouts


def test_ml1m_layout(tmp_path: Path) -> None:
    d = write_ml1m(tmp_path)
    assert detect_layout(d) == "ml-1m"
    ds = read_dataset(d)
    assert ds.layout == "ml-1m" and len(ds.interactions) == 4 and ds.interactions.n_users == 2
    items = ds.items
    assert items is not None
    mis = items.filter(pl.col("item") == 2).row(0, named=True)
    assert (mis["title"], mis["year"], mis["genres"]) == ("Misérables, Les", 1995, ["Drama", "Musical"])
    assert ds.users is not None
    assert ds.users.rows() == [(1, 1, "F", "K-12 student", "48067"), (2, 56, "M", "self-employed", "70072")]


def test_ml10m_layout(tmp_path: Path) -> None:
    d = write_ml10m(tmp_path)
    assert detect_layout(d) == "ml-10m"
    ds = read_dataset(d)
    assert str(ds.interactions.scale) == "0.5–5 step 0.5"
    assert sorted(ds.interactions.values().tolist()) == [0.5, 4.5, 5.0]
    items = ds.items
    assert items is not None
    amelie = items.filter(pl.col("item") == 4).row(0, named=True)
    assert amelie["title"] == "Amélie (Fabuleux destin d'Amélie Poulain, Le)" and amelie["year"] == 2001
    assert ds.tags is not None and ds.tags.row(0) == (15, 4, "excellent!", 1215184630)
    assert ds.users is None


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m"])
def test_csv_layouts(tmp_path: Path, name: str) -> None:
    d = write_csv_layout(tmp_path, name)
    assert detect_layout(d) == name
    ds = read_dataset(d)
    assert ds.layout == name and len(ds.interactions) == 4
    items = ds.items
    assert items is not None
    rows = {r["item"]: r for r in items.iter_rows(named=True)}
    assert (rows[11]["title"], rows[11]["year"]) == ("American President, The", 1995)
    assert rows[29]["title"] == "City of Lost Children, The (Cité des enfants perdus, La)"
    assert (rows[40697]["title"], rows[40697]["year"]) == ("Babylon 5", None)
    assert rows[143410]["genres"] == []
    assert (rows[150000]["title"], rows[150000]["year"]) == ("Fawlty Towers", 1975)
    assert (rows[29]["imdb_id"], rows[29]["tmdb_id"]) == ("0112682", None)
    assert rows[40697]["imdb_id"] is None  # no links row
    assert ds.tags is not None and ds.tags["tag"].to_list() == ["Mark Waters, director", "dark hero"]


def test_detect_layout_without_telling_names(tmp_path: Path) -> None:
    a = write_csv_layout(tmp_path, "mine", genome=False)
    assert detect_layout(a) == "ml-latest-small"
    b = write_csv_layout(tmp_path, "full", genome=True)
    assert detect_layout(b) == "movielens-csv"
    assert read_dataset(b).layout == "movielens-csv"
    one = write_ml1m(tmp_path).rename(tmp_path / "one")
    assert detect_layout(one) == "ml-1m"  # users.dat tells ml-1m
    ten = write_ml10m(tmp_path).rename(tmp_path / "ten")
    assert detect_layout(ten) == "ml-10m"
    assert detect_layout(write_csv_layout(tmp_path, "ml-latest")) == "ml-latest"


def test_unknown_layout_names_the_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"u\.data, ratings\.dat, ratings\.csv"):
        read_dataset(tmp_path)


def test_load_by_name_from_the_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECENGINE_DATA", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    write_csv_layout(tmp_path / "home", "ml-25m")
    ds = load_dataset("ml-25m")
    assert (ds.name, ds.layout, ds.path) == ("ml-25m", "ml-25m", dataset_dir("ml-25m"))
    with pytest.raises(DataError, match=r"recengine data fetch ml-20m"):
        load_dataset("ml-20m")


def test_duplicates_keep_the_latest(tmp_path: Path) -> None:
    d = write_csv_layout(tmp_path, "ml-latest-small")
    (d / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,2,4.0,200\n1,2,1.0,100\n1,11,2.0,50\n1,11,3.0,50\n2,2,5.0,1\n"
    )
    inter = read_dataset(d).interactions
    assert len(inter) == 3 and inter.report.duplicates_removed == 2 and inter.report.rows_read == 5
    got = {
        (int(u), int(i)): float(r)
        for u, i, r in zip(
            inter.users.to_external(inter.user),
            inter.items.to_external(inter.item),
            inter.values(),
            strict=True,
        )
    }
    assert got == {(1, 2): 4.0, (1, 11): 3.0, (2, 2): 5.0}  # later timestamp wins; a tie: later line wins


# --------------------------------------------------------------------------------------------------
# Bad input: every error names the file and the line

HEADER = "userId,movieId,rating,timestamp\n"


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        (HEADER + "1,2,3.5,10\n1,3,4.0,11,12\n", 3, "expected 4 fields"),
        (HEADER + "1,2,3.5,10\n1,3,4.0\n", 3, "expected 4 fields"),
        (HEADER + "1,2,3.5,10\n1,x,4.0,11\n", 3, "'item' must be an integer, found 'x'"),
        (HEADER + "1,2,3.5,10\n1,3,2.5,11\n7.5,3,4.0,11\n", 4, "'user' must be an integer"),
        (HEADER + "1,2,good,10\n", 2, "'rating' must be a number, found 'good'"),
        (HEADER + "1,2,3.5,10\n1,3,4.0,yesterday\n", 3, "'timestamp' must be an integer"),
        (HEADER + "1,2,3.5,10\n1,3,6.0,11\n", 3, "outside the declared scale"),
        (HEADER + "1,2,3.5,10\n1,3,3.25,11\n", 3, "outside the declared scale"),
        (HEADER + "1,2,3.5,10\n1,3,nan,11\n", 3, "not a number"),
        (HEADER + "1,2,3.5,10\n1,3,,11\n", 3, "'rating' is empty"),
        (HEADER + "1,2,3.5,10\n\n1,3,4.0,11\n", 3, "empty line"),
        (HEADER + "1,2,3.5,10\n1,3,4.0,11\xff\n", 3, "not valid utf-8"),
        (HEADER, 2, "no data rows"),
        ("", 1, "empty"),
        ("user,item,rating,time\n1,2,3.5,10\n", 1, "expected the header"),
        ("1,2,3.5,10\n", 1, "expected the header"),
    ],
)
def test_bad_ratings_csv(tmp_path: Path, body: str, line: int, what: str) -> None:
    d = write_csv_layout(tmp_path, "ml-latest-small")
    (d / "ratings.csv").write_bytes(body.encode("latin-1"))
    with pytest.raises(DataError) as err:
        read_dataset(d)
    msg = str(err.value)
    assert f"ratings.csv, line {line}: " in msg and what in msg, msg
    assert err.value.line == line and err.value.path == str(d / "ratings.csv")


def test_trailing_blank_lines_and_crlf_are_fine(tmp_path: Path) -> None:
    d = write_csv_layout(tmp_path, "ml-latest-small")
    (d / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\r\n1,2,3.5,10\r\n2,2,4.0,11\r\n\r\n\n")
    assert len(read_dataset(d).interactions) == 2


def test_invalid_utf8_in_movies_csv(tmp_path: Path) -> None:
    d = write_csv_layout(tmp_path, "ml-20m")
    (d / "movies.csv").write_bytes(
        b"movieId,title,genres\n2,Jumanji (1995),Comedy\n11,Caf\xe9 (1990),Drama\n"
    )
    with pytest.raises(DataError, match=r"movies\.csv, line 3: not valid utf-8 \(byte 0xe9"):
        read_dataset(d)


@pytest.mark.parametrize(
    ("file", "body", "line", "what"),
    [
        ("ratings.dat", "1::1193::5::978300760\n1::661::3\n", 2, "expected 4 fields"),
        ("ratings.dat", "1::1193::5::978300760\n1::661::x::978300760\n", 2, "'rating' must be a number"),
        ("ratings.dat", "1::1193::5::978300760\n1::661::0::978300760\n", 2, "outside the declared scale 1–5"),
        ("users.dat", "1::F::1::10::48067\n2::M::old::16::70072\n", 2, "'age' must be an integer"),
        ("movies.dat", "1193::Nest (1975)::Drama\n661\n", 2, "expected 3 fields"),
    ],
)
def test_bad_ml1m_files(tmp_path: Path, file: str, body: str, line: int, what: str) -> None:
    d = write_ml1m(tmp_path)
    (d / file).write_text(body)
    with pytest.raises(DataError) as err:
        read_dataset(d)
    assert f"{file}, line {line}: " in str(err.value) and what in str(err.value), str(err.value)


def test_bad_ml10m_movies_encoding(tmp_path: Path) -> None:
    d = write_ml10m(tmp_path)
    (d / "movies.dat").write_bytes(b"122::Boomerang (1992)::Comedy\n4::Am\xe9lie (2001)::Comedy\n")
    with pytest.raises(DataError, match=r"movies\.dat, line 2: not valid utf-8"):
        read_dataset(d)


def test_bad_ml100k_lines(tmp_path: Path) -> None:
    d = tmp_path / "ml-100k"
    d.mkdir()
    (d / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\n")
    with pytest.raises(DataError, match=r"u\.data, line 2: expected 4 fields"):
        read_dataset(d)
    (d / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    inter = read_dataset(d).interactions
    (d / "u1.test").write_text("196\t242\t3\t881250949\n999\t302\t3\t891717742\n")
    with pytest.raises(DataError, match=r"u1\.test, line 2: user 999 is not in the data set's users"):
        read_ml100k_split(d / "u1.test", inter.users, inter.items)


def test_csv_reader_defaults_to_generic_layout_name(tmp_path: Path) -> None:
    d = write_csv_layout(tmp_path, "whatever", genome=False)
    ds = read_movielens_csv(d)
    assert ds.layout == "movielens-csv" and ds.name == "whatever"
