"""Baselines every figure is set beside: global mean, per-user mean, regularized biases, popularity."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import Field

from recengine.data.interactions import Interactions
from recengine.models.base import Capabilities, FloatArray, Params, Recommender


class GlobalMean(Recommender):
    """Predicts the mean training rating for every pair."""

    name = "global-mean"
    capabilities = Capabilities(rating=True, topn=True, new_users=True, new_items=True)

    def _fit(self, train: Interactions) -> None:
        self.mu = float(train.values().mean(dtype=np.float64))

    def _predict(self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]) -> FloatArray:
        return np.full(len(users), self.mu)

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.floating]:
        return np.full((len(users), len(self.items)), self.mu, dtype=np.float32)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"mu": np.array([self.mu])}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.mu = float(arrays["mu"][0])

    def _fold_in(self, items: npt.NDArray[np.int64], ratings: FloatArray) -> FloatArray:
        return np.zeros(0)

    def _score_folded(self, vector: FloatArray) -> FloatArray:
        return np.full(len(self.items), self.mu)


class UserMeanParams(Params):
    min_ratings: int = Field(1, ge=1, description="users with fewer training ratings get the global mean")


class UserMean(Recommender):
    """Each user's mean training rating (the Object2Vec notebook's baseline).

    Users with fewer than ``min_ratings`` training ratings get the global mean: an explicit fallback,
    counted by the evaluation as cold rows.
    """

    name = "user-mean"
    ParamsModel = UserMeanParams
    capabilities = Capabilities(rating=True, topn=True)
    params: UserMeanParams

    def _fit(self, train: Interactions) -> None:
        v = train.values().astype(np.float64)
        self.mu = float(v.mean())
        n = np.bincount(train.user, minlength=train.n_users)
        s = np.bincount(train.user, weights=v, minlength=train.n_users)
        self.user_mean = np.where(n >= self.params.min_ratings, s / np.maximum(n, 1), self.mu)

    def _predict(self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]) -> FloatArray:
        return self.user_mean[users]

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.floating]:
        return np.repeat(self.user_mean[users, None].astype(np.float32), len(self.items), axis=1)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"mu": np.array([self.mu]), "user_mean": self.user_mean}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.mu = float(arrays["mu"][0])
        self.user_mean = arrays["user_mean"].astype(np.float64)


class BiasParams(Params):
    reg_user: float = Field(15.0, ge=0, description="shrinkage of user biases (Surprise's reg_u)")
    reg_item: float = Field(10.0, ge=0, description="shrinkage of item biases (Surprise's reg_i)")
    epochs: int = Field(10, ge=1, le=1000, description="alternating least-squares sweeps")


class Bias(Recommender):
    """mu + b_u + b_i, biases shrunk toward zero and solved by alternating least squares.

    The same estimator as Surprise's BaselineOnly (ALS, reg_i=10, reg_u=15, 10 epochs), vectorized:
    one sweep is two ``bincount`` calls, so it fits ml-20m in seconds. A user or item without
    training ratings keeps bias 0, which is this model's definition, not a fallback.
    """

    name = "bias"
    ParamsModel = BiasParams
    capabilities = Capabilities(rating=True, topn=True, new_users=True)
    params: BiasParams

    def _fit(self, train: Interactions) -> None:
        r = train.values().astype(np.float64)
        u, i = train.user, train.item
        self.mu = float(r.mean())
        n_u = np.bincount(u, minlength=train.n_users)
        n_i = np.bincount(i, minlength=train.n_items)
        bu = np.zeros(train.n_users)
        bi = np.zeros(train.n_items)
        dev = r - self.mu
        den_i = self.params.reg_item + n_i
        den_u = self.params.reg_user + n_u
        for _ in range(self.params.epochs):
            bi = _safe_div(np.bincount(i, weights=dev - bu[u], minlength=train.n_items), den_i)
            bu = _safe_div(np.bincount(u, weights=dev - bi[i], minlength=train.n_users), den_u)
        self.bu, self.bi = bu, bi

    def _predict(self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]) -> FloatArray:
        return self.mu + self.bu[users] + self.bi[items]

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.floating]:
        return (self.mu + self.bu[users, None] + self.bi[None, :]).astype(np.float32)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"mu": np.array([self.mu]), "user_bias": self.bu, "item_bias": self.bi}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.mu = float(arrays["mu"][0])
        self.bu = arrays["user_bias"].astype(np.float64)
        self.bi = arrays["item_bias"].astype(np.float64)

    def _fold_in(self, items: npt.NDArray[np.int64], ratings: FloatArray) -> FloatArray:
        """The new user's bias, with the same shrinkage as in training (item side frozen)."""
        return np.array([(ratings - self.mu - self.bi[items]).sum() / (self.params.reg_user + len(items))])

    def _score_folded(self, vector: FloatArray) -> FloatArray:
        return self.mu + vector[0] + self.bi


def _safe_div(num: npt.NDArray[np.number], den: npt.NDArray[np.number]) -> FloatArray:
    """num / den, 0 where den is 0 (no ratings and no shrinkage: the bias stays 0)."""
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)


class PopularityParams(Params):
    min_rating: float | None = Field(
        None, description="count only training ratings at or above this value (None: count every row)"
    )


class Popularity(Recommender):
    """Ranks items by how many training users interacted with them; does not predict ratings."""

    name = "popularity"
    ParamsModel = PopularityParams
    capabilities = Capabilities(rating=False, topn=True, new_users=True)
    params: PopularityParams

    def _fit(self, train: Interactions) -> None:
        keep = np.ones(len(train), dtype=bool)
        if self.params.min_rating is not None and train.rating is not None:
            keep = train.rating >= self.params.min_rating
        self.counts = np.bincount(train.item[keep], minlength=train.n_items).astype(np.float32)

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.floating]:
        return np.broadcast_to(self.counts, (len(users), len(self.counts)))

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts = arrays["counts"].astype(np.float32)

    def _fold_in(self, items: npt.NDArray[np.int64], ratings: FloatArray) -> FloatArray:
        return np.zeros(0)

    def _score_folded(self, vector: FloatArray) -> FloatArray:
        return self.counts.astype(np.float64)
