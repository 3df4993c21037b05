"""The options that say how to read a ratings file of one's own, shared by ``train`` and ``evaluate``.

Why one place: a file without a header, with other column names or another separator must read the
same way whichever command is given it; a MovieLens name or directory ignores them unless one is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from recengine.data.dataset import Dataset
    from recengine.data.interactions import RatingScale

SepOpt = Annotated[str | None, typer.Option(help="own file: field separator (default: sniffed)")]
NoHeaderOpt = Annotated[bool, typer.Option("--no-header", help="own file: the file has no header")]
UserColOpt = Annotated[str | None, typer.Option(help="own file: user column")]
ItemColOpt = Annotated[str | None, typer.Option(help="own file: item column")]
RatingColOpt = Annotated[str | None, typer.Option(help="own file: rating column")]
TimestampColOpt = Annotated[str | None, typer.Option(help="own file: timestamp column")]
ScaleOpt = Annotated[
    str | None, typer.Option(help="own file: rating scale LOW:HIGH[:STEP] (default: from the ratings)")
]
ImplicitOpt = Annotated[bool, typer.Option("--implicit", help="own file: no ratings, only events")]


def read_data(
    data: str,
    *,
    sep: str | None = None,
    no_header: bool = False,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    scale: str | None = None,
    implicit: bool = False,
) -> Dataset:
    """A data set name or directory through its layout's reader; a file through the generic reader
    when any option is set or it is not a MovieLens ratings file."""
    from recengine.data.generic import read_interactions
    from recengine.data.load import is_movielens_ratings_file, load_dataset

    if not data.strip():
        from recengine.errors import ConfigError

        raise ConfigError("--data is empty; give a data set name (ml-100k) or a path")
    given = any(x is not None for x in (sep, user_col, item_col, rating_col, timestamp_col, scale))
    path = Path(data)
    from recengine.data.pairs import is_pairs_file

    if is_pairs_file(path):  # in0/in1 are token lists, which no reading option turns into ratings
        from recengine.errors import ConfigError

        raise ConfigError(
            f"{data} holds Object2Vec pairs (in0, in1, label), not ratings; train on them with "
            f"`recengine train object2vec --data {data}`, and score pairs with `recengine predict`"
        )
    if path.is_file() and (given or no_header or implicit or not is_movielens_ratings_file(path)):
        return read_interactions(
            path,
            sep=sep,
            header=not no_header,
            user_col=user_col,
            item_col=item_col,
            rating_col=rating_col,
            timestamp_col=timestamp_col,
            scale=parse_scale(scale),
            implicit=implicit,
        )
    if given or no_header or implicit:
        from recengine.errors import ConfigError

        raise ConfigError(f"the reading options apply to a ratings file; {data} is not one")
    return load_dataset(data)


def parse_scale(text: str | None) -> RatingScale | None:
    if text is None:
        return None
    from recengine.data.interactions import RatingScale
    from recengine.errors import ConfigError

    try:
        parts = [float(x) for x in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (2, 3):
        raise ConfigError(f"--scale expects numbers LOW:HIGH or LOW:HIGH:STEP, got {text!r}")
    try:
        return RatingScale(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
    except ValueError as e:  # low >= high, a step that is not positive
        raise ConfigError(f"--scale {text}: {e}") from None
