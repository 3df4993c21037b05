"""Several Object2Vec networks trained from different seeds, read as one.

On small data a single network's quality depends a good deal on its seed (the early-stopped epoch,
the initial weights, the batch order): on an inner hold-out of ua.base three seeds of the same
settings ranged over 0.009 RMSE, and the mean of two of them beat either. Averaging the members'
outputs removes most of that variance, and members that see a user differently (with and without
the user's history) err differently, so their mean gains more than more seeds of one kind.

The ensemble keeps the :class:`PairNet` split: a user's side vector is the members' side vectors
side by side, and ``combine`` averages what each member makes of its own part, so catalog scoring,
fold-in (one vector through every member at once) and similar items (cosine over the concatenated
vectors) need nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Self

import torch
from torch import Tensor, nn

from recengine.models._torch_nets import PairNet
from recengine.models.object2vec.encoders import Object2VecNet


def _share_tables(members: Sequence[Object2VecNet]) -> None:
    """Point every member's token tables and histories at the first member holding an equal one: they
    are built from the same data, and one tensor each keeps memory and the model file from holding
    them once per member (the state keeps a shared tensor under its first name)."""
    kept: dict[str, Tensor] = {}
    for m in members:
        for name, buf in list(m.named_buffers(recurse=False)):
            first = kept.setdefault(name, buf)
            if first is not buf and _same(first, buf):
                setattr(m, name, first)


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


class Object2VecEnsemble(PairNet):
    """The mean output of ``members`` (same shapes and token tables, different weights).

    For a softmax head the mean is taken over logits (log-linear pooling), so the prediction stays a
    softmax over one set of logits.
    """

    def __init__(self, members: Sequence[Object2VecNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        shape = replace(first.spec, history=False, item_history=False)
        if any(replace(m.spec, history=False, item_history=False) != shape for m in members):
            raise ValueError("the members of an ensemble must share one network spec (histories aside)")
        _share_tables(members)
        self.members = nn.ModuleList(members)
        self.spec = first.spec
        self.out_dim = first.out_dim
        self.member_dim = first.side_dim
        self.side_dim = first.side_dim * len(members)
        # The token tables are the same for every member; these are the ones inference indexes.
        self.register_buffer("user_tokens", first.get_buffer("user_tokens"), persistent=False)
        self.register_buffer("item_tokens", first.get_buffer("item_tokens"), persistent=False)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Self:
        """Moving or casting copies each module's buffers apart: share them again afterwards."""
        super()._apply(fn, recurse)
        first = self._members()[0]
        _share_tables(self._members())
        self.user_tokens = first.get_buffer("user_tokens")
        self.item_tokens = first.get_buffer("item_tokens")
        return self

    def _parts(self, x: Tensor) -> list[Tensor]:
        return list(torch.split(x, self.member_dim, dim=-1))

    def encode(self, side: int, tokens: Tensor) -> Tensor:
        return torch.cat([m.encode(side, tokens) for m in self._members()], dim=-1)

    def user_side(self, users: Tensor) -> Tensor:
        return torch.cat([m.user_side(users) for m in self._members()], dim=-1)

    def item_side(self, items: Tensor) -> Tensor:
        return torch.cat([m.item_side(items) for m in self._members()], dim=-1)

    def with_context(self, u: Tensor, sessions: Tensor) -> Tensor:
        return torch.cat(
            [m.with_context(p, sessions) for m, p in zip(self._members(), self._parts(u), strict=True)],
            dim=-1,
        )

    def context_penalty(self, sessions: Tensor) -> Tensor:
        return torch.stack([m.context_penalty(sessions) for m in self._members()]).sum(dim=0)

    def combine(self, u: Tensor, i: Tensor) -> Tensor:
        outs = [
            m.combine(a, b) for m, a, b in zip(self._members(), self._parts(u), self._parts(i), strict=True)
        ]
        return torch.stack(outs).mean(dim=0)

    def combine_grid(self, u: Tensor, i: Tensor) -> Tensor:
        out: Tensor | None = None
        for m, a, b in zip(self._members(), self._parts(u), self._parts(i), strict=True):
            grid = m.combine_grid(a, b)
            out = grid if out is None else out.add_(grid)  # one (B, N, out) buffer, not one per member
        assert out is not None
        return out / len(self.members)

    def vectors(self, side: Tensor) -> Tensor:
        """Side vectors without the bias columns: what embeddings and cosine similarity read."""
        return torch.cat(
            [m.vectors(p) for m, p in zip(self._members(), self._parts(side), strict=True)], dim=-1
        )

    def _members(self) -> list[Object2VecNet]:
        return [m for m in self.members if isinstance(m, Object2VecNet)]
