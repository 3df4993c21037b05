"""RowAdagrad: torch's Adagrad arithmetic on the touched rows, deterministic, and resumable."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from recengine.training import optim
from recengine.training.optim import RowAdagrad
from recengine.training.state import load_optimizer_state, optimizer_state


class Pairs(nn.Module):
    """A sparse Embedding, a sparse EmbeddingBag with padding, and a dense layer."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.emb = nn.Embedding(300, 7, sparse=True, dtype=dtype)
        self.bag = nn.EmbeddingBag(50, 5, mode="sum", sparse=True, padding_idx=0, dtype=dtype)
        self.out = nn.Linear(12, 1, dtype=dtype)

    def loss(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(step)
        ids = torch.randint(0, 40, (128,), generator=g)  # few distinct rows: many duplicates
        tokens = torch.randint(0, 50, (128, 3), generator=g)
        y = torch.randn(128, generator=g, dtype=self.out.weight.dtype)
        pred = self.out(torch.cat([self.emb(ids), self.bag(tokens)], dim=1))[:, 0]
        return ((pred - y) ** 2).mean()


def train(
    opt_cls: Callable[..., torch.optim.Optimizer], steps: int = 30, start: int = 0, **kw: object
) -> tuple:
    torch.manual_seed(0)
    net = Pairs(**kw)  # type: ignore[arg-type]
    opt = opt_cls(net.parameters(), lr=0.05)
    with torch.sparse.check_sparse_tensor_invariants(enable=False):  # torch's Adagrad warns otherwise
        for step in range(start, steps):
            opt.zero_grad()
            net.loss(step).backward()
            opt.step()
    return net, opt


def params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torch_adagrad(dtype):
    ours, opt = train(RowAdagrad, dtype=dtype)
    ref, ref_opt = train(torch.optim.Adagrad, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12  # duplicates are summed in another order
    for a, b in zip(params(ours), params(ref), strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(opt.state[p]["sum"], ref_opt.state[q]["sum"], rtol=tol, atol=tol)
        assert float(opt.state[p]["step"]) == float(ref_opt.state[q]["step"]) == 30
    assert torch.equal(ours.bag.weight[0], ref.bag.weight[0])  # the padding row never moves


def test_tensor_path_is_torch_adagrad_exactly(monkeypatch):
    """Where the compiled step does not apply (e.g. CUDA) the tensor-op step gives torch's bits."""
    monkeypatch.setattr(optim, "_compiled", lambda p, acc: False)
    ours, _ = train(RowAdagrad)
    ref, _ = train(torch.optim.Adagrad)
    for a, b in zip(params(ours), params(ref), strict=True):
        assert torch.equal(a, b)


def test_deterministic_and_sparse_grads_are_kept_for_the_caller():
    a, opt = train(RowAdagrad)
    b, _ = train(RowAdagrad)
    assert all(torch.equal(x, y) for x, y in zip(params(a), params(b), strict=True))
    assert a.emb.weight.grad is not None and a.emb.weight.grad.is_sparse
    for slot in opt.__dict__["_slots"].values():  # the scratch is left clean for the next step
        assert (slot == -1).all()


def test_state_round_trip_resumes_exactly():
    whole, _ = train(RowAdagrad, steps=30)
    half, opt = train(RowAdagrad, steps=12)
    arrays, meta = optimizer_state(opt)
    net = Pairs()
    net.load_state_dict(half.state_dict())
    resumed = RowAdagrad(net.parameters(), lr=0.05)
    load_optimizer_state(resumed, {k: np.asarray(v) for k, v in arrays.items()}, meta)
    for step in range(12, 30):
        resumed.zero_grad()
        net.loss(step).backward()
        resumed.step()
    assert all(torch.equal(x, y) for x, y in zip(params(net), params(whole), strict=True))


def test_weight_decay_is_left_to_torch():
    net = Pairs()
    opt = RowAdagrad(net.parameters(), lr=0.05, weight_decay=0.1)
    net.loss(0).backward()
    with pytest.raises(RuntimeError, match="weight_decay"):
        opt.step()  # torch refuses sparse gradients with weight decay; so do we
