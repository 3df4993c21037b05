"""What the data set module offers besides the Dataset itself: genre lists as models take them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recengine.data.dataset import genre_lists


def test_genre_lists_take_any_sequence_per_item_and_refuse_bare_text() -> None:
    got = genre_lists([["Drama"], ("Comedy", "War"), np.array(["Horror"]), pl.Series(["Noir"]), None, []])
    assert got == [["Drama"], ["Comedy", "War"], ["Horror"], ["Noir"], None, []]
    with pytest.raises(TypeError, match=r"genres\[1\] is the text 'Comedy'"):
        genre_lists([["Drama"], "Comedy"])
