"""Filesystem facts the writers share (model directories, reports, synthetic data), without heavy imports."""

from __future__ import annotations

from pathlib import Path


def existing_ancestor(path: Path) -> Path:
    """``path`` itself when it exists, else its nearest parent that does: the place whose kind,
    permissions and free space decide whether ``path`` can be made."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
