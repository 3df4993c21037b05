"""listed: the name lists every refusal message shares."""

from recengine.errors import listed


def test_listed_cuts_after_the_limit_and_counts_the_rest() -> None:
    assert listed(["a", "b"]) == "a, b"
    assert listed([str(k) for k in range(8)]) == "0, 1, 2, 3, 4 and 3 more"
    assert listed(["x", "y", "z", "w"], 3) == "x, y, z and 1 more"
