"""Synthetic MovieLens-shaped data: the ml-20m file layout at any size, drawn from a known low-rank truth.

Why: ml-20m cannot be downloaded on these machines, yet speed and memory must be measured at its
scale, and a known truth lets tests check that a model learns. The shapes are for speed and memory
only; never quote a quality figure on this data (PROTOCOLS.md).

Model: rating = mean + user bias + item bias + <user factors, item factors> + Gaussian noise, rounded
to whole or half stars and clipped to 0.5–5. Item popularity is Zipf-like over a random ranking, user
activity log-normal above a floor of 20 (MovieLens keeps only users with 20 ratings). Every movie gets
one rating from a user drawn by activity, then each user's remaining picks are drawn by popularity
without replacement (successive sampling, vectorized in rounds with dedupe on sorted int64 keys).
Genres are drawn from the item factors, so item embeddings can recover them.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from recengine.data.home import dataset_dir
from recengine.data.interactions import Interactions, RatingScale
from recengine.errors import ConfigError

GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
# Share of ml-20m movies carrying each genre (movies.csv), so the synthetic catalogue looks alike.
_GENRE_SHARE = np.array(
    [.13, .085, .038, .042, .31, .11, .09, .49, .052, .012, .096, .007, .038, .055, .15, .064, .15, .044,
     .025]
)  # fmt: skip
# Tag words per genre (one tuple per entry of GENRES); a tag names one of its movie's genres.
TAG_WORDS: tuple[tuple[str, ...], ...] = (
    ("explosions", "fight scenes", "car chase"), ("quest", "treasure hunt", "epic journey"),
    ("hand-drawn", "stop motion", "cartoon"), ("family", "kids", "talking animals"),
    ("funny", "witty", "dark comedy"), ("heist", "mafia", "police"),
    ("true story", "informative", "interviews"),
    ("moving", "character study", "atmospheric"), ("magic", "dragons", "fairy tale"),
    ("noir", "femme fatale", "black and white"), ("gore", "creepy", "haunted house"),
    ("imax", "visually stunning", "3d"), ("singing", "dance", "great soundtrack"),
    ("twist ending", "whodunit", "clever plot"), ("love story", "romantic", "chick flick"),
    ("space", "time travel", "dystopia"), ("suspense", "tense", "psychological"),
    ("world war ii", "anti-war", "battle scenes"), ("cowboys", "gunfight", "frontier"),
)  # fmt: skip

MAX_ML20M_MOVIE_ID = 131262  # movie ids of ml-20m are a sparse subset of 1..131262
FIRST_TIMESTAMP = 789652009  # 1995-01-09, the first rating of ml-20m
LAST_TIMESTAMP = 1427784002  # 2015-03-31, its last
MIN_USER_RATINGS = 20  # GroupLens keeps users with at least 20 ratings
RATING_SCALE = RatingScale(0.5, 5.0, 0.5)


@dataclass(frozen=True)
class Shape:
    """Counts of a data set: rows of ratings.csv, distinct users and distinct rated movies."""

    n_ratings: int
    n_users: int
    n_items: int


PRESETS: dict[str, Shape] = {
    "tiny": Shape(5_000, 100, 400),
    "small": Shape(50_000, 500, 2_000),
    "ml-latest-small": Shape(100_836, 610, 9_724),
    "ml-1m": Shape(1_000_209, 6_040, 3_706),
    "ml-10m": Shape(10_000_054, 69_878, 10_677),
    "ml-20m": Shape(20_000_263, 138_493, 26_744),
    "ml-25m": Shape(25_000_095, 162_541, 59_047),
}


@dataclass(frozen=True)
class SynthConfig:
    """The truth's knobs. Defaults give a rating mean near ml-20m's 3.5 and a std near its 1.05."""

    rank: int = 8
    noise: float = 0.7  # std of the Gaussian noise added before rounding
    mean: float = 3.5
    user_bias: float = 0.4  # std of user biases
    item_bias: float = 0.45  # std of item biases (partly tied to popularity, as in MovieLens)
    interaction: float = 0.5  # std of the factor dot product
    zipf: float = 1.4  # exponent of item popularity over rank
    zipf_offset: float = 50.0  # flattens the head: the top movie is rated by ~half the users, as in ml-20m
    user_activity: float = 1.4  # log-normal sigma of ratings per user above the floor
    whole_star: float = 0.4  # share of ratings rounded to whole stars (MovieLens has ~25-30% half stars)
    tag_rate: float = 0.0233  # tags per rating, as ml-20m (465,564 / 20,000,263)


@dataclass
class SyntheticData:
    """Ratings in the ml-20m file order (userId, then movieId) plus the truth they came from.

    ``user``/``item`` are dense indices: userId = user + 1, movieId = ``movie_ids[item]``.
    ``true_score`` is mean + biases + dot product per row, before noise, rounding and clipping.
    """

    user: npt.NDArray[np.int32]
    item: npt.NDArray[np.int32]
    rating: npt.NDArray[np.float32]
    timestamp: npt.NDArray[np.int64]
    true_score: npt.NDArray[np.float32]
    movie_ids: npt.NDArray[np.int32]
    years: npt.NDArray[np.int16]
    genres: npt.NDArray[np.bool_]  # n_items x len(GENRES)
    user_factors: npt.NDArray[np.float32]
    item_factors: npt.NDArray[np.float32]
    user_bias: npt.NDArray[np.float32]
    item_bias: npt.NDArray[np.float32]
    popularity: npt.NDArray[np.float64]  # sampling weight of each item, sums to 1
    tag_row: npt.NDArray[np.int64]  # rows of the ratings that carry a tag
    tag_word: npt.NDArray[np.int32]  # index into the flattened TAG_WORDS
    tag_timestamp: npt.NDArray[np.int64]
    config: SynthConfig = field(default_factory=SynthConfig)
    seed: int = 0

    @property
    def n_users(self) -> int:
        return len(self.user_bias)

    @property
    def n_items(self) -> int:
        return len(self.movie_ids)

    @property
    def user_id(self) -> npt.NDArray[np.int32]:
        return self.user + np.int32(1)

    @property
    def movie_id(self) -> npt.NDArray[np.int32]:
        return self.movie_ids[self.item]

    def to_interactions(self) -> Interactions:
        """The ratings as the library loads them from ratings.csv (external ids, half-star scale)."""
        return Interactions.from_arrays(
            self.user_id, self.movie_id, self.rating, self.timestamp, scale=RATING_SCALE
        )


@dataclass
class SyntheticFiles:
    """What :func:`generate` wrote: counts, paths and the seconds each phase took."""

    path: Path
    files: dict[str, Path]
    n_ratings: int
    n_users: int
    n_items: int
    n_tags: int
    seed: int
    preset: str | None
    seconds: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "files": {k: str(v) for k, v in self.files.items()},
            "ratings": self.n_ratings,
            "users": self.n_users,
            "items": self.n_items,
            "tags": self.n_tags,
            "seed": self.seed,
            "preset": self.preset,
            "seconds": self.seconds,
        }


Progress = Callable[[str], None]


def resolve_shape(
    preset: str | None = None,
    n_ratings: int | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
) -> Shape:
    """Preset counts overridden by the explicit ones; without a preset all three are needed."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    base = PRESETS[preset] if preset is not None else None
    given = {"ratings": n_ratings, "users": n_users, "items": n_items}
    if base is None and any(v is None for v in given.values()):
        missing = ", ".join(k for k, v in given.items() if v is None)
        raise ConfigError(f"give a preset or all of ratings, users and items (missing: {missing})")
    fallback = base or Shape(0, 0, 0)
    shape = Shape(
        n_ratings if n_ratings is not None else fallback.n_ratings,
        n_users if n_users is not None else fallback.n_users,
        n_items if n_items is not None else fallback.n_items,
    )
    if shape.n_users < 1 or shape.n_items < 1:
        raise ConfigError(f"need at least one user and one item, got {shape}")
    if not max(shape.n_users, shape.n_items) <= shape.n_ratings <= shape.n_users * shape.n_items:
        raise ConfigError(
            f"{shape.n_ratings} ratings cannot cover {shape.n_users} users and {shape.n_items} items with "
            f"unique pairs: need {max(shape.n_users, shape.n_items)} to {shape.n_users * shape.n_items}"
        )
    return shape


def generate_arrays(
    n_ratings: int | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
    *,
    preset: str | None = None,
    seed: int = 0,
    rank: int | None = None,
    noise: float | None = None,
    config: SynthConfig | None = None,
    progress: Progress | None = None,
) -> SyntheticData:
    """Draw a data set in memory (tests and benchmarks use this; :func:`generate` writes it).

    ``rank`` (default 8) and ``noise`` (default 0.7), when given, override those of ``config``.
    """
    shape = resolve_shape(preset, n_ratings, n_users, n_items)
    cfg = config or SynthConfig()
    cfg = replace(cfg, rank=cfg.rank if rank is None else rank, noise=cfg.noise if noise is None else noise)
    if cfg.rank < 1 or cfg.noise < 0:
        raise ConfigError(f"rank must be >= 1 and noise >= 0, got rank={cfg.rank}, noise={cfg.noise}")
    say = progress or (lambda _msg: None)
    rng = np.random.default_rng(seed)
    nu, ni = shape.n_users, shape.n_items

    say("drawing users, items and the low-rank truth")
    counts = _user_counts(shape, cfg.user_activity, rng)
    rank_of_item = rng.permutation(ni)
    pop = ((rank_of_item + 1.0 + cfg.zipf_offset) ** -cfg.zipf).astype(np.float64)
    pop /= pop.sum()
    if ni <= MAX_ML20M_MOVIE_ID:
        movie_ids = np.sort(rng.choice(MAX_ML20M_MOVIE_ID, ni, replace=False) + 1).astype(np.int32)
    else:
        movie_ids = np.arange(1, ni + 1, dtype=np.int32)
    s = (cfg.interaction**2 / cfg.rank) ** 0.25  # per-dimension std giving the dot product std `interaction`
    uf = (rng.standard_normal((nu, cfg.rank)) * s).astype(np.float32)
    itf = (rng.standard_normal((ni, cfg.rank)) * s).astype(np.float32)
    ub_raw = rng.standard_normal(nu) * cfg.user_bias
    logp = np.log(pop)
    zpop = (logp - logp.mean()) / (logp.std() or 1.0)
    ib_raw = cfg.item_bias * (0.35 * zpop + 0.94 * rng.standard_normal(ni))
    genres = _genres(itf / s, rng)

    say(f"sampling {shape.n_ratings:,} unique (user, movie) pairs")
    keys = _sample_pairs(counts, pop, rng)
    user = (keys // ni).astype(np.int32)
    item = (keys % ni).astype(np.int32)
    del keys
    # Centre the biases over the rows, so the ratings average near `mean` whatever the popularity.
    ub = (ub_raw - np.bincount(user, minlength=nu) @ ub_raw / len(user)).astype(np.float32)
    ib = (ib_raw - np.bincount(item, minlength=ni) @ ib_raw / len(item)).astype(np.float32)

    say("scoring ratings and timestamps")
    true_score, rating = _ratings(user, item, uf, itf, ub, ib, cfg, rng)
    timestamp = _timestamps(user, counts, rng)
    first = np.full(ni, LAST_TIMESTAMP, dtype=np.int64)
    np.minimum.at(first, item, timestamp)
    first_year = first.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    release = 2015 - np.floor(rng.exponential(14.0, ni)).astype(np.int64)
    years = np.minimum(np.maximum(release, 1915), first_year).astype(np.int16)

    tag_row = np.flatnonzero(rng.random(len(user)) < cfg.tag_rate)
    pick = np.argmax(genres[item[tag_row]] * rng.random((len(tag_row), len(GENRES))), axis=1)
    tag_word = (pick * 3 + rng.integers(0, 3, len(tag_row))).astype(np.int32)
    tag_ts = timestamp[tag_row] + rng.integers(0, 600, len(tag_row))
    return SyntheticData(
        user=user, item=item, rating=rating, timestamp=timestamp, true_score=true_score,
        movie_ids=movie_ids, years=years, genres=genres, user_factors=uf, item_factors=itf,
        user_bias=ub, item_bias=ib, popularity=pop, tag_row=tag_row, tag_word=tag_word,
        tag_timestamp=tag_ts, config=cfg, seed=seed,
    )  # fmt: skip


def generate(
    n_ratings: int | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
    *,
    preset: str | None = None,
    seed: int = 0,
    rank: int | None = None,
    noise: float | None = None,
    out_dir: Path | None = None,
    config: SynthConfig | None = None,
    progress: Progress | None = None,
) -> SyntheticFiles:
    """Draw a data set and write ratings.csv, movies.csv, tags.csv and README.txt in the ml-20m layout.

    ``out_dir`` defaults to ``<data home>/synthetic-<preset or counts>-seed<seed>``. Same arguments,
    same seed: byte-identical files.
    """
    shape = resolve_shape(preset, n_ratings, n_users, n_items)
    if out_dir is None:
        named = preset is not None and shape == PRESETS[preset]
        tag = preset if named else f"{shape.n_ratings}r-{shape.n_users}u-{shape.n_items}i"
        out_dir = dataset_dir(f"synthetic-{tag}-seed{seed}")
    t0 = time.perf_counter()
    data = generate_arrays(
        shape.n_ratings,
        shape.n_users,
        shape.n_items,
        seed=seed,
        rank=rank,
        noise=noise,
        config=config,
        progress=progress,
    )
    t1 = time.perf_counter()
    files = write_movielens(data, Path(out_dir), progress=progress)
    t2 = time.perf_counter()
    seconds = {"generate": round(t1 - t0, 3), "write": round(t2 - t1, 3), "total": round(t2 - t0, 3)}
    n_tags = len(data.tag_row)
    return SyntheticFiles(
        Path(out_dir), files, len(data.rating), shape.n_users, shape.n_items, n_tags, seed, preset, seconds
    )


def write_movielens(data: SyntheticData, out_dir: Path, progress: Progress | None = None) -> dict[str, Path]:
    """Write the ml-20m layout; every file goes to a temporary name first and is renamed into place.

    The renames happen only once every file is complete, ratings.csv last, so an interrupted run
    leaves the directory as it was (apart from a stray ``.*.tmp`` if the process is killed outright).
    """
    say = progress or (lambda _msg: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    words = pl.Series("tag", [w for ws in TAG_WORDS for w in ws])
    ratings = pl.DataFrame(
        {"userId": data.user_id, "movieId": data.movie_id, "rating": data.rating, "timestamp": data.timestamp}
    )
    cols = {f"g{k}": data.genres[:, k] for k in range(len(GENRES))}
    movies = pl.DataFrame({"movieId": data.movie_ids, "year": data.years, **cols}).select(
        "movieId",
        pl.format("Synthetic Movie {} ({})", "movieId", "year").alias("title"),
        pl.concat_str(
            [pl.when(pl.col(f"g{k}")).then(pl.lit(name)) for k, name in enumerate(GENRES)],
            separator="|",
            ignore_nulls=True,
        ).alias("genres"),
    )
    tags = pl.DataFrame(
        {
            "userId": data.user_id[data.tag_row],
            "movieId": data.movie_id[data.tag_row],
            "tag": words.gather(data.tag_word),
            "timestamp": data.tag_timestamp,
        }
    )
    cfg = data.config
    readme = (
        "Synthetic data in the MovieLens ml-20m layout, written by recengine.data.synthetic.\n"
        "Drawn from a known low-rank model: for speed and memory measurements only, never for quality.\n\n"
        f"ratings: {len(data.rating)}\nusers: {data.n_users}\nmovies: {data.n_items}\n"
        f"tags: {len(data.tag_row)}\nseed: {data.seed}\n"
        + "".join(f"{k}: {v}\n" for k, v in vars(cfg).items())
    )
    out = {name: out_dir / name for name in ("README.txt", "movies.csv", "tags.csv", "ratings.csv")}
    temps: dict[str, Path] = {}
    try:
        for name in out:
            temps[name] = tmp = out_dir / f".{name}.{uuid.uuid4().hex}.tmp"
            say(f"writing {name}")
            if name == "README.txt":
                tmp.write_text(readme, encoding="utf-8")
            else:
                frame = {"movies.csv": movies, "tags.csv": tags, "ratings.csv": ratings}[name]
                frame.write_csv(tmp, float_precision=1, line_terminator="\n")
            _fsync(tmp)
        for name, path in out.items():
            os.replace(temps.pop(name), path)
        _fsync(out_dir)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return out


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _user_counts(shape: Shape, sigma: float, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Ratings per user: a floor of 20 (when the total allows) plus a log-normal share of the rest.

    Capped at 35% of the catalogue (ml-20m's busiest user rated 35%) unless the total needs more;
    the cap is water-filled so the sum is exact.
    """
    n, nu, ni = shape.n_ratings, shape.n_users, shape.n_items
    cap = min(ni, max(math.ceil(0.35 * ni), math.ceil(2 * n / nu)))
    if cap * nu < n:
        cap = ni
    lo = min(MIN_USER_RATINGS, n // nu, cap)
    extra, room = n - lo * nu, cap - lo
    weight = rng.lognormal(0.0, sigma, nu)
    x = np.zeros(nu)
    free = np.ones(nu, dtype=bool)
    left = float(extra)
    while left > 0 and free.any():
        share = left * weight[free] / weight[free].sum()
        over = share >= room
        idx = np.flatnonzero(free)
        if not over.any():
            x[idx] = share
            break
        x[idx[over]] = room
        free[idx[over]] = False
        left = extra - float(x.sum())
    whole = np.floor(x).astype(np.int64)
    frac = np.where(whole < room, x - whole, -1.0)
    short = extra - int(whole.sum())
    whole[np.argsort(-frac, kind="stable")[:short]] += 1
    counts = whole + lo
    if int(counts.sum()) != n or int(counts.max()) > ni:
        raise RuntimeError("internal error: user activity does not add up")  # pragma: no cover
    return counts


def _genres(z: npt.NDArray[np.float32], rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    """Genre flags from standardized item factors: each genre is a random direction in factor space."""
    direction = rng.standard_normal((z.shape[1], len(GENRES)))
    direction /= np.linalg.norm(direction, axis=0, keepdims=True)
    slope = 1.5
    # Shift so the share of movies with a genre lands near ml-20m's (logistic-normal approximation).
    base = np.log(_GENRE_SHARE / (1 - _GENRE_SHARE)) * math.sqrt(1 + math.pi * slope**2 / 8)
    logit = slope * (z.astype(np.float64) @ direction) + base
    flags = rng.random(logit.shape) < 1 / (1 + np.exp(-logit))
    none = ~flags.any(axis=1)
    flags[np.flatnonzero(none), np.argmax(logit[none], axis=1)] = True
    return flags


def _sample_pairs(
    counts: npt.NDArray[np.int64],
    pop: npt.NDArray[np.float64],
    rng: np.random.Generator,
    batch_ratings: int = 2_000_000,
) -> npt.NDArray[np.int64]:
    """Sorted unique keys user * n_items + item, ``counts[u]`` for each user, every item at least once.

    Each item is first given to one rating slot drawn uniformly (so to a user by activity); the rest
    of each user's picks are drawn by popularity without replacement. Users go in batches of about
    ``batch_ratings`` rows, so memory stays flat and each batch's keys come out sorted.
    """
    nu, ni = len(counts), len(pop)
    ends = np.cumsum(counts)
    slot = rng.choice(int(ends[-1]), ni, replace=False)
    seeds = np.sort(np.searchsorted(ends, slot, side="right").astype(np.int64) * ni + np.arange(ni))
    cdf = np.cumsum(pop)
    cdf /= cdf[-1]
    grid_d, grid_e = _distinct_curve(pop)
    bounds = np.searchsorted(ends, np.arange(batch_ratings, int(ends[-1]), batch_ratings), side="left")
    starts = np.unique(np.concatenate([[0], bounds + 1]))
    starts = starts[starts < nu]
    out = []
    for a, b in zip(starts, [*starts[1:], nu], strict=True):
        lo, hi = np.searchsorted(seeds, [a * ni, b * ni])
        out.append(_sample_batch(counts[a:b], seeds[lo:hi] - a * ni, pop, cdf, grid_d, grid_e, rng) + a * ni)
    return np.concatenate(out)


def _distinct_curve(pop: npt.NDArray[np.float64]) -> tuple[np.ndarray, np.ndarray]:
    """Expected distinct items among D popularity draws, on a grid of D (to size each user's draw)."""
    d = np.unique(np.geomspace(1, 64 * len(pop), 160).round())
    e = np.array([float(np.sum(-np.expm1(-x * pop))) for x in d])
    return d, e


def _sample_batch(
    counts: npt.NDArray[np.int64],
    seeds: npt.NDArray[np.int64],
    pop: npt.NDArray[np.float64],
    cdf: npt.NDArray[np.float64],
    grid_d: np.ndarray,
    grid_e: np.ndarray,
    rng: np.random.Generator,
    max_rounds: int = 8,
    max_draws: int = 1 << 23,
) -> npt.NDArray[np.int64]:
    """Keys (local user * n_items + item) for one batch, given the seed keys: draw, dedupe, top up.

    A user whose draws would outnumber the catalogue is sampled exactly by Gumbel top-k over all
    items instead (cheaper there than redrawing); so is anyone still short after ``max_rounds``.
    """
    nu, ni = len(counts), len(pop)
    seed_user = seeds // ni
    deficit = counts - np.bincount(seed_user, minlength=nu)
    mass = np.bincount(seed_user, weights=pop[seeds % ni], minlength=nu).astype(np.float64)
    blocks = [seeds]
    first_draws = _draws(deficit, mass, grid_d, grid_e, ni, first=True)
    dense = first_draws > ni
    for r in range(max_rounds):
        act = np.flatnonzero((deficit > 0) & ~dense)
        if len(act) == 0:
            break
        draws = (
            first_draws[act] if r == 0 else _draws(deficit[act], mass[act], grid_d, grid_e, ni, first=False)
        )
        # Groups of users with at most `max_draws` draws in all, so memory stays flat.
        group = np.cumsum(draws) // max_draws
        for g in np.unique(group):
            sel = group == g
            _draw_round(act[sel], draws[sel], deficit, mass, blocks, pop, cdf, rng)
        if len(blocks) > 4:
            blocks = [np.sort(np.concatenate(blocks))]
    left = np.flatnonzero(deficit > 0)
    if len(left):
        blocks.append(_dense_topk(left, deficit[left], blocks, pop, rng))
    return np.sort(np.concatenate(blocks))


def _draws(
    deficit: npt.NDArray[np.int64],
    mass: npt.NDArray[np.float64],
    grid_d: np.ndarray,
    grid_e: np.ndarray,
    ni: int,
    first: bool,
) -> npt.NDArray[np.int64]:
    """Draws to ask for so that most users fill their deficit in one go (a little overshoot is cut)."""
    target = deficit + 2 * np.sqrt(deficit) + 1
    raw = np.interp(target, grid_e, grid_d) if first else 1.2 * target
    draws = np.ceil(raw / np.maximum(1.0 - mass, 1e-6))
    return np.where(deficit > 0, np.minimum(draws, 64 * ni), 0).astype(np.int64)


def _draw_round(
    users: npt.NDArray[np.int64],
    draws: npt.NDArray[np.int64],
    deficit: npt.NDArray[np.int64],
    mass: npt.NDArray[np.float64],
    blocks: list[npt.NDArray[np.int64]],
    pop: npt.NDArray[np.float64],
    cdf: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> None:
    """One round of popularity draws for ``users``; updates ``deficit``, ``mass`` and ``blocks`` in place."""
    ni = len(pop)
    user = np.repeat(users.astype(np.int64), draws)
    item = np.minimum(np.searchsorted(cdf, rng.random(len(user)), side="right"), ni - 1)
    key = user * ni + item
    first = _first_new(key, blocks)
    # Keep each user's first `deficit` new items in draw order (successive sampling).
    seg = np.concatenate([[0], np.cumsum(draws)[:-1]])
    seen = np.cumsum(first)
    before = seen[seg] - first[seg]
    keep = first & (seen - np.repeat(before, draws) <= np.repeat(deficit[users], draws))
    got_user, got_item = user[keep], item[keep]
    blocks.append(np.sort(key[keep]))
    deficit -= np.bincount(got_user, minlength=len(deficit))
    mass += np.bincount(got_user, weights=pop[got_item], minlength=len(mass))


def _first_new(key: npt.NDArray[np.int64], blocks: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.bool_]:
    """Mask of draws that are the first draw of their key in this round and not among ``blocks``."""
    n = len(key)
    idx_bits = max(1, int(n).bit_length())
    if n and int(key.max()).bit_length() + idx_bits <= 62:
        comp = (key << idx_bits) | np.arange(n, dtype=np.int64)
        comp.sort()
        k = comp >> idx_bits
        head = np.ones(n, dtype=bool)
        head[1:] = k[1:] != k[:-1]
        cand_key, cand_idx = k[head], comp[head] & ((1 << idx_bits) - 1)
    else:
        cand_key, pos = np.unique(key, return_index=True)
        cand_idx = pos.astype(np.int64)
    fresh = np.ones(len(cand_key), dtype=bool)
    for b in blocks:
        if len(b):
            at = np.minimum(np.searchsorted(b, cand_key), len(b) - 1)
            fresh &= b[at] != cand_key
    out = np.zeros(n, dtype=bool)
    out[cand_idx[fresh]] = True
    return out


def _dense_topk(
    users: npt.NDArray[np.int64],
    need: npt.NDArray[np.int64],
    blocks: list[npt.NDArray[np.int64]],
    pop: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """Exact weighted sampling without replacement (Gumbel top-k) of ``need`` new items per user."""
    ni = len(pop)
    taken = np.concatenate(blocks)
    chunk = max(1, (1 << 22) // ni)
    out = []
    for s in range(0, len(users), chunk):
        us, k = users[s : s + chunk], need[s : s + chunk]
        row = np.full(int(us.max()) + 1, -1, dtype=np.int64)
        row[us] = np.arange(len(us))
        score = np.log(pop)[None, :] + rng.gumbel(size=(len(us), ni))
        mine = taken[(taken // ni <= us.max()) & (row[np.minimum(taken // ni, us.max())] >= 0)]
        score[row[mine // ni], mine % ni] = -np.inf
        order = np.argsort(-score, axis=1, kind="stable")[:, : int(k.max())]
        pick = np.arange(order.shape[1])[None, :] < k[:, None]
        out.append(np.repeat(us, k) * ni + order[pick])
    return np.concatenate(out)


def _ratings(
    user: npt.NDArray[np.int32],
    item: npt.NDArray[np.int32],
    uf: np.ndarray,
    itf: np.ndarray,
    ub: np.ndarray,
    ib: np.ndarray,
    cfg: SynthConfig,
    rng: np.random.Generator,
    chunk: int = 1 << 21,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """True scores and observed ratings, in chunks so the factor gathers stay small."""
    n = len(user)
    score = np.empty(n, dtype=np.float32)
    rating = np.empty(n, dtype=np.float32)
    for s in range(0, n, chunk):
        u, i = user[s : s + chunk], item[s : s + chunk]
        t = cfg.mean + ub[u] + ib[i] + np.einsum("ij,ij->i", uf[u], itf[i])
        x = t + cfg.noise * rng.standard_normal(len(u), dtype=np.float32)
        whole = rng.random(len(u), dtype=np.float32) < cfg.whole_star
        r = np.where(whole, np.rint(x), np.rint(2 * x) / 2)
        score[s : s + chunk] = t
        rating[s : s + chunk] = np.clip(r, 0.5, 5.0)
    return score, rating


def _timestamps(
    user: npt.NDArray[np.int32], counts: npt.NDArray[np.int64], rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Unix seconds in 1995–2015: each user is active over a log-uniform span (a session to years),
    with distinct, strictly increasing times along the history; the history order is random with
    respect to movieId, as in ml-20m where the file is sorted by movieId within a user."""
    n, full = len(user), LAST_TIMESTAMP - FIRST_TIMESTAMP
    c = counts.astype(np.float64)
    span = np.exp(rng.uniform(np.log(30 * c), np.log(full - c))).astype(np.int64)
    start = FIRST_TIMESTAMP + np.floor(rng.random(len(c)) * (full - span)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    gaps = rng.exponential(size=n)
    cum = np.cumsum(gaps)
    base = cum[offsets[:-1]] - gaps[offsets[:-1]]
    total = cum[offsets[1:] - 1] - base
    frac = (cum - base[user]) / total[user]
    rank = np.arange(n, dtype=np.int64) - offsets[:-1][user]
    seq = start[user] + np.floor(frac * (span - counts)[user]).astype(np.int64) + rank
    del cum, gaps, frac
    order = np.argsort((user.astype(np.int64) << 32) | rng.integers(0, 1 << 32, n, dtype=np.int64))
    ts = np.empty(n, dtype=np.int64)
    ts[order] = seq
    return ts
