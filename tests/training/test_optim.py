"""RowAdagrad: torch's Adagrad arithmetic on the touched rows, deterministic, and resumable."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

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


def resume(
    half: Pairs,
    make: Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer],
    arrays: dict[str, Any],
    meta: dict[str, Any],
    steps: range,
) -> Pairs:
    """A copy of ``half`` whose new optimizer takes the saved state, then trains on over ``steps``."""
    net = Pairs()
    net.load_state_dict(half.state_dict())
    resumed = make(net.parameters())
    load_optimizer_state(resumed, {k: np.asarray(v) for k, v in arrays.items()}, meta)
    for step in steps:
        resumed.zero_grad()
        net.loss(step).backward()
        resumed.step()
    return net


def test_state_round_trip_resumes_exactly():
    whole, _ = train(RowAdagrad, steps=30)
    half, opt = train(RowAdagrad, steps=12)
    arrays, meta = optimizer_state(opt)
    net = resume(half, lambda ps: RowAdagrad(ps, lr=0.05), arrays, meta, range(12, 30))
    assert all(torch.equal(x, y) for x, y in zip(params(net), params(whole), strict=True))


def test_weight_decay_is_left_to_torch():
    net = Pairs()
    opt = RowAdagrad(net.parameters(), lr=0.05, weight_decay=0.1)
    net.loss(0).backward()
    with pytest.raises(RuntimeError, match="weight_decay"):
        opt.step()  # torch refuses sparse gradients with weight decay; so do we


class _SparseAdamPlusAdam(torch.optim.Optimizer):
    """The reference for RowAdam: torch's SparseAdam on the sparse tables, torch's Adam on the rest."""

    def __init__(self, net: Pairs, lr: float) -> None:
        tables = [net.emb.weight, net.bag.weight]
        dense = [p for p in net.parameters() if all(p is not t for t in tables)]
        self.sparse = torch.optim.SparseAdam(tables, lr=lr)
        self.dense = torch.optim.Adam(dense, lr=lr)
        super().__init__(list(net.parameters()), {"lr": lr})

    def step(self, closure: object = None) -> None:  # type: ignore[override]
        self.sparse.step()
        self.dense.step()


def _train_adam(
    reference: bool, steps: int = 30, weight_decay: float = 0.0
) -> tuple[Pairs, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = Pairs()
    opt: torch.optim.Optimizer = (
        _SparseAdamPlusAdam(net, lr=0.05)
        if reference
        else optim.RowAdam(net.parameters(), lr=0.05, weight_decay=weight_decay)
    )
    for step in range(steps):
        opt.zero_grad()
        net.loss(step).backward()
        opt.step()
    return net, opt


def test_row_adam_is_sparse_adam_on_tables_and_adam_elsewhere():
    ours, opt = _train_adam(reference=False)
    ref, _ = _train_adam(reference=True)
    for a, b in zip(params(ours), params(ref), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(opt.state[ours.emb.weight]["step"]) == 30
    untouched = torch.ones(300, dtype=torch.bool)
    untouched[:40] = False  # the loss only ever looks up rows 0..39 of the table
    torch.manual_seed(0)
    assert torch.equal(ours.emb.weight[untouched], Pairs().emb.weight[untouched])  # lazy: never moved


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_adam_compiled_step_matches_the_tensor_step(monkeypatch, dtype, weight_decay):
    """The CPU's compiled pass and the tensor-op step (CUDA's) run the same arithmetic; only the
    order in which a row's duplicate gradients are summed differs."""

    def run() -> tuple[Pairs, torch.optim.Optimizer]:
        torch.manual_seed(0)
        net = Pairs(dtype=dtype)
        opt = optim.RowAdam(net.parameters(), lr=0.05, weight_decay=weight_decay)
        for step in range(30):
            opt.zero_grad()
            net.loss(step).backward()
            opt.step()
        return net, opt

    compiled, opt = run()
    assert opt.__dict__["_slots"], "the compiled step ran"
    assert all((slot == -1).all() for slot in opt.__dict__["_slots"].values())  # scratch left clean
    with monkeypatch.context() as m:
        m.setattr(optim, "_compiled", lambda p, acc: False)
        tensor, tensor_opt = run()
    assert "_slots" not in tensor_opt.__dict__
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(params(compiled), params(tensor), strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    for p, q in zip(compiled.parameters(), tensor.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(opt.state[p][key], tensor_opt.state[q][key], rtol=tol, atol=tol)
    torch.manual_seed(0)
    start = Pairs(dtype=dtype)
    assert not torch.equal(compiled.emb.weight[:40], start.emb.weight[:40])  # the rows it saw moved
    assert torch.equal(compiled.emb.weight[40:], start.emb.weight[40:])  # the rest did not
    assert torch.equal(compiled.bag.weight[0], tensor.bag.weight[0])  # the padding row as torch has it


def test_row_adam_without_sparse_gradients_is_torch_adam_exactly():
    torch.manual_seed(0)
    a = nn.Linear(6, 2)
    b = nn.Linear(6, 2)
    b.load_state_dict(a.state_dict())
    ours = optim.RowAdam(a.parameters(), lr=0.01, weight_decay=0.01)
    ref = torch.optim.Adam(b.parameters(), lr=0.01, weight_decay=0.01)
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    for opt, net in ((ours, a), (ref, b)):
        for _ in range(5):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_row_adam_weight_decay_acts_on_the_batch_rows_and_resumes_exactly():
    decayed, _ = _train_adam(reference=False, weight_decay=0.1)
    plain, _ = _train_adam(reference=False)
    assert not torch.equal(decayed.emb.weight[:40], plain.emb.weight[:40])
    assert torch.equal(decayed.emb.weight[40:], plain.emb.weight[40:])  # rows never looked up
    whole, _ = _train_adam(reference=False, steps=20, weight_decay=0.1)
    half, opt = _train_adam(reference=False, steps=8, weight_decay=0.1)
    arrays, meta = optimizer_state(opt)
    net = resume(half, lambda ps: optim.RowAdam(ps, lr=0.05, weight_decay=0.1), arrays, meta, range(8, 20))
    assert all(torch.equal(x, y) for x, y in zip(params(net), params(whole), strict=True))
