"""``recengine synth``: write a synthetic data set in the MovieLens ml-20m layout (for speed and memory)."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from recengine.cli.common import check_output_path
from recengine.errors import ConfigError, listed
from recengine.paths import existing_ancestor

# Kept in step with recengine.data.synthetic.PRESETS (a test checks); importing it here would load
# numpy and polars for every ``--help``.
PRESET_NAMES = ("ml-20m", "ml-25m", "ml-10m", "ml-1m", "ml-latest-small", "small", "tiny")

# What synth writes (recengine.data.synthetic.write_movielens): these four files, through temporary
# ``.NAME.<32 hex>.tmp`` names; its README.txt's first line says who wrote it.
OWN_FILES = ("README.txt", "movies.csv", "tags.csv", "ratings.csv")
_OWN_TEMP = re.compile(r"\.(README\.txt|movies\.csv|tags\.csv|ratings\.csv)\.[0-9a-f]{32}\.tmp")
_README_MARK = "written by recengine.data.synthetic"
# Refused up front: 50 times ml-20m, past what the generator can hold in memory on most machines
# (about 75 bytes a rating while it draws).
MAX_RATINGS = 1_000_000_000
# Bytes on disk per rating (ratings.csv plus tags.csv's share) and per movie, a little above the 30.8
# and 52 measured for 10^8 ratings of 10^7 users on 10^6 movies.
BYTES_PER_RATING = 34
BYTES_PER_MOVIE = 60


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to ``app``."""

    @app.command("synth")
    def synth(
        out_dir: Annotated[
            Path, typer.Argument(metavar="OUT_DIR", help="Directory for ratings.csv, movies.csv, tags.csv.")
        ],
        preset: Annotated[
            str | None,
            typer.Option(
                help=f"Named shape: {', '.join(PRESET_NAMES)}. The default is ml-20m unless "
                "--ratings, --users and --items are all given; given counts override the preset's."
            ),
        ] = None,
        ratings: Annotated[
            int | None, typer.Option(min=1, help=f"Rows of ratings.csv (at most {MAX_RATINGS:,}).")
        ] = None,
        users: Annotated[int | None, typer.Option(min=1, help="Distinct users.")] = None,
        items: Annotated[int | None, typer.Option(min=1, help="Distinct rated movies.")] = None,
        seed: Annotated[
            int, typer.Option(min=0, help="Same seed, same arguments: byte-identical files.")
        ] = 0,
        rank: Annotated[int | None, typer.Option(min=1, help="Rank of the true factors (default 8).")] = None,
        noise: Annotated[
            float | None, typer.Option(min=0.0, help="Std of the rating noise (default 0.7).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    ) -> None:
        """Write MovieLens-shaped ratings from a known low-rank truth (for speed and memory, not quality).

        OUT_DIR must be new, empty or an earlier output of synth (whose files are replaced).
        """
        from rich.console import Console

        from recengine.data.synthetic import generate, resolve_shape

        err = Console(stderr=True)
        t0 = time.perf_counter()

        def progress(message: str) -> None:
            err.print(f"[dim]{time.perf_counter() - t0:6.1f}s[/dim] {message}", highlight=False)

        if preset is None and ratings is None and users is None and items is None:
            preset = "ml-20m"
        check_output_path(out_dir, "OUT_DIR", kind="dir")
        _check_own_dir(out_dir)
        shape = resolve_shape(preset, ratings, users, items)  # also: no more ratings than pairs
        _check_size(out_dir, shape.n_ratings, shape.n_items)
        res = generate(
            ratings, users, items, preset=preset, seed=seed, rank=rank, noise=noise, out_dir=out_dir,
            progress=progress,
        )  # fmt: skip
        if as_json:
            typer.echo(json.dumps(res.as_dict()))
        else:
            typer.echo(
                f"wrote {res.n_ratings:,} ratings of {res.n_users:,} users on {res.n_items:,} movies "
                f"({res.n_tags:,} tags) to {res.path} in {res.seconds['total']:.1f}s"
            )


def _check_own_dir(out_dir: Path) -> None:
    """Refuse a directory holding files synth did not write: they could be a user's ratings.csv."""
    if not out_dir.is_dir():
        return
    try:
        with (out_dir / "README.txt").open(encoding="utf-8") as f:
            ours = _README_MARK in f.readline()
    except (OSError, UnicodeDecodeError):
        ours = False
    own = set(OWN_FILES) if ours else set()
    other = sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in out_dir.iterdir()
        if p.name not in own and not _OWN_TEMP.fullmatch(p.name)
    )
    if other:
        raise ConfigError(f"{out_dir} holds other files ({listed(other)}); give a new or empty directory")


def _check_size(out_dir: Path, n_ratings: int, n_items: int) -> None:
    """Refuse, before drawing anything, a data set too large to generate or to fit on the disk."""
    if n_ratings > MAX_RATINGS:
        raise ConfigError(
            f"{n_ratings:,} ratings is more than synth makes (at most {MAX_RATINGS:,}, 50 times ml-20m)"
        )
    need = n_ratings * BYTES_PER_RATING + n_items * BYTES_PER_MOVIE
    where = existing_ancestor(out_dir)
    free = shutil.disk_usage(where).free
    if need > free:
        raise ConfigError(
            f"{n_ratings:,} ratings need about {need / 1e9:.1f} GB and {where} has {free / 1e9:.1f} GB free"
        )
