"""Interactions, IdMap and RatingScale: the id space and validation everything downstream relies on."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.data.interactions import IdMap, Interactions, RatingScale, _latest_per_pair
from recengine.errors import DataError, UnknownIdError

# --------------------------------------------------------------------------------------------------
# IdMap


def test_idmap_round_trip_numeric() -> None:
    m = IdMap(np.array([30, 10, 20]), "user")
    assert m.is_numeric and len(m) == 3
    assert m.to_internal([10, 30, 20]).tolist() == [1, 0, 2]
    assert m.to_internal([10, 30, 20]).dtype == np.int32
    assert m.to_external([1, 0, 2]).tolist() == [10, 30, 20]
    assert m.to_internal(["20"]).tolist() == [2]  # a string query finds the integer id
    assert m.to_internal(np.array([20.0])).tolist() == [2]
    assert IdMap.from_list(m.to_list(), "user") == m


def test_idmap_round_trip_strings() -> None:
    m = IdMap(np.array(["b", "a", "c"], dtype=object), "item")
    assert not m.is_numeric
    assert m.to_internal(["c", "a"]).tolist() == [2, 1]
    assert m.to_external([0, 2]).tolist() == ["b", "c"]
    back = IdMap.from_list(m.to_list(), "item")
    assert back == m and back.to_list() == ["b", "a", "c"]
    assert IdMap(np.array(["42"])).to_internal([42]).tolist() == [0]  # an int query finds "42"


def test_numeric_map_reads_ascii_digits_only() -> None:
    m = IdMap(np.array([10, 2**63 - 1]), "user")
    assert m.to_internal(["10", " 10 ", "+10", str(2**63 - 1)]).tolist() == [0, 0, 0, 1]
    for other in ("1_0", "１０", "10.0", "0x0a"):  # int() reads the first two as 10
        with pytest.raises(UnknownIdError, match="ids of this map are integers"):
            m.to_internal([other])
    with pytest.raises(UnknownIdError, match="out of the integer id range"):
        m.to_internal([str(2**63)])


def test_idmap_missing_ignore_and_error() -> None:
    m = IdMap(np.array([1, 2, 3]), "user")
    assert m.to_internal([2, 99, 1], missing="ignore").tolist() == [1, -1, 0]
    assert m.contains([3, 4]).tolist() == [True, False]
    with pytest.raises(UnknownIdError) as err:
        m.to_internal([2, 99, 98])
    assert str(err.value) == "unknown user: 99, 98"
    many = list(range(100, 107))
    with pytest.raises(UnknownIdError, match=r"unknown user: 100, 101, 102, 103, 104 and 2 more"):
        m.to_internal(many)
    with pytest.raises(UnknownIdError) as err:
        m.to_internal(["abc"])
    assert str(err.value) == "unknown user 'abc': ids of this map are integers"  # no numpy reprs
    with pytest.raises(UnknownIdError, match="out of range"):
        m.to_external([3])
    empty = IdMap(np.array([], dtype=np.int64))
    assert empty.to_internal([5], missing="ignore").tolist() == [-1]


def test_idmap_rejects_duplicates_and_extends_in_place_order() -> None:
    with pytest.raises(ValueError, match="external id 1 appears twice"):
        IdMap(np.array([1, 2, 1]))
    m = IdMap(np.array([5, 3]), "item")
    bigger = m.extended([3, 9, 7, 9])
    assert bigger.to_list() == [5, 3, 7, 9]  # known ids keep their numbers, new ones follow, sorted
    assert bigger.to_internal([5, 3]).tolist() == m.to_internal([5, 3]).tolist()
    assert m.to_list() == [5, 3]  # the original is unchanged


# --------------------------------------------------------------------------------------------------
# RatingScale


def test_rating_scale_infer() -> None:
    assert RatingScale.infer(np.array([1.0, 3.0, 5.0])) == RatingScale(1.0, 5.0, 1.0)
    assert RatingScale.infer(np.array([0.5, 4.5, 5.0])) == RatingScale(0.5, 5.0, 0.5)
    assert RatingScale.infer(np.array([0.1, 0.7])) == RatingScale(0.1, 0.7, None)
    assert RatingScale.infer(np.array([3.0, 3.0])) == RatingScale(3.0, 4.0, 1.0)
    with pytest.raises(ValueError, match="no ratings"):
        RatingScale.infer(np.array([]))


def test_rating_scale_bad_rows_and_validation() -> None:
    s = RatingScale(0.5, 5.0, 0.5)
    assert s.bad_rows(np.array([0.5, 5.0, 5.5, 0.0, 2.25, np.nan])).tolist() == [
        False, False, True, True, True, True,
    ]  # fmt: skip
    assert str(s) == "0.5–5 step 0.5"
    assert s.clip(np.array([-1.0, 9.0])).tolist() == [0.5, 5.0]
    with pytest.raises(ValueError):
        RatingScale(5, 1)
    with pytest.raises(ValueError):
        RatingScale(1, 5, 0)


# --------------------------------------------------------------------------------------------------
# Interactions


def small() -> Interactions:
    return Interactions.from_arrays(
        [10, 20, 10, 30], [7, 7, 8, 9], [4.0, 2.0, 5.0, 3.0], [1, 2, 3, 4], scale="infer"
    )


def test_csr_is_user_by_item() -> None:
    inter = small()
    m = inter.csr()
    assert m.shape == (3, 3) and m.dtype == np.float32
    u, i = inter.users.to_internal([10])[0], inter.items.to_internal([8])[0]
    assert m[u, i] == 5.0
    assert inter.csr("ones").sum() == 4
    assert inter.user_counts().tolist() == [2, 1, 1] and inter.item_counts().tolist() == [2, 1, 1]


def test_internal_ids_follow_sorted_external_ids() -> None:
    inter = small()
    assert inter.users.to_list() == [10, 20, 30] and inter.items.to_list() == [7, 8, 9]
    assert inter.user.dtype == np.int32 and inter.item.dtype == np.int32


def test_subset_shares_maps() -> None:
    inter = small()
    part = inter.subset(np.array([True, False, False, True]))
    assert part.users is inter.users and part.items is inter.items and part.scale is inter.scale
    assert len(part) == 2 and part.csr().shape == inter.csr().shape
    assert inter.subset(np.array([1, 2])).values().tolist() == [2.0, 5.0]


def test_info_and_implicit() -> None:
    info = small().info()
    assert info["ratings"] == 4 and info["users"] == 3 and info["rating_scale"] == {
        "low": 2.0, "high": 5.0, "step": 1.0,
    }  # fmt: skip
    imp = Interactions.from_arrays(["a", "b"], ["x", "x"])
    assert imp.rating is None and imp.values().tolist() == [1.0, 1.0] and "rating_scale" not in imp.info()
    assert imp.users.to_list() == ["a", "b"]


def test_from_arrays_errors_name_source_and_line() -> None:
    with pytest.raises(DataError, match=r"f\.csv: no ratings"):
        Interactions.from_arrays([], [], [], source="f.csv")
    with pytest.raises(DataError) as err:
        Interactions.from_arrays([1, 2], [1, 2], [3.0, np.nan], source="f.csv", first_line=2)
    assert err.value.line == 3 and "rating is missing or not a number (nan)" in str(err.value)
    with pytest.raises(DataError) as err:
        Interactions.from_arrays(
            [1, 2, 3], [1, 2, 3], [3.0, 6.0, 7.0], scale=RatingScale(1, 5, 1), source="f.csv"
        )
    assert str(err.value) == "f.csv, line 2: rating 6 is outside the declared scale 1–5 step 1 (2 such rows)"
    with pytest.raises(ValueError, match="same length"):
        Interactions.from_arrays([1, 2], [1])
    users = IdMap(np.array([1, 2]), "user")
    with pytest.raises(UnknownIdError, match="unknown user: 3"):
        Interactions.from_arrays([1, 3], [1, 1], user_map=users)


def test_from_arrays_with_given_maps() -> None:
    users, items = IdMap(np.array([5, 1, 9]), "user"), IdMap(np.array([2, 4]), "item")
    inter = Interactions.from_arrays([9, 1], [4, 4], [1.0, 2.0], user_map=users, item_map=items)
    assert inter.users is users and inter.user.tolist() == [2, 1] and inter.csr().shape == (3, 2)


def test_duplicates_keep_latest_timestamp_then_later_line() -> None:
    inter = Interactions.from_arrays(
        [1, 1, 2, 1, 2, 2],
        [5, 5, 5, 6, 5, 5],
        [1.0, 2.0, 3.0, 4.0, 5.0, 1.0],
        [20, 10, 7, 1, 7, 3],
        scale=None,
    )
    assert inter.report.rows_read == 6 and inter.report.duplicates_removed == 3
    assert inter.values().tolist() == [1.0, 4.0, 5.0]  # (1,5) ts 20; (1,6); (2,5) tie at 7 → later line
    no_ts = Interactions.from_arrays([1, 1], [5, 5], [1.0, 2.0])
    assert no_ts.values().tolist() == [2.0] and no_ts.report.duplicates_removed == 1


def _reference_latest(u: np.ndarray, i: np.ndarray, ts: np.ndarray | None, n_items: int) -> np.ndarray:
    """The original full lexsort implementation, kept here as the oracle for the faster one."""
    key = u.astype(np.int64) * max(n_items, 1) + i
    rows = np.arange(len(key))
    order = np.lexsort((rows, ts if ts is not None else rows, key))
    k = key[order]
    last = np.ones(len(k), dtype=bool)
    last[:-1] = k[1:] != k[:-1]
    return np.sort(order[last])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("with_ts", [True, False])
def test_latest_per_pair_matches_reference(seed: int, with_ts: bool) -> None:
    rng = np.random.default_rng(seed)
    n = 2_000
    u = rng.integers(0, 30, n).astype(np.int32)
    i = rng.integers(0, 40, n).astype(np.int32)
    ts = rng.integers(0, 50, n).astype(np.int64) if with_ts else None
    got = _latest_per_pair(u, i, ts, 40)
    assert got is not None
    assert np.array_equal(got, _reference_latest(u, i, ts, 40))
    assert _latest_per_pair(np.arange(5, dtype=np.int32), np.zeros(5, dtype=np.int32), None, 1) is None


@pytest.mark.parametrize(
    "ids",
    [
        np.array([5, 3, 5, 9, 0, 3]),  # small non-negative ints: presence-table path
        np.array([-4, 7, -4, 2**40, 7]),  # negative and huge ints: sorting path
        np.array(["b", "a", "c", "a"]),  # strings
    ],
)
def test_index_paths_agree_with_unique(ids):
    d = Interactions.from_arrays(ids, np.arange(len(ids)), None, scale=None)
    uniq = np.unique(ids)
    assert np.array_equal(d.users.external, uniq)
    assert np.array_equal(d.users.to_external(d.user), ids)


def test_extended_string_map_keeps_longer_new_ids_whole():
    m = IdMap(np.asarray(["u1", "u2"]), "user")
    bigger = m.extended(["a-much-longer-id", "u2"])
    assert bigger.to_list() == ["u1", "u2", "a-much-longer-id"]
    assert bigger.to_internal(["a-much-longer-id"]).tolist() == [2]


def test_integer_beyond_int64_is_an_unknown_id_not_an_overflow():
    m = IdMap(np.asarray([1, 2, 3]), "item")
    with pytest.raises(UnknownIdError, match="out of the integer id range"):
        m.to_internal(["99999999999999999999999"])
    assert m.contains(["99999999999999999999999", "2", "x"]).tolist() == [False, True, False]
