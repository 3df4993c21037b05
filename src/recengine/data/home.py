"""Where data sets live on disk: ``$RECENGINE_DATA``, else ``$XDG_DATA_HOME/recengine``, else
``~/.local/share/recengine``. One sub-directory per data set, named like the data set."""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    env = os.environ.get("RECENGINE_DATA")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "recengine"


def dataset_dir(name: str) -> Path:
    return data_home() / name


def cache_home() -> Path:
    """Where computed results that can be made again are kept (the t-SNE maps a server draws):
    ``$RECENGINE_CACHE``, else ``$XDG_CACHE_HOME/recengine``, else ``~/.cache/recengine``."""
    env = os.environ.get("RECENGINE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "recengine"
