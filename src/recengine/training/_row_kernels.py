"""Compiled Adagrad and Adam steps for the rows of an embedding table that one batch touched (CPU).

Why compiled: done with tensor ops, a sparse step sorts the batch's row ids to sum duplicates and
then gathers, updates and scatters the state and the table in about ten passes; this does it with
no sort, one pass over the batch and two over its distinct rows: about two to three times faster on
a deep-mf step (Adagrad) and on an Object2Vec history table's step (Adam).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _sum_rows(rows: np.ndarray, values: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The distinct rows of ``rows`` in order of first appearance and each one's summed gradient
    (duplicates added in batch order); leaves ``slot[row]`` at the row's place in that order."""
    b, d = values.shape
    uniq = np.empty(b, np.int64)
    sums = np.empty((b, d), values.dtype)
    n = 0
    for k in range(b):
        r = rows[k]
        j = slot[r]
        if j < 0:
            j = n
            slot[r] = j
            uniq[j] = r
            n += 1
            for c in range(d):
                sums[j, c] = values[k, c]
        else:
            for c in range(d):
                sums[j, c] += values[k, c]
    return uniq, sums, n


@njit(nogil=True, cache=True)
def adagrad_rows(
    rows: np.ndarray,  # int64 (B,): the table row of each gradient row, duplicates allowed
    values: np.ndarray,  # (B, D): gradient rows
    acc: np.ndarray,  # (N, D): Adagrad's sum of squared gradients, updated in place
    param: np.ndarray,  # (N, D): the table, updated in place
    slot: np.ndarray,  # int64 (N,): scratch, all -1 on entry and on return
    neg_lr: float,  # -learning rate, in the table's dtype
    eps: float,
) -> tuple[int, float]:
    """Sum the gradient rows of each distinct row (in batch order), then ``acc += g²`` and
    ``param -= lr * g / (sqrt(acc) + eps)`` on those rows only; returns the number of distinct rows
    (and a value of no use)."""
    uniq, sums, n = _sum_rows(rows, values, slot)
    d = values.shape[1]
    # Read one value of each cache line of the rows first: independent loads the CPU overlaps, where
    # the update loop below waits on one row at a time (the tables are far larger than the cache).
    touch = values.dtype.type(0)
    for j in range(n):
        r = uniq[j]
        for c in range(0, d, 8):
            touch += acc[r, c] + param[r, c]
    for j in range(n):
        r = uniq[j]
        slot[r] = -1
        for c in range(d):
            g = sums[j, c]
            a = acc[r, c] + g * g
            acc[r, c] = a
            param[r, c] = param[r, c] + neg_lr * (g / (np.sqrt(a) + eps))
    return n, touch  # touch returned so that the reads are kept


@njit(nogil=True, cache=True)
def adam_rows(
    rows: np.ndarray,  # int64 (B,): the table row of each gradient row, duplicates allowed
    values: np.ndarray,  # (B, D): gradient rows
    exp_avg: np.ndarray,  # (N, D): Adam's first moment, updated in place
    exp_avg_sq: np.ndarray,  # (N, D): Adam's second moment, updated in place
    param: np.ndarray,  # (N, D): the table, updated in place
    slot: np.ndarray,  # int64 (N,): scratch, all -1 on entry and on return
    one_minus_beta1: float,  # these in the table's dtype
    beta2: float,
    one_minus_beta2: float,
    neg_step_size: float,  # -lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    eps: float,
    weight_decay: float,
) -> tuple[int, float]:
    """Sum the gradient rows of each distinct row (in batch order), add ``weight_decay * param``,
    then SparseAdam's lazy update on those rows only: ``m += (1 - b1)(g - m)``,
    ``v = b2 v + (1 - b2) g²``, ``param -= step_size * m / (sqrt(v) + eps)``; returns the number
    of distinct rows (and a value of no use)."""
    uniq, sums, n = _sum_rows(rows, values, slot)
    touch = values.dtype.type(0)  # as in adagrad_rows: overlapped loads of the rows first
    for j in range(n):
        r = uniq[j]
        for c in range(0, values.shape[1], 8):
            touch += exp_avg[r, c] + exp_avg_sq[r, c] + param[r, c]
    for j in range(n):
        r = uniq[j]
        slot[r] = -1
        for c in range(values.shape[1]):
            p = param[r, c]
            g = sums[j, c]
            if weight_decay != 0:
                g = g + weight_decay * p
            m = exp_avg[r, c]
            m = m + one_minus_beta1 * (g - m)
            exp_avg[r, c] = m
            v = exp_avg_sq[r, c] * beta2 + one_minus_beta2 * g * g
            exp_avg_sq[r, c] = v
            param[r, c] = p + neg_step_size * (m / (np.sqrt(v) + eps))
    return n, touch  # touch returned so that the reads are kept
