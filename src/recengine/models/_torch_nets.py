"""The network side of the PyTorch rating models: the user/item split, rating heads and their loss.

A :class:`PairNet` is split at the user/item boundary so that scoring a user against the whole
catalog computes the item side once and fold-in can optimize a user vector with the rest frozen.
The heads turn its output into ratings: a single value (regression) or a softmax over the rating
classes of the data's scale, read as the expected rating or the arg-max class.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recengine.data.interactions import RatingScale
from recengine.errors import DataError


class PairNet(nn.Module):
    """A rating network split at the user/item boundary.

    ``combine_grid`` scores every (user, item) pair of two sets without forming the pairs where it can
    (the first dense layer is split into a user part and an item part), which is what makes scoring a
    batch of users against the whole catalog cheap.
    """

    out_dim: int

    @abstractmethod
    def user_side(self, users: Tensor) -> Tensor:
        """(B,) ids → (B, Du): every user parameter the network reads, concatenated."""

    @abstractmethod
    def item_side(self, items: Tensor) -> Tensor:
        """(N,) ids → (N, Di)."""

    @abstractmethod
    def combine(self, u: Tensor, i: Tensor) -> Tensor:
        """Row-aligned (B, Du), (B, Di) → (B, out_dim)."""

    def combine_grid(self, u: Tensor, i: Tensor) -> Tensor:
        """(B, Du), (N, Di) → (B, N, out_dim) for every pair; override for a cheaper form."""
        b, n = u.shape[0], i.shape[0]
        pairs = self.combine(u.repeat_interleave(n, dim=0), i.repeat(b, 1))
        return pairs.reshape(b, n, self.out_dim)

    def with_context(self, u: Tensor, sessions: Tensor) -> Tensor:
        """User side vectors moved by each row's context (a session); only networks built with one."""
        raise TypeError(f"{type(self).__name__} takes no context beside the user")

    def context_penalty(self, sessions: Tensor) -> Tensor:
        """(B,) squared norms of the context parameters each row reads (for their own shrinkage)."""
        raise TypeError(f"{type(self).__name__} takes no context beside the user")

    def forward(self, users: Tensor, items: Tensor, sessions: Tensor | None = None) -> Tensor:
        u = self.user_side(users)
        return self.combine(u if sessions is None else self.with_context(u, sessions), self.item_side(items))


def embedding_table(n: int, width: int, zero_columns: int, std: float, sparse: bool) -> nn.Embedding:
    """Rows of ``width`` normal(0, std) values followed by ``zero_columns`` zeros (biases), so that a
    row's embedding and bias are one gather and one (sparse) update."""
    table = nn.Embedding(n, width + zero_columns, sparse=sparse)
    with torch.no_grad():
        nn.init.normal_(table.weight, std=std)
        table.weight[:, width:] = 0.0
    return table


def split_linear(layer: nn.Linear, u: Tensor, i: Tensor) -> Tensor:
    """``layer(cat(u[b], i[n]))`` for every pair (b, n) as (B, N, out), from two small matmuls."""
    du = u.shape[-1]
    a = u @ layer.weight[:, :du].T
    if layer.bias is not None:
        a = a + layer.bias
    return a[:, None, :] + (i @ layer.weight[:, du:].T)[None, :, :]


def class_values(scale: RatingScale | None) -> npt.NDArray[np.float64]:
    """The rating classes of a scale with a step (10 half stars for 0.5–5, 5 for 1–5)."""
    if scale is None or scale.step is None:
        raise DataError(
            f"the classifier head needs ratings on a grid with a step (e.g. 0.5 or 1); the scale is {scale}"
        )
    n = round((scale.high - scale.low) / scale.step) + 1
    return scale.low + scale.step * np.arange(n, dtype=np.float64)


def expected_rating(logits: Tensor, values: Tensor) -> Tensor:
    """Mean rating under the softmax over the rating classes."""
    return torch.softmax(logits, dim=-1) @ values


def argmax_rating(logits: Tensor, values: Tensor) -> Tensor:
    """Rating of the most probable class."""
    return values[logits.argmax(dim=-1)]


def rating_loss(
    out: Tensor,
    target: Tensor,
    label: Tensor | None,
    u: Tensor,
    i: Tensor,
    reg: float,
    u_weight: Tensor | None = None,
    i_weight: Tensor | None = None,
) -> Tensor:
    """Mean squared error (``label`` None) or cross entropy over the rating classes, plus ``reg`` times
    the batch mean of the squared norms of each row's user and item vectors, weighted per row.

    Unweighted, a user or item is shrunk in proportion to how often it is seen (SGD-style MF); with
    weights 1 / count every one is shrunk alike over an epoch, which holds rarely rated items back.
    """
    loss = torch.mean((out[:, 0] - target) ** 2) if label is None else F.cross_entropy(out, label)
    if reg > 0:
        pu, pi = u.pow(2).sum(dim=1), i.pow(2).sum(dim=1)
        if u_weight is not None:
            pu = pu * u_weight
        if i_weight is not None:
            pi = pi * i_weight
        loss = loss + reg * torch.mean(pu + pi)
    return loss


class RatingTask:
    """The :class:`recengine.training.loop.TorchTask` of a PairNet: loss and validation prediction."""

    val_metric = "rmse"

    def __init__(
        self, module: PairNet, values: Tensor | None, reg: float, argmax: bool, session_reg: float = 0.0
    ) -> None:
        self.module = module
        self.values = values
        self.reg = reg
        self.argmax = argmax
        self.session_reg = session_reg

    def _values(self, device: torch.device) -> Tensor | None:
        if self.values is not None and self.values.device != device:
            self.values = self.values.to(device)
        return self.values

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        u = self.module.user_side(batch["user"])
        i = self.module.item_side(batch["item"])
        sessions = batch.get("session")
        # A row's session moves its user's side; the session is shrunk on its own, not with the user.
        out = self.module.combine(u if sessions is None else self.module.with_context(u, sessions), i)
        label = batch["label"] if self.values is not None else None
        loss = rating_loss(
            out, batch["target"], label, u, i, self.reg, batch.get("user_weight"), batch.get("item_weight")
        )
        if sessions is not None and self.session_reg > 0:
            penalty = self.module.context_penalty(sessions) * batch["session_weight"]
            loss = loss + self.session_reg * torch.mean(penalty)
        return loss

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        out = self.module(batch["user"], batch["item"], batch.get("session"))
        if self.val_metric == "cross_entropy":  # a classifier over unordered classes: P(the true one)
            return torch.softmax(out, dim=-1).gather(-1, batch["label"].long().unsqueeze(-1))[..., 0]
        return to_rating(out, self._values(batch["user"].device), self.argmax)


def to_rating(out: Tensor, values: Tensor | None, argmax: bool = False) -> Tensor:
    """Network output (..., out_dim) → ratings (...)."""
    if values is None:
        return out[..., 0]
    return argmax_rating(out, values) if argmax else expected_rating(out, values)
