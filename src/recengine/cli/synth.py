"""``recengine synth``: write a synthetic data set in the MovieLens ml-20m layout (for speed and memory)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

# Kept in step with recengine.data.synthetic.PRESETS (a test checks); importing it here would load
# numpy and polars for every ``--help``.
PRESET_NAMES = ("ml-20m", "ml-25m", "ml-10m", "ml-1m", "ml-latest-small", "small", "tiny")


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
        ratings: Annotated[int | None, typer.Option(min=1, help="Rows of ratings.csv.")] = None,
        users: Annotated[int | None, typer.Option(min=1, help="Distinct users.")] = None,
        items: Annotated[int | None, typer.Option(min=1, help="Distinct rated movies.")] = None,
        seed: Annotated[int, typer.Option(help="Same seed, same arguments: byte-identical files.")] = 0,
        rank: Annotated[int | None, typer.Option(min=1, help="Rank of the true factors (default 8).")] = None,
        noise: Annotated[
            float | None, typer.Option(min=0.0, help="Std of the rating noise (default 0.7).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    ) -> None:
        """Write MovieLens-shaped ratings from a known low-rank truth (for speed and memory, not quality)."""
        from rich.console import Console

        from recengine.data.synthetic import generate

        err = Console(stderr=True)
        t0 = time.perf_counter()

        def progress(message: str) -> None:
            err.print(f"[dim]{time.perf_counter() - t0:6.1f}s[/dim] {message}", highlight=False)

        if preset is None and ratings is None and users is None and items is None:
            preset = "ml-20m"
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
