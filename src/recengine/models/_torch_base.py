"""What the PyTorch rating models (``deep-mf``, ``neumf``) share, so that both behave alike.

A model brings a :class:`~recengine.models._torch_nets.PairNet` (a network split at the user/item
boundary). Everything else lives here once: params and presets, training through the one loop in
:mod:`recengine.training`, batched prediction, scoring a batch of
users against every item (the item side computed once, items in chunks), fold-in of a new user
(a fresh user vector optimized with every weight frozen), and the state for artifacts.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from recengine.data.interactions import Interactions
from recengine.errors import DataError
from recengine.models._torch_nets import PairNet, RatingTask, to_rating
from recengine.models.base import Capabilities, FloatArray, NotFittedError, Recommender
from recengine.training.config import LR_MAX, TrainConfig, auto_batch_size
from recengine.training.device import seeded

#: Pairs per forward call when predicting or scoring: bounds the (pairs × hidden) activations
#: to a few tens of MB whatever the batch of users or the catalog size.
PAIR_CHUNK = 1 << 16


class TorchRatingParams(TrainConfig):
    """Training settings (from the shared loop) plus what every PyTorch rating model takes.

    Defaults were chosen on held-out training rows only (10 % of ua.base, of u1.base and of the
    mlsmall-random training rows), never on test rows. Adagrad beat Adam there for both models
    (Adam lets rarely rated items jump at each visit and overfit by the second epoch on mlsmall),
    from a small start (init_std 0.01) with a light per-row L2, stopped early on the loop's 5 %
    validation cut; learning-rate schedules did not help. Adagrad also takes sparse embedding
    gradients, which is what keeps training fast on ml-20m-sized tables.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    epochs: int = Field(60, ge=1, description="passes over the training rows (at most: early stopping)")
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adagrad"
    lr: float = Field(0.02, gt=0, le=LR_MAX, description="learning rate")
    preset: str | None = Field(None, description="named configuration that fills the defaults")
    reg: float = Field(0.01, ge=0, description="L2 on the user and item vectors of each batch row")
    reg_power: float = Field(
        0.0,
        ge=0,
        le=1,
        description="weight of a row's L2 is (mean count / its count) ** reg_power: 0 shrinks rows in "
        "proportion to how often they are seen (SGD-style MF), 1 shrinks every row alike (MAP)",
    )
    init_std: float = Field(0.01, gt=0, description="standard deviation of the initial embeddings")
    center: bool = Field(True, description="start the output at the training mean (log class prior)")
    fold_in_steps: int = Field(40, ge=1, le=1000, description="L-BFGS iterations of a new user's fold-in")
    fold_in_reg: float = Field(1.0, ge=0, description="pull of a folded-in user toward the average user")

    @property
    def sparse_embeddings(self) -> bool:
        """Sparse embedding gradients where the optimizer takes them to the same result: Adagrad
        without weight decay leaves rows outside a batch alone either way, and sparse it touches only
        the batch's rows instead of every table entry each step (what makes ml-20m-sized tables fast)."""
        return self.optimizer == "adagrad" and self.weight_decay == 0

    @model_validator(mode="before")
    @classmethod
    def _fill_preset(cls, data: Any) -> Any:
        """A preset fills values; those given explicitly win (an unknown name fails in the field check)."""
        if isinstance(data, dict) and data.get("preset") in cls.PRESETS:
            return {**cls.PRESETS[data["preset"]], **data}
        return data

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in cls.PRESETS:
            known = ", ".join(cls.PRESETS) or "none"
            raise ValueError(f"unknown preset {value!r}; known presets: {known}")
        return value


def _row_weights(ids: npt.NDArray[np.int32], n: int, power: float) -> npt.NDArray[np.float32]:
    """Per training row: (mean count / count of its id) ** power."""
    counts = np.bincount(ids, minlength=n).astype(np.float64)
    mean = counts[counts > 0].mean()
    return ((mean / counts[ids]) ** power).astype(np.float32)


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def center_output(
    net: PairNet,
    target: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64] | None,
    values: npt.NDArray[np.float64] | None,
) -> None:
    """Start ``net`` from the training mean (or the class frequencies), so early epochs learn structure,
    not the offset; an all-zero start leaves a few-step run (like the seed's) far off the scale."""
    out = net.get_submodule("output")
    if not isinstance(out, nn.Linear) or out.bias is None:
        raise TypeError("a PairNet's 'output' must be an nn.Linear with a bias")
    with torch.no_grad():
        if values is None or labels is None:
            out.bias.fill_(float(target.mean(dtype=np.float64)))
        else:
            freq = np.bincount(labels, minlength=len(values)) + 1.0
            out.bias.copy_(torch.from_numpy(np.log(freq / freq.sum())).float())


class TorchRecommender(Recommender):
    """Base of the PyTorch rating models: fit through the shared loop, batched inference, fold-in."""

    capabilities = Capabilities(rating=True, topn=True, new_users=True)
    params: TorchRatingParams

    def __init__(self, params: Any = None, **overrides: Any) -> None:
        super().__init__(params, **overrides)
        self.net: PairNet | None = None
        self._prior: Tensor | None = None

    # ----- what a model supplies ---------------------------------------------------------------
    @abstractmethod
    def _build_net(self, n_users: int, n_items: int, n_genres: int) -> PairNet:
        """The untrained network for these counts (``n_genres`` 0 when item genres are not used)."""

    def _item_genres(self, train: Interactions) -> npt.NDArray[np.float32] | None:
        """Item × genre weights aligned to ``train.items``, for models that read genres."""
        return None

    def _argmax(self) -> bool:
        return False

    def _class_values(self) -> npt.NDArray[np.float64] | None:
        """Rating values of the classifier head's classes; None for a regression head."""
        return None

    # ----- fitting ---------------------------------------------------------------------------------
    def _fit(self, train: Interactions) -> None:
        from recengine.training.loop import train as run_training

        values = self._class_values()
        target = train.values().astype(np.float32)
        arrays: dict[str, np.ndarray] = {"user": train.user, "item": train.item, "target": target}
        if values is not None:
            arrays["label"] = self._labels(target)
        if self.params.reg > 0 and self.params.reg_power > 0:
            arrays["user_weight"] = _row_weights(train.user, train.n_users, self.params.reg_power)
            arrays["item_weight"] = _row_weights(train.item, train.n_items, self.params.reg_power)
        genres = self._item_genres(train)
        with seeded(self.params.seed):  # initial weights from the seed alone; caller's RNG untouched
            net = self._build_net(train.n_users, train.n_items, 0 if genres is None else genres.shape[1])
        if genres is not None:
            net.get_buffer("item_genres").copy_(torch.from_numpy(genres))
        if self.params.center:
            center_output(net, target, arrays.get("label"), values)
        self.net, self._prior = net, None
        vals = None if values is None else torch.tensor(values, dtype=torch.float32)
        task = RatingTask(net, vals, self.params.reg, self._argmax())
        # Adagrad's sparse updates are built from torch's own valid indices; saying so explicitly (the
        # default, restored afterwards) keeps torch from warning that the checks are implicitly off.
        with torch.sparse.check_sparse_tensor_invariants(enable=False):
            result = run_training(
                task,
                arrays,
                self._train_config(len(target)),
                checkpoint_dir=self.checkpoint_dir,
                resume=self.resume,
                progress=self.progress,
                identity=self.model_settings(),
            )
        self.history = result.as_dict()
        net.eval()

    def model_settings(self) -> dict[str, Any]:
        """The params that are the model's own rather than the loop's (which the loop compares itself),
        less those that only say where or how fast it runs: what a resumed fit must share."""
        loop = set(TrainConfig.model_fields) | {"member_processes"}
        return {k: v for k, v in self.get_params().items() if k not in loop}

    def _train_config(self, n_rows: int) -> TrainConfig:
        """The loop's settings, with ``batch_size=0`` resolved by :func:`auto_batch_size`."""
        p = self.params
        if p.batch_size == 0:
            p = p.model_copy(update={"batch_size": auto_batch_size(n_rows)})
        return p.train_config()

    def _labels(self, ratings: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
        """Class index of each rating on the scale's grid (the classifier head's targets)."""
        scale = self.scale
        if scale is None or scale.step is None:
            raise DataError(f"{self.name}: rating classes need a scale with a step, got {scale}")
        return np.round((ratings - scale.low) / scale.step).astype(np.int64)

    def _net(self) -> PairNet:
        if self.net is None:
            raise NotFittedError(f"{self.name}: call fit() first")
        return self.net

    def _values_tensor(self, device: torch.device) -> Tensor | None:
        values = self._class_values()
        return None if values is None else torch.tensor(values, dtype=torch.float32, device=device)

    # ----- inference -------------------------------------------------------------------------------
    def _predict(
        self,
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        sessions: npt.NDArray[np.int64] | None = None,
    ) -> FloatArray:
        """Batched predictions; ``sessions`` (a context id per pair) for networks built with them."""
        return self._predict_with(self._net(), users, items, sessions)

    def _predict_with(
        self,
        net: PairNet,
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        sessions: npt.NDArray[np.int64] | None = None,
        class_values: npt.NDArray[np.float64] | None = None,
    ) -> FloatArray:
        """:meth:`_predict` through ``net`` (the model's own network, or one member of it);
        ``class_values`` prices a classifier's classes otherwise than the model does (e.g. at their
        ratings, for the expected rating of a head that predicts P(rating > 3))."""
        net = net.eval()
        dev = _device(net)
        values = (
            self._values_tensor(dev)
            if class_values is None
            else torch.tensor(class_values, dtype=torch.float32, device=dev)
        )
        out = np.empty(len(users), dtype=np.float64)
        with torch.inference_mode():
            for s in range(0, len(users), PAIR_CHUNK):
                u = torch.from_numpy(users[s : s + PAIR_CHUNK]).to(dev)
                i = torch.from_numpy(items[s : s + PAIR_CHUNK]).to(dev)
                c = None if sessions is None else torch.from_numpy(sessions[s : s + PAIR_CHUNK]).to(dev)
                out[s : s + len(u)] = to_rating(net(u, i, c), values, self._argmax()).cpu().numpy()
        return out

    def _grid(self, u: Tensor, iv: Tensor, values: Tensor | None) -> Tensor:
        """Ratings (expected value for a classifier: arg-max ties are useless for ranking) of every
        user vector in ``u`` against every item vector in ``iv``, in chunks of about PAIR_CHUNK pairs."""
        net = self._net()
        n = iv.shape[0]
        out = torch.empty(u.shape[0], n, device=u.device)
        rows = max(1, PAIR_CHUNK // max(n, 1))
        cols = min(n, PAIR_CHUNK) or 1
        for r in range(0, u.shape[0], rows):
            for c in range(0, n, cols):
                grid = net.combine_grid(u[r : r + rows], iv[c : c + cols])
                out[r : r + rows, c : c + cols] = to_rating(grid, values)
        return out

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.floating]:
        net = self._net().eval()
        dev = _device(net)
        with torch.inference_mode():
            u = net.user_side(torch.from_numpy(users).to(dev))
            iv = net.item_side(torch.arange(len(self.items), device=dev))
            return self._grid(u, iv, self._values_tensor(dev)).cpu().numpy()

    # ----- new users -------------------------------------------------------------------------------
    def _user_prior(self) -> Tensor:
        """The average vector of the users with training rows: a new user's start and the point
        fold-in shrinks toward (users without rows still hold their random start)."""
        if self._prior is None:
            net = self._net()
            rated = np.flatnonzero(self.seen().getnnz(axis=1) > 0)
            if len(rated) == 0:
                rated = np.arange(len(self.users))
            with torch.inference_mode():
                users = torch.from_numpy(rated.astype(np.int64)).to(_device(net))
                self._prior = net.user_side(users).mean(dim=0).clone()
        return self._prior

    def _fold_in(self, items: npt.NDArray[np.int64], ratings: FloatArray) -> FloatArray:
        """A fresh user vector fitted by L-BFGS to the given ratings, every weight frozen.

        Minimizes the summed loss over the pairs plus ``fold_in_reg`` × squared distance to the average
        user, so a short history stays near the average and a long one is followed closely. L-BFGS
        from a fixed start is deterministic: the same history gives the same vector.
        """
        net = self._net().eval()
        dev = _device(net)
        prior = self._user_prior().detach().clone()
        if len(items) == 0:
            return prior.double().cpu().numpy()
        values = self._values_tensor(dev)
        with torch.no_grad():
            iv = net.item_side(torch.from_numpy(items).to(dev))
        target = torch.from_numpy(ratings.astype(np.float32)).to(dev)
        label = None if values is None else torch.from_numpy(self._labels(ratings)).to(dev)
        v = prior.clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [v], lr=1.0, max_iter=self.params.fold_in_steps, line_search_fn="strong_wolfe"
        )
        reg = self.params.fold_in_reg

        def closure() -> Tensor:
            out = net.combine(v.expand(len(items), -1), iv)
            if label is None:
                loss = torch.sum((out[:, 0] - target) ** 2)
            else:
                loss = F.cross_entropy(out, label, reduction="sum")
            loss = loss + reg * torch.sum((v - prior) ** 2)
            (grad,) = torch.autograd.grad(loss, v)  # weights stay untouched: no .grad on them
            v.grad = grad
            return loss.detach()

        opt.step(closure)
        return v.detach().double().cpu().numpy()

    def _score_folded(self, vector: FloatArray) -> FloatArray:
        net = self._net().eval()
        dev = _device(net)
        with torch.inference_mode():
            u = torch.from_numpy(np.asarray(vector, dtype=np.float32)).to(dev)[None, :]
            iv = net.item_side(torch.arange(len(self.items), device=dev))
            return self._grid(u, iv, self._values_tensor(dev))[0].double().cpu().numpy()

    # ----- state -----------------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        from recengine.training.state import module_state_arrays

        return module_state_arrays(self._net())

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Rebuild the network from params and the id maps' sizes (the genre count from the stored
        item × genre matrix), then load the weights."""
        from recengine.training.state import load_module_state

        genres = [v for k, v in arrays.items() if k.endswith("item_genres")]
        net = self._build_net(len(self.users), len(self.items), genres[0].shape[1] if genres else 0)
        load_module_state(net, arrays)
        self.net, self._prior = net.eval(), None

    def _table(self, name: str) -> npt.NDArray[np.float32]:
        weight = self._net().get_parameter(name)
        return weight.detach().cpu().numpy().astype(np.float32, copy=True)
