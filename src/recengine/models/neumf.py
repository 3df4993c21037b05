"""Neural matrix factorization (``neumf``): GMF and MLP fused (He et al., 2017), for rating regression.

Two pairs of embeddings: the GMF pair meets in an elementwise product, the MLP pair is concatenated
and sent through a ReLU tower; the two results are concatenated into one linear output. User and
item biases (with the output's own bias starting at the training mean) are added, as in biased MF:
on explicit ratings they carry most of the signal and let the factors model only the interaction.
The same network ranks items for top-N (higher predicted rating first).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import numpy.typing as npt
import torch
from pydantic import Field
from torch import Tensor, nn

from recengine.models._torch_base import TorchRatingParams, TorchRecommender
from recengine.models._torch_nets import PairNet, embedding_table, split_linear

Width = Annotated[int, Field(ge=1, le=65536)]


class NeuMFParams(TorchRatingParams):
    """Defaults chosen as :class:`TorchRatingParams` says; here a wide GMF part (64) with a small
    tower (one layer of 32) won: a deeper or wider tower or dropout did not help on held-out rows."""

    gmf_dim: int = Field(64, ge=1, le=4096, description="size of the GMF user and item embeddings")
    mlp_embedding: int = Field(32, ge=1, le=4096, description="size of the MLP user and item embeddings")
    hidden: list[Width] = Field(default_factory=lambda: [32], min_length=1, description="MLP tower widths")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each tower layer's ReLU")
    biases: bool = Field(True, description="add user and item biases to the output")


class NeuMFNet(PairNet):
    """One table per side holds a row's [gmf, mlp, bias] (one gather and one sparse update per side);
    output = w·[p⊙q, tower(p', q')] + b_u + b_i + b."""

    def __init__(self, n_users: int, n_items: int, p: NeuMFParams) -> None:
        super().__init__()
        self.out_dim = 1
        self.g, self.m = p.gmf_dim, p.mlp_embedding
        nb = 1 if p.biases else 0
        self.biases = p.biases
        self.user_emb = embedding_table(n_users, self.g + self.m, nb, p.init_std, p.sparse_embeddings)
        self.item_emb = embedding_table(n_items, self.g + self.m, nb, p.init_std, p.sparse_embeddings)
        self.first = nn.Linear(2 * p.mlp_embedding, p.hidden[0])
        rest: list[nn.Module] = []
        for width_in, width_out in zip(p.hidden, p.hidden[1:], strict=False):
            rest.append(nn.ReLU())
            if p.dropout > 0:
                rest.append(nn.Dropout(p.dropout))
            rest.append(nn.Linear(width_in, width_out))
        rest.append(nn.ReLU())
        if p.dropout > 0:
            rest.append(nn.Dropout(p.dropout))
        self.rest = nn.Sequential(*rest)
        self.output = nn.Linear(p.gmf_dim + p.hidden[-1], 1)

    def user_side(self, users: Tensor) -> Tensor:
        return self.user_emb(users)

    def item_side(self, items: Tensor) -> Tensor:
        return self.item_emb(items)

    def combine(self, u: Tensor, i: Tensor) -> Tensor:
        g, m = self.g, self.m
        gmf = u[:, :g] * i[:, :g]
        mlp = self.rest(self.first(torch.cat([u[:, g : g + m], i[:, g : g + m]], dim=1)))
        out = self.output(torch.cat([gmf, mlp], dim=1))
        if self.biases:
            out = out + u[:, g + m :] + i[:, g + m :]
        return out

    def combine_grid(self, u: Tensor, i: Tensor) -> Tensor:
        """The GMF part is one matmul, (p ⊙ w_gmf) @ qᵀ; only the tower runs per pair."""
        g, m = self.g, self.m
        w = self.output.weight[0]
        out = (u[:, :g] * w[:g]) @ i[:, :g].T + self.output.bias
        z = split_linear(self.first, u[:, g : g + m], i[:, g : g + m])
        b, n, h = z.shape
        out = out + (self.rest(z.reshape(b * n, h)) @ w[g:]).reshape(b, n)
        if self.biases:
            out = out + u[:, g + m :] + i[None, :, g + m]
        return out[:, :, None]


class NeuMF(TorchRecommender):
    """GMF + MLP fusion for ratings. Embeddings are the GMF ones, item vectors scaled by the output's
    GMF weights, so that ``user_embeddings() @ item_embeddings().T`` is exactly the GMF term of a
    prediction and cosine similarity of items is measured the way the model compares them."""

    name = "neumf"
    ParamsModel = NeuMFParams
    params: NeuMFParams

    def _build_net(self, n_users: int, n_items: int, n_genres: int) -> NeuMFNet:
        return NeuMFNet(n_users, n_items, self.params)

    def user_embeddings(self) -> npt.NDArray[np.float32]:
        return self._table("user_emb.weight")[:, : self.params.gmf_dim]

    def item_embeddings(self) -> npt.NDArray[np.float32]:
        g = self.params.gmf_dim
        w = self._table("output.weight")[0, :g]
        return self._table("item_emb.weight")[:, :g] * w[None, :]
