"""Deep matrix factorization (``deep-mf``): the seed workshop's MXNet model, in PyTorch.

User and item embeddings of separately chosen sizes are concatenated and fed to an MLP (Dense 64
ReLU → Dense 64 ReLU → 1 in the workshop), with optional BatchNorm and dropout, an optional genre
embedding on the item side, optional user/item biases, and either a regression head (squared error)
or a classifier head (softmax over the rating classes of the data's scale; the prediction is the
expected rating or the arg-max class). ``preset="seed-lab1"`` is the workshop's exact configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import torch
from pydantic import Field
from torch import Tensor, nn

from recengine.data.dataset import genre_lists
from recengine.data.interactions import Interactions
from recengine.errors import ConfigError
from recengine.models._torch_base import TorchRatingParams, TorchRecommender
from recengine.models._torch_nets import PairNet, class_values, embedding_table, split_linear

if TYPE_CHECKING:
    from recengine.data.dataset import Dataset

Width = Annotated[int, Field(ge=1, le=65536)]

#: The O'Reilly/MXNet workshop: user embedding 15, movie embedding 25, Dense 64 ReLU, Dense 64 ReLU,
#: Dense 1 on the concatenation, squared error on raw ratings, Adam 0.001, batch 25,000, 5 epochs over
#: all training rows (it measured the test set after each epoch and held nothing out, so: no
#: validation split, no early stopping, no regularization, no biases, output starting at 0, and
#: embeddings about as wide as MXNet's default uniform(-0.07, 0.07) start, std 0.04).
SEED_LAB1: dict[str, Any] = {
    "user_embedding": 15,
    "item_embedding": 25,
    "hidden": [64, 64],
    "batch_norm": False,
    "dropout": 0.0,
    "biases": False,
    "genres": False,
    "head": "regression",
    "center": False,
    "init_std": 0.04,
    "reg": 0.0,
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "lr_schedule": "constant",
    "batch_size": 25_000,
    "epochs": 5,
    "patience": None,
    "val_fraction": 0.0,
}


class DeepMFParams(TorchRatingParams):
    """Defaults chosen as :class:`TorchRatingParams` says, keeping the workshop's MLP (64, 64) with
    32-wide embeddings and biases: wider embeddings or MLPs, dropout and BatchNorm (which hurt) all
    landed within noise of it on held-out training rows. Its embeddings start wider than neumf's
    (0.1, as good there): from 0.01 the MLP sits on a plateau for several epochs on small data.

    The batch grows with the data (``batch_size=0``, :func:`auto_batch_size`): 1,024 rows, the batch
    these defaults were chosen with, on data sets of the ml-100k size, where larger batches gave no
    better held-out RMSE at any learning rate tried (8,192 lost 0.002-0.003); 8,192 on the ml-20m
    size, where an epoch still has some 2,300 steps and two CPU cores train 1.7 times as fast."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"seed-lab1": SEED_LAB1}

    batch_size: int = Field(
        0, ge=0, description="rows per minibatch; 0: 1,024, or more on millions of rows (auto_batch_size)"
    )
    init_std: float = Field(0.1, gt=0, description="standard deviation of the initial embeddings")

    user_embedding: int = Field(32, ge=1, le=4096, description="size of the user embedding")
    item_embedding: int = Field(32, ge=1, le=4096, description="size of the item embedding")
    hidden: list[Width] = Field(default_factory=lambda: [64, 64], min_length=1, description="MLP widths")
    batch_norm: bool = Field(False, description="BatchNorm after each hidden dense layer")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each hidden layer's ReLU")
    biases: bool = Field(True, description="add user and item biases to the regression output")
    genres: bool = Field(False, description="item side also reads the item's genres (set_item_features)")
    genre_embedding: int = Field(8, ge=1, le=1024, description="size of the genre embedding")
    head: Literal["regression", "classifier"] = "regression"
    classifier_predict: Literal["expected", "argmax"] = Field(
        "expected", description="classifier head: expected rating or the most probable class"
    )


class DeepMFNet(PairNet):
    """Embeddings → concat → MLP. One table per side holds a row's embedding and, with ``biases``,
    its bias in a last column (one gather and one sparse update per side, not two); the user side is
    [embedding, bias], the item side [embedding, bias, genre embedding]."""

    def __init__(self, n_users: int, n_items: int, n_genres: int, p: DeepMFParams, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.du, self.di = p.user_embedding, p.item_embedding
        self.nb = 1 if p.biases and out_dim == 1 else 0
        self.user_emb = embedding_table(n_users, self.du, self.nb, p.init_std, p.sparse_embeddings)
        self.item_emb = embedding_table(n_items, self.di, self.nb, p.init_std, p.sparse_embeddings)
        self.dg = p.genre_embedding if n_genres else 0
        if n_genres:
            self.register_buffer("item_genres", torch.zeros(n_items, n_genres))
            self.genre_proj = nn.Linear(n_genres, p.genre_embedding, bias=False)
        self.first = nn.Linear(self.du + self.di + self.dg, p.hidden[0])
        rest: list[nn.Module] = []
        for width_in, width_out in zip(p.hidden, [*p.hidden[1:], None], strict=True):
            if p.batch_norm:
                rest.append(nn.BatchNorm1d(width_in))
            rest.append(nn.ReLU())
            if p.dropout > 0:
                rest.append(nn.Dropout(p.dropout))
            if width_out is not None:
                rest.append(nn.Linear(width_in, width_out))
        self.rest = nn.Sequential(*rest)
        self.output = nn.Linear(p.hidden[-1], out_dim)

    def user_side(self, users: Tensor) -> Tensor:
        return self.user_emb(users)

    def item_side(self, items: Tensor) -> Tensor:
        row = self.item_emb(items)
        if not self.dg:
            return row
        return torch.cat([row, self.genre_proj(self.get_buffer("item_genres")[items])], dim=1)

    def _item_input(self, i: Tensor) -> Tensor:
        """What the MLP reads of an item: its embedding and genre embedding, not its bias."""
        if not self.nb:
            return i
        if not self.dg:
            return i[:, : self.di]
        return torch.cat([i[:, : self.di], i[:, self.di + 1 :]], dim=1)

    def combine(self, u: Tensor, i: Tensor) -> Tensor:
        out = self.output(self.rest(self.first(torch.cat([u[:, : self.du], self._item_input(i)], dim=1))))
        if self.nb:
            out = out + u[:, self.du :] + i[:, self.di : self.di + 1]
        return out

    def combine_grid(self, u: Tensor, i: Tensor) -> Tensor:
        z = split_linear(self.first, u[:, : self.du], self._item_input(i))
        b, n, h = z.shape
        out = self.output(self.rest(z.reshape(b * n, h))).reshape(b, n, self.out_dim)
        if self.nb:
            out = out + u[:, None, self.du :] + i[None, :, self.di : self.di + 1]
        return out


class DeepMF(TorchRecommender):
    """Deep matrix factorization. Item genres, when ``genres=True``, come from :meth:`use_dataset`
    (which the evaluation runner and the train command call) or :meth:`set_item_features` before
    ``fit``; they are stored in the model's state, so a saved model needs no metadata to predict."""

    name = "deep-mf"
    ParamsModel = DeepMFParams
    params: DeepMFParams

    def __init__(self, params: Any = None, **overrides: Any) -> None:
        super().__init__(params, **overrides)
        self._feature_items: np.ndarray | None = None
        self._feature_genres: list[list[str]] | None = None

    def use_dataset(self, ds: Dataset) -> Self:
        """With ``genres=True``, the genres of ``ds.items``; a data set without them leaves the features
        unset, so ``fit`` says what is missing."""
        if self.params.genres and ds.items is not None and "genres" in ds.items.columns:
            self.set_item_features(ds.items["item"].to_numpy(), ds.items["genres"].to_list())
        return self

    def set_item_features(self, items: npt.ArrayLike, genres: Sequence[Iterable[str] | None]) -> None:
        """Genres per external item id, e.g. ``(ds.items["item"], ds.items["genres"].to_list())``.

        Aligned to the training items at ``fit``; items absent here get no genre, ids unknown to the
        training data are ignored.
        """
        ids = np.asarray(items)
        if len(ids) != len(genres):
            raise ValueError("items and genres must have the same length")
        self._feature_items = ids
        self._feature_genres = [g if g is not None else [] for g in genre_lists(genres)]

    def _item_genres(self, train: Interactions) -> npt.NDArray[np.float32] | None:
        """Item × genre matrix, each row summing to 1: the genre embedding is the mean of its genres'."""
        if not self.params.genres:
            return None
        if self._feature_items is None or self._feature_genres is None:
            raise ConfigError(
                "deep-mf with genres=True needs item genres, and the data given has none: train on a "
                "data set with item genres (a MovieLens layout), or call set_item_features(items, genres) "
                "before fit"
            )
        vocab = sorted({g for gs in self._feature_genres for g in gs})
        if not vocab:
            raise ConfigError("deep-mf with genres=True: the item features name no genre at all")
        col = {g: k for k, g in enumerate(vocab)}
        matrix = np.zeros((train.n_items, len(vocab)), dtype=np.float32)
        rows = train.items.to_internal(self._feature_items, missing="ignore")
        for row, gs in zip(rows.tolist(), self._feature_genres, strict=True):
            if row >= 0 and gs:
                matrix[row, [col[g] for g in gs]] = 1.0
        return matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1.0)

    def _class_values(self) -> npt.NDArray[np.float64] | None:
        return class_values(self.scale) if self.params.head == "classifier" else None

    def _argmax(self) -> bool:
        return self.params.head == "classifier" and self.params.classifier_predict == "argmax"

    def _build_net(self, n_users: int, n_items: int, n_genres: int) -> DeepMFNet:
        values = self._class_values()
        return DeepMFNet(n_users, n_items, n_genres, self.params, 1 if values is None else len(values))

    def user_embeddings(self) -> npt.NDArray[np.float32]:
        """The user embedding table (biases left out)."""
        return self._table("user_emb.weight")[:, : self.params.user_embedding]

    def item_embeddings(self) -> npt.NDArray[np.float32]:
        """The item embedding table, followed by each item's genre embedding when genres are on
        (what the MLP reads of an item; biases left out)."""
        net = self._net()
        if not isinstance(net, DeepMFNet) or not net.dg:
            return self._table("item_emb.weight")[:, : self.params.item_embedding]
        with torch.inference_mode():
            side = net.item_side(torch.arange(len(self.items), device=net.item_emb.weight.device))
            return net._item_input(side).cpu().numpy().astype(np.float32)
