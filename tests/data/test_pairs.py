"""Object2Vec JSON Lines pairs: round trips, interactions → pairs, and malformed lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recengine.data.interactions import Interactions
from recengine.data.pairs import Pairs, interactions_to_pairs, is_pairs_file, read_pairs, write_pairs
from recengine.errors import DataError


def test_round_trip_ragged_with_labels(tmp_path: Path) -> None:
    p = tmp_path / "train.jsonl"
    in0 = [[1, 2, 3], [4], [5, 6]]
    in1 = [[7], [8, 9], [10]]
    write_pairs(p, in0, in1, [1.0, 0.0, 0.5])
    first = json.loads(p.read_text().splitlines()[0])
    assert first == {"in0": [1, 2, 3], "in1": [7], "label": 1.0}
    pairs = read_pairs(p)
    assert len(pairs) == 3 and pairs.tokens(0) == in0 and pairs.tokens(1) == in1
    assert pairs.in0.shape == (3, 3) and pairs.in0_len.tolist() == [3, 1, 2]
    assert pairs.in0[1].tolist() == [4, 0, 0]  # zero padded
    assert pairs.labels is not None and pairs.labels.dtype == np.float32
    assert pairs.labels.tolist() == [1.0, 0.0, 0.5]


def test_round_trip_arrays_without_labels(tmp_path: Path) -> None:
    p = tmp_path / "infer.jsonl"
    write_pairs(p, np.array([3, 4]), np.array([[5, 6], [7, 8]]))
    assert p.read_text() == '{"in0":[3],"in1":[5,6]}\n{"in0":[4],"in1":[7,8]}\n'
    pairs = read_pairs(p)
    assert pairs.labels is None and pairs.tokens(1) == [[5, 6], [7, 8]]
    again = tmp_path / "again.jsonl"
    pairs.write(again)
    assert again.read_bytes() == p.read_bytes()


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    p = tmp_path / "out.jsonl"
    p.write_text("old\n")
    with pytest.raises(ValueError, match="labels must be 1-D with 2 values"):
        write_pairs(p, [1, 2], [3, 4], [1.0])
    assert p.read_text() == "old\n"
    with pytest.raises(ValueError, match="negative"):
        write_pairs(p, np.array([1, -2]), [3, 4])
    for bad, shown in (([[1.5, 2]], "1.5"), ([[True]], "True"), ([["7"]], "'7'")):
        with pytest.raises(ValueError, match=f"in0 row 0 holds {shown}; tokens must be integers"):
            write_pairs(p, bad, [[3]])
    with pytest.raises(ValueError, match="no pairs to write"):
        write_pairs(p, np.zeros((0, 1), dtype=np.int64), np.zeros((0, 1), dtype=np.int64))
    assert p.read_text() == "old\n"
    write_pairs(p, [1, 2], [3, 4])
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.jsonl"]


def test_interactions_to_pairs(tmp_path: Path) -> None:
    inter = Interactions.from_arrays([10, 20, 10], [5, 5, 7], [4.0, 2.0, 5.0], scale="infer")
    pairs = interactions_to_pairs(inter)
    assert pairs.tokens(0) == [[u] for u in inter.user.tolist()]
    assert pairs.tokens(1) == [[i] for i in inter.item.tolist()]
    assert pairs.labels is not None and pairs.labels.tolist() == [4.0, 2.0, 5.0]
    binary = interactions_to_pairs(inter, labels=(inter.values() > 3).astype(np.float32))
    assert binary.labels is not None and binary.labels.tolist() == [1.0, 0.0, 1.0]
    implicit = Interactions.from_arrays([1, 2], [3, 4])
    assert interactions_to_pairs(implicit).labels is None
    p = tmp_path / "p.jsonl"
    write_pairs(p, pairs.in0, pairs.in1, pairs.labels)
    back = read_pairs(p)
    assert np.array_equal(back.in0, pairs.in0) and np.array_equal(back.in1, pairs.in1)


def test_pairs_validates_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        Pairs(
            np.zeros((2, 1), np.int64), np.ones(2, np.int32), np.zeros((1, 1), np.int64), np.ones(1, np.int32)
        )


GOOD = '{"in0": [1], "in1": [2], "label": 1}\n'


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ('{"in0": [1], "in1": [2], "label": \n', "not valid JSON (Expecting value at column 35)"),
        ("[1, 2]\n", "expected a JSON object, found list"),
        ('{"in1": [2], "label": 1}\n', "field 'in0' is missing"),
        ('{"in0": 5, "in1": [2], "label": 1}\n', "field 'in0' must be a list of integers, found 5"),
        ('{"in0": [1.5], "in1": [2], "label": 1}\n', "field 'in0' must be a list of integers"),
        ('{"in0": ["a"], "in1": [2], "label": 1}\n', "field 'in0' must be a list of integers"),
        ('{"in0": [true], "in1": [2], "label": 1}\n', "field 'in0' must be a list of integers"),
        (
            '{"in0": [1], "in1": [], "label": 1}\n',
            "field 'in1' must be a list of integers, found an empty list",
        ),
        ('{"in0": [1], "in1": [-3], "label": 1}\n', "field 'in1' must hold non-negative"),
        ('{"in0": [1], "in1": [2], "label": "yes"}\n', "field 'label' must be a finite number"),
        ('{"in0": [1], "in1": [2], "label": 1e39}\n', "field 'label' must be a finite number (within"),
        ('{"in0": [1], "in1": [2], "label": 1' + "0" * 400 + "}\n", "field 'label' must be a finite"),
        ('{"in0": [1], "in1": [2]}\n', "field 'label' is missing on some lines"),
    ],
)
def test_malformed_lines_name_line_and_field(tmp_path: Path, bad: str, what: str) -> None:
    p = tmp_path / "pairs.jsonl"
    p.write_text(GOOD * 3 + "\n" + GOOD * 2 + bad + GOOD)
    with pytest.raises(DataError) as err:
        read_pairs(p)
    assert f"pairs.jsonl, line 7: {what}" in str(err.value), str(err.value)


def test_empty_files(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_text("")
    with pytest.raises(DataError, match=r"e\.jsonl, line 1: the file is empty"):
        read_pairs(p)
    p.write_text("\n\n")
    with pytest.raises(DataError, match="no pairs"):
        read_pairs(p)


def test_a_pairs_file_is_told_from_a_ratings_file(tmp_path: Path) -> None:
    """What ``recengine train --data`` reads as pairs: JSON Lines whose first record has in0 or in1."""
    pairs = write_pairs(tmp_path / "train.jsonl", [[1]], [[2]], [4.0])
    assert is_pairs_file(pairs)
    padded = tmp_path / "padded.ndjson"
    padded.write_text('\n  \n{"in0": [1], "in1": [2]}\n')
    assert is_pairs_file(padded)
    ratings = tmp_path / "ratings.jsonl"
    ratings.write_text('{"user": 1, "item": 2, "rating": 4}\n')
    csv = tmp_path / "pairs.csv"
    csv.write_text('{"in0": [1], "in1": [2]}\n')
    # A broken first record that names in0 or in1 is read as pairs, so the error names its line;
    # one that names neither is left to the ratings reader.
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b'\xef\xbb\xbf{"in0": [1], "in1": [2],}\n' + GOOD.encode())
    assert is_pairs_file(broken)
    with pytest.raises(DataError, match=r"broken\.jsonl, line 1: not valid JSON"):
        read_pairs(broken)
    unnamed = tmp_path / "unnamed.jsonl"
    unnamed.write_text('{"user": 1, \n')
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    for path in (ratings, csv, unnamed, binary, tmp_path / "missing.jsonl", tmp_path):
        assert not is_pairs_file(path), path
