"""Compiled loops of the ``mf`` model: one SGD epoch over a stratified schedule, one ALS half-step,
row predictions and the fold-in solve.

Why strata: plain Hogwild lets two threads update the same item vector at once, so the result
depends on thread timing. Here users and items are each cut into ``B`` blocks (B = threads); the
ratings of user block ``a`` and item block ``b`` form stratum ``(a, b)``. A sub-epoch runs the ``B``
strata ``(t, (t + shift) % B)``, one per thread: they share no user and no item, so there are no
races and no locks, and each thread walks its stratum in a fixed order. The result is therefore
identical for a given seed and ``B`` however many cores run it (DSGD, Gemulla et al. 2011; FPSGD).
Inside a stratum the ratings are grouped by user, so the user's row stays in a local buffer while
the user's ratings stream past (the project's notes measured 40 M updates/s grouped by user against
12 M/s in random order); the order of the groups is reshuffled every epoch.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

# ----- SGD -----------------------------------------------------------------------------------------


@njit(parallel=True, fastmath=True, nogil=True, cache=True)
def sgd_epoch(
    seg_user: np.ndarray,  # int32 (n_seg,): the user of each (stratum, user) run of ratings
    seg_start: np.ndarray,  # int64 (n_seg + 1,): run j is rows seg_start[j]:seg_start[j + 1]
    strat_ptr: np.ndarray,  # int64 (B*B + 1,): the runs of stratum s are seg_order[strat_ptr[s]:...]
    seg_order: np.ndarray,  # int64 (n_seg,): this epoch's order of runs, a permutation inside each stratum
    shifts: np.ndarray,  # int64 (B,): this epoch's order of sub-epochs
    items: np.ndarray,  # int32 (n,)
    ratings: np.ndarray,  # float32 (n,)
    P: np.ndarray,  # float32 (n_users, k), updated in place
    Q: np.ndarray,  # float32 (n_items, k), updated in place
    bu: np.ndarray,  # float32 (n_users,)
    bi: np.ndarray,  # float32 (n_items,)
    mu: float,
    lr: float,
    lr_bias: float,
    reg: float,
    reg_bias: float,
) -> float:
    """One pass over every rating; returns the sum of squared errors before each update."""
    B = shifts.shape[0]
    k = P.shape[1]
    sse = np.zeros(B)
    mu32 = np.float32(mu)
    lr32, lrb32 = np.float32(lr), np.float32(lr_bias)
    reg32, regb32 = np.float32(reg), np.float32(reg_bias)
    for step in range(B):
        shift = shifts[step]
        for t in prange(B):
            s = t * B + (t + shift) % B
            acc = 0.0
            pu = np.empty(k, np.float32)  # the user's row, local: no aliasing with Q, ~35% faster
            for jj in range(strat_ptr[s], strat_ptr[s + 1]):
                j = seg_order[jj]
                u = seg_user[j]
                b_u = bu[u]
                for f in range(k):
                    pu[f] = P[u, f]
                for row in range(seg_start[j], seg_start[j + 1]):
                    i = items[row]
                    q = Q[i]
                    dot = np.float32(0.0)
                    for f in range(k):
                        dot += pu[f] * q[f]
                    e = ratings[row] - (mu32 + b_u + bi[i] + dot)
                    acc += e * e
                    b_u += lrb32 * (e - regb32 * b_u)
                    bi[i] += lrb32 * (e - regb32 * bi[i])
                    for f in range(k):
                        pf = pu[f]
                        qf = q[f]
                        pu[f] = pf + lr32 * (e * qf - reg32 * pf)
                        q[f] = qf + lr32 * (e * pf - reg32 * qf)
                for f in range(k):
                    P[u, f] = pu[f]
                bu[u] = b_u
            sse[t] += acc
    total = 0.0
    for t in range(B):  # fixed order: the sum is deterministic
        total += sse[t]
    return total


@njit(cache=True, nogil=True)
def group_rows(
    users: np.ndarray,  # int32 (n,)
    items: np.ndarray,  # int32 (n,)
    ratings: np.ndarray,  # float32 (n,)
    item_block: np.ndarray,  # int64 (n_items,)
    n_users: int,
    B: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by (user, item block) with a counting sort (O(n), no comparison sort of 20M
    keys), then shuffled inside each group (seeded Fisher-Yates, cache-local); returns items,
    ratings, and for every non-empty group its key user * B + block and its first row."""
    n = users.shape[0]
    n_keys = n_users * B
    start = np.zeros(n_keys + 1, np.int64)
    for row in range(n):
        start[users[row] * B + item_block[items[row]] + 1] += 1
    n_groups = 0
    for k in range(n_keys):
        if start[k + 1] > 0:
            n_groups += 1
        start[k + 1] += start[k]
    fill = start[:-1].copy()
    items_out = np.empty(n, np.int32)
    ratings_out = np.empty(n, np.float32)
    for row in range(n):
        k = users[row] * B + item_block[items[row]]
        pos = fill[k]
        fill[k] = pos + 1
        items_out[pos] = items[row]
        ratings_out[pos] = ratings[row]
    state = np.uint64(seed)  # splitmix64: a local, seeded stream (no global generator is touched)
    keys = np.empty(n_groups, np.int64)
    starts = np.empty(n_groups + 1, np.int64)
    g = 0
    for k in range(n_keys):
        lo, hi = start[k], start[k + 1]
        if hi > lo:
            keys[g] = k
            starts[g] = lo
            g += 1
            for a in range(hi - 1, lo, -1):
                state += np.uint64(0x9E3779B97F4A7C15)
                z = state
                z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
                z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
                z ^= z >> np.uint64(31)
                b = lo + np.int64(z % np.uint64(a - lo + 1))
                items_out[a], items_out[b] = items_out[b], items_out[a]
                ratings_out[a], ratings_out[b] = ratings_out[b], ratings_out[a]
    starts[n_groups] = n
    return items_out, ratings_out, keys, starts


# ----- ALS -----------------------------------------------------------------------------------------


@njit(parallel=True, fastmath=True, nogil=True, cache=True)
def als_half(
    indptr: np.ndarray,  # int64: CSR of the side being solved (rows = users, or items for the item side)
    indices: np.ndarray,  # int32: the other side's ids
    targets: np.ndarray,  # float64: rating - mu, in CSR order
    Y: np.ndarray,  # float32 (n_other, k): the frozen side's factors
    ybias: np.ndarray,  # float32 (n_other,): the frozen side's biases
    reg: float,
    reg_bias: float,
    X: np.ndarray,  # float32 (n_rows, k): solved in place
    xbias: np.ndarray,  # float32 (n_rows,): solved in place
) -> None:
    """For every row, the exact minimiser of sum_j (t_j - b_other_j - b - x.y_j)^2 + n (reg |x|^2 +
    reg_bias b^2) over (b, x): the normal equations of the k + 1 unknowns, by Cholesky."""
    n_rows = indptr.shape[0] - 1
    for r in prange(n_rows):
        lo, hi = indptr[r], indptr[r + 1]
        sol = solve_row(indices[lo:hi], targets[lo:hi], Y, ybias, reg, reg_bias)
        xbias[r] = sol[0]
        for f in range(X.shape[1]):
            X[r, f] = sol[f + 1]


@njit(fastmath=True, nogil=True, cache=True, error_model="numpy")
def solve_row(
    others: np.ndarray, targets: np.ndarray, Y: np.ndarray, ybias: np.ndarray, reg: float, reg_bias: float
) -> np.ndarray:
    """(b, x) for one user (or item) given its ratings; zeros when it has none. Used by fold-in too.

    Overflowed factors (a huge ``init_std``, a diverging run) make the normal equations inf or NaN,
    and under fastmath a NaN pivot may compare equal to zero: numba's default Python error model then
    raised ZeroDivisionError from inside the parallel loop. The NumPy error model divides as IEEE
    does (inf, NaN; the same bits for finite pivots), and the solver's finite-check reports it.
    """
    k = Y.shape[1]
    m = k + 1
    n = others.shape[0]
    out = np.zeros(m)
    if n == 0:
        return out
    A = np.zeros((m, m))
    rhs = np.zeros(m)
    a = np.empty(m)
    a[0] = 1.0
    for j in range(n):
        o = others[j]
        for f in range(k):
            a[f + 1] = Y[o, f]
        y = targets[j] - ybias[o]
        for p in range(m):
            ap = a[p]
            rhs[p] += ap * y
            for q in range(p + 1):
                A[p, q] += ap * a[q]
    A[0, 0] += max(n * reg_bias, 1e-12)
    for p in range(1, m):
        A[p, p] += max(n * reg, 1e-12)
    # Cholesky A = L L^T in the lower triangle, then two triangular solves.
    for p in range(m):
        s = A[p, p]
        for q in range(p):
            s -= A[p, q] * A[p, q]
        d = np.sqrt(max(s, 1e-300))
        A[p, p] = d
        for r in range(p + 1, m):
            t = A[r, p]
            for q in range(p):
                t -= A[r, q] * A[p, q]
            A[r, p] = t / d
    for p in range(m):
        t = rhs[p]
        for q in range(p):
            t -= A[p, q] * out[q]
        out[p] = t / A[p, p]
    for p in range(m - 1, -1, -1):
        t = out[p]
        for q in range(p + 1, m):
            t -= A[q, p] * out[q]
        out[p] = t / A[p, p]
    return out


# ----- prediction ----------------------------------------------------------------------------------


PARALLEL_PREDICT_ROWS = 100_000  # fewer pairs than this: one thread (waking a pool costs more)


def predict_rows(
    users: np.ndarray,
    items: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    bu: np.ndarray,
    bi: np.ndarray,
    mu: float,
) -> np.ndarray:
    """mu + b_u + b_i + p_u . q_i per pair, without an (n, k) temporary.

    A server's request of a thousand pairs is microseconds of work on one thread, but took
    milliseconds on all of them, waiting for cores busy with other requests: small calls run on
    the calling thread alone (numba's thread count is per calling thread)."""
    if len(users) >= PARALLEL_PREDICT_ROWS:
        return _predict_rows(users, items, P, Q, bu, bi, mu)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return _predict_rows(users, items, P, Q, bu, bi, mu)
    finally:
        numba.set_num_threads(previous)


@njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _predict_rows(
    users: np.ndarray,
    items: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    bu: np.ndarray,
    bi: np.ndarray,
    mu: float,
) -> np.ndarray:
    out = np.empty(users.shape[0])
    for row in prange(users.shape[0]):
        out[row] = _pair_score(users[row], items[row], P, Q, bu, bi, mu)
    return out


@njit(fastmath=True, nogil=True, cache=True, inline="always")
def _pair_score(
    u: int, i: int, P: np.ndarray, Q: np.ndarray, bu: np.ndarray, bi: np.ndarray, mu: float
) -> float:
    dot = 0.0
    for f in range(P.shape[1]):
        dot += P[u, f] * Q[i, f]
    return mu + bu[u] + bi[i] + dot


@njit(parallel=True, fastmath=True, nogil=True, cache=True)
def sum_sq_error(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    bu: np.ndarray,
    bi: np.ndarray,
    mu: float,
) -> float:
    """Sum of squared errors over rows, in fixed chunks so the total does not depend on threads."""
    n = users.shape[0]
    k = P.shape[1]
    n_chunks = 64
    part = np.zeros(n_chunks)
    size = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        acc = 0.0
        for row in range(c * size, min(n, (c + 1) * size)):
            u, i = users[row], items[row]
            dot = 0.0
            for f in range(k):
                dot += P[u, f] * Q[i, f]
            e = ratings[row] - (mu + bu[u] + bi[i] + dot)
            acc += e * e
        part[c] = acc
    total = 0.0
    for c in range(n_chunks):
        total += part[c]
    return total
