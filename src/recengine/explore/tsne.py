"""2-D maps of item vectors by t-SNE, bounded in time on large catalogs.

openTSNE (FFT-accelerated gradients, approximate neighbours) is used when it is installed: on two cores
it maps 50,000 items in a few minutes where scikit-learn's Barnes-Hut needs far longer, so the
default cap is 50,000 items with openTSNE and 10,000 with the scikit-learn fallback. Beyond the cap a
seeded subsample is mapped (see :func:`subsample`). Vectors are L2-normalised first, so distances on
the map follow cosine similarity like the neighbour tables and clusters do, and reduced to 50
dimensions by PCA when wider (the usual t-SNE preprocessing; it mostly removes noise).
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from recengine.errors import ConfigError

from .embeddings import unit_rows

Backend = Literal["auto", "opentsne", "sklearn"]
MAX_ITEMS = {"opentsne": 50_000, "sklearn": 10_000}
PCA_DIM = 50
PARALLEL_FROM = 10_000  # below this, threads cost more in synchronisation than they save


def available_backend(backend: Backend = "auto") -> str:
    """The t-SNE implementation that will run: openTSNE where importable (for "auto")."""
    if backend == "sklearn":
        return "sklearn"
    try:
        import openTSNE  # noqa: F401
    except ImportError:
        if backend == "opentsne":
            raise ConfigError("t-SNE backend 'opentsne' needs `pip install openTSNE`") from None
        return "sklearn"
    return "opentsne"


def default_max_items(backend: Backend = "auto") -> int:
    return MAX_ITEMS[available_backend(backend)]


def subsample(
    counts: npt.ArrayLike,
    max_items: int,
    seed: int = 0,
    keep: npt.ArrayLike | None = None,
) -> npt.NDArray[np.int64]:
    """Sorted indices of at most ``max_items`` items to map, chosen reproducibly from ``seed``.

    All items when they fit. Otherwise: the items in ``keep`` (e.g. titles asked for by name), then the
    most-rated items up to half the cap (so the labelled, familiar titles are always on the map), and
    the rest drawn without replacement with probability proportional to 1 + the item's rating count
    (Efraimidis–Spirakis keys), so rarely rated items, whose vectors say little, are thinned most.
    """
    c = np.asarray(counts, dtype=np.float64)
    n = len(c)
    if max_items < 1:
        raise ConfigError(f"max_items must be at least 1, got {max_items}")
    if n <= max_items:
        return np.arange(n, dtype=np.int64)
    chosen = np.zeros(n, dtype=bool)
    if keep is not None:
        k = np.unique(np.asarray(keep, dtype=np.int64))[:max_items]
        chosen[k] = True
    top = np.argsort(-c, kind="stable")
    top = top[~chosen[top]]
    chosen[top[: max(0, max_items // 2 - int(chosen.sum()))]] = True
    left = max_items - int(chosen.sum())
    if left > 0:
        rng = np.random.default_rng(seed)
        keys = np.log(rng.random(n)) / (1.0 + c)  # largest keys = weighted sample without replacement
        keys[chosen] = -np.inf
        chosen[np.argsort(-keys, kind="stable")[:left]] = True
    return np.flatnonzero(chosen).astype(np.int64)


def prepare(vectors: npt.ArrayLike, seed: int = 0) -> npt.NDArray[np.float32]:
    """Unit rows, then PCA to :data:`PCA_DIM` dimensions when wider."""
    x = unit_rows(vectors)
    if x.shape[1] > PCA_DIM and x.shape[0] > PCA_DIM:
        from sklearn.decomposition import PCA

        x = PCA(PCA_DIM, random_state=seed).fit_transform(x).astype(np.float32)
    return x


def tsne_2d(
    vectors: npt.ArrayLike,
    *,
    seed: int = 0,
    backend: Backend = "auto",
    perplexity: float = 30.0,
    n_jobs: int | None = None,
    iterations: int = 750,
) -> tuple[npt.NDArray[np.float64], dict[str, Any]]:
    """2-D t-SNE coordinates of ``vectors`` (rows) and what was run (backend, seconds, parameters).

    ``iterations`` counts the early-exaggeration phase (a third, at most 250) and the rest.
    ``n_jobs`` defaults to one thread below :data:`PARALLEL_FROM` items (on a busy machine two
    threads made a 60-item map 30 times slower) and to every core available above.
    """
    x = prepare(vectors, seed)
    n = len(x)
    used = available_backend(backend)
    jobs = n_jobs or (_cores() if n >= PARALLEL_FROM else 1)
    perp = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    info: dict[str, Any] = {"backend": used, "n": n, "perplexity": perp, "seed": seed, "n_jobs": jobs}
    t0 = time.perf_counter()
    if n < 4:  # t-SNE is undefined for so few points; spread them on a line
        y = np.column_stack([np.arange(n, dtype=np.float64), np.zeros(n)])
        info.update(backend="none", seconds=0.0)
        return y, info
    early = min(250, iterations // 3)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(jobs):  # BLAS and scikit-learn's OpenMP gradient ignore n_jobs otherwise
        y = _run(x, used, perp, iterations, early, jobs, seed)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    info["iterations"] = iterations
    return y, info


def _run(
    x: npt.NDArray[np.float32], used: str, perp: float, iterations: int, early: int, jobs: int, seed: int
) -> npt.NDArray[np.float64]:
    if used == "opentsne":
        from openTSNE import TSNE as OpenTSNE

        emb = OpenTSNE(
            perplexity=perp,
            n_iter=iterations - early,
            early_exaggeration_iter=early,
            n_jobs=jobs,
            random_state=seed,
            negative_gradient_method="fft" if len(x) > 2000 else "bh",
        ).fit(x)
        return np.asarray(emb, dtype=np.float64)
    from sklearn.manifold import TSNE

    y = TSNE(
        2, perplexity=perp, init="pca", random_state=seed, n_jobs=jobs, max_iter=max(iterations, 250)
    ).fit_transform(x)
    return np.asarray(y, dtype=np.float64)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
