"""existing_ancestor: the place that decides whether a path can be made."""

from pathlib import Path

from recengine.paths import existing_ancestor


def test_the_nearest_existing_place(tmp_path: Path) -> None:
    assert existing_ancestor(tmp_path) == tmp_path
    assert existing_ancestor(tmp_path / "a" / "b" / "c") == tmp_path
    (tmp_path / "f").write_text("x")
    assert existing_ancestor(tmp_path / "f" / "sub") == tmp_path / "f"  # a file: nothing can go under it
