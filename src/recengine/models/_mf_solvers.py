"""The two solvers of the ``mf`` model around the compiled kernels: the state they change, the
stratified SGD layout, and ALS's two CSR views of the ratings. Kept apart from the model class,
which holds parameters, checkpoints, prediction and fold-in."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from recengine.models import _mf_kernels as K
from recengine.training.data import epoch_rng

STATE_KEYS = ("user_factors", "item_factors", "user_bias", "item_bias")
_LAYOUT_STREAM = 0x1A17_0002  # a seed stream apart from the epochs' [seed, epoch]


class SolverParams(Protocol):
    """What the solvers read of the model's parameters."""

    @property
    def threads(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def reg(self) -> float: ...
    @property
    def reg_bias(self) -> float: ...


@dataclass
class State:
    """What an epoch changes, and what a checkpoint holds."""

    P: npt.NDArray[np.float32]
    Q: npt.NDArray[np.float32]
    bu: npt.NDArray[np.float32]
    bi: npt.NDArray[np.float32]

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + k: v for k, v in zip(STATE_KEYS, (self.P, self.Q, self.bu, self.bi), strict=True)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], prefix: str = "") -> State:
        P, Q, bu, bi = (np.ascontiguousarray(a[prefix + k], dtype=np.float32) for k in STATE_KEYS)
        return cls(P, Q, bu, bi)

    def copy(self) -> State:
        return State(self.P.copy(), self.Q.copy(), self.bu.copy(), self.bi.copy())


class SGDTrainer:
    """The stratified layout of the training rows, built once; one call per epoch.

    Users and items are dealt into ``B`` blocks by descending rating count in a snake order (0, 1,
    ..., B-1, B-1, ..., 0), so the strata that run side by side are about the same size. The rows
    are grouped by (user, item block), in a seeded random order inside each group; stratum ``s`` is
    the list of groups whose user block and item block make ``s``, walked in a new order each epoch.

    The kernel sees users and items renumbered block by block (``user_order``/``item_order``: new id
    to old), so the rows and biases one thread writes are contiguous and never share a cache line
    with the other thread's: with the original ids, neighbouring item biases fell in different
    blocks and two cores writing one line made two threads slower than one.
    """

    def __init__(
        self, u: np.ndarray, i: np.ndarray, r: np.ndarray, n_users: int, n_items: int, p: SolverParams
    ) -> None:
        B = p.threads
        self.B, self.seed, self.reg, self.reg_bias = B, p.seed, p.reg, p.reg_bias
        ub = snake_blocks(np.bincount(u, minlength=n_users), B)
        ib = snake_blocks(np.bincount(i, minlength=n_items), B)
        self.user_order = np.argsort(ub, kind="stable")
        self.item_order = np.argsort(ib, kind="stable")
        new_user, new_item = inverse(self.user_order), inverse(self.item_order)
        shuffle_seed = int(np.random.default_rng([p.seed, _LAYOUT_STREAM]).integers(0, 2**31))
        self.items, self.ratings, keys, self.seg_start = K.group_rows(
            new_user[u], new_item[i], np.ascontiguousarray(r, dtype=np.float32), ib[self.item_order],
            n_users, B, shuffle_seed,
        )  # fmt: skip
        self.seg_user = (keys // B).astype(np.int32)
        strat = ub[self.user_order][self.seg_user] * B + keys % B
        self.by_strat = np.argsort(strat, kind="stable")  # group ids, stratum after stratum
        self.strat_ptr = np.searchsorted(strat[self.by_strat], np.arange(B * B + 1)).astype(np.int64)

    def begin(self, s: State) -> State:
        """A copy of ``s`` in the kernel's numbering."""
        uo, io = self.user_order, self.item_order
        return State(s.P[uo], s.Q[io], s.bu[uo], s.bi[io])

    def end(self, work: State, s: State) -> None:
        """Copy the kernel's state back into ``s``, in the data's numbering."""
        uo, io = self.user_order, self.item_order
        s.P[uo], s.Q[io], s.bu[uo], s.bi[io] = work.P, work.Q, work.bu, work.bi

    def epoch(self, w: State, mu: float, epoch: int, lr: float, lr_bias: float) -> float:
        rng = epoch_rng(self.seed, epoch)
        seg_order = np.empty_like(self.by_strat)
        for a, b in itertools.pairwise(self.strat_ptr):
            seg_order[a:b] = self.by_strat[a:b][rng.permutation(b - a)]
        shifts = rng.permutation(self.B).astype(np.int64)
        sse = K.sgd_epoch(
            self.seg_user, self.seg_start, self.strat_ptr, seg_order, shifts, self.items, self.ratings,
            w.P, w.Q, w.bu, w.bi, mu, lr, lr_bias, self.reg, self.reg_bias,
        )  # fmt: skip
        return float(sse)


def inverse(order: np.ndarray) -> npt.NDArray[np.int32]:
    inv = np.empty(len(order), dtype=np.int32)
    inv[order] = np.arange(len(order), dtype=np.int32)
    return inv


def finite(s: State) -> bool:
    """Every factor and bias finite (a float32 overflow can leave the epoch's loss itself finite)."""
    return all_finite(s.P, s.Q, s.bu, s.bi)


def all_finite(*arrays: np.ndarray) -> bool:
    """One float64 sum per array, no boolean temporary; inf + -inf is NaN, not a RuntimeWarning."""
    with np.errstate(invalid="ignore", over="ignore"):
        return all(bool(np.isfinite(a.sum(dtype=np.float64))) for a in arrays)


def snake_blocks(counts: npt.NDArray[np.int64], B: int) -> npt.NDArray[np.int64]:
    order = np.argsort(-counts, kind="stable")
    pattern = np.concatenate([np.arange(B), np.arange(B)[::-1]])
    blocks = np.empty(len(counts), dtype=np.int64)
    blocks[order] = pattern[np.arange(len(counts)) % (2 * B)]
    return blocks


class ALSTrainer:
    """The ratings as a user-major and an item-major CSR, targets r - mu, for the two half-steps."""

    def __init__(
        self, u: np.ndarray, i: np.ndarray, t: np.ndarray, n_users: int, n_items: int, p: SolverParams
    ) -> None:
        self.by_user = csr(u, i, t, n_users)
        self.by_item = csr(i, u, t, n_items)
        self.u, self.i, self.t = u, i, t
        self.reg, self.reg_bias = p.reg, p.reg_bias

    def begin(self, s: State) -> State:
        return s  # ALS solves in the data's numbering, in place

    def end(self, work: State, s: State) -> None:
        pass

    def epoch(self, s: State, mu: float, epoch: int, lr: float, lr_bias: float) -> float:
        """User side, then item side; returns the training sum of squared errors after both, or NaN
        as soon as a side comes out non-finite (overflowed factors make its normal equations inf or
        NaN): the epoch loop reports that as divergence, and the next side is not solved from it."""
        ip, ix, tg = self.by_user
        K.als_half(ip, ix, tg, s.Q, s.bi, self.reg, self.reg_bias, s.P, s.bu)
        if not all_finite(s.P, s.bu):
            return math.nan
        ip, ix, tg = self.by_item
        K.als_half(ip, ix, tg, s.P, s.bu, self.reg, self.reg_bias, s.Q, s.bi)
        if not all_finite(s.Q, s.bi):
            return math.nan
        return float(K.sum_sq_error(self.u, self.i, self.t, s.P, s.Q, s.bu, s.bi, 0.0))


def csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int) -> tuple[np.ndarray, ...]:
    order = np.lexsort((cols, rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))]).astype(np.int64)
    return indptr, cols[order].astype(np.int32), vals[order].astype(np.float64)
