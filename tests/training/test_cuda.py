"""Training on CUDA: where the tensors live, quality beside the same fit on the CPU, the row-wise
optimizers' arithmetic on both devices, artifacts of a CUDA fit loaded on the CPU, checkpoints and
resume, determinism, and the loop's CUDA-only paths (windowed finiteness checks, data kept on the host).

Skipped where torch sees no CUDA device. Small seeded synthetic data only, no data files.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from recengine.artifacts import load, save
from recengine.data.interactions import Interactions
from recengine.errors import TrainingError
from recengine.evaluation.metrics import rmse
from recengine.models._torch_base import TorchRecommender
from recengine.models._torch_nets import RatingTask
from recengine.models.registry import create
from recengine.training import loop, tensors
from recengine.training.checkpoint import load_checkpoint
from recengine.training.optim import RowAdagrad, RowAdam
from tests.models.test_deep_mf import low_rank
from tests.training.tiny import TinyTask, config, make_arrays, weights

# cuBLAS is deterministic only with a fixed workspace, read when CUDA first creates its handle; the
# loop sets this too, but a test here may touch CUDA before the first fit does.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")

DEVICE = "cuda"

SMALL: dict[str, Any] = {"epochs": 20, "batch_size": 64, "threads": 1, "patience": None, "seed": 0}
O2V: dict[str, Any] = {"enc_dim": 16, "mlp_dim": 16, "enc0_token_embedding_dim": 16}
O2V.update(
    enc1_token_embedding_dim=16,
    lr=0.01,
    init_std=0.5,
    user_tokens=[],
    item_tokens=[],
    sparse_above=0,
    members=1,
)
#: name → (registered model, params, data). Each exercises another CUDA path of the loop: sparse
#: embeddings with RowAdagrad (deep-mf, neumf), a classifier head whose class values move to the
#: device, and sparse gradients with RowAdam plus id dropout drawn from the CUDA generator (object2vec).
SPECS: dict[str, tuple[str, dict[str, Any], str]] = {
    "deep-mf": ("deep-mf", {**SMALL, "user_embedding": 8, "item_embedding": 8, "hidden": [16]}, "whole"),
    "deep-mf-classifier": (
        "deep-mf",
        {**SMALL, "epochs": 25, "user_embedding": 8, "item_embedding": 8, "hidden": [32]}
        | {"head": "classifier", "lr": 0.1},
        "half",
    ),
    "neumf": ("neumf", {**SMALL, "gmf_dim": 8, "mlp_embedding": 8, "hidden": [16, 8]}, "whole"),
    "object2vec": ("object2vec", {**SMALL, **O2V}, "whole"),
}
#: The optimizer each spec trains with (object2vec's ``auto`` with ``sparse_above=0``: sparse Adam).
OPTIMIZER = {
    "deep-mf": RowAdagrad,
    "deep-mf-classifier": RowAdagrad,
    "neumf": RowAdagrad,
    "object2vec": RowAdam,
}


@functools.cache
def data(kind: str) -> tuple[Interactions, Interactions]:
    """(train, test) of 80 users × 40 items with a rank-2 signal: whole stars, or half stars."""
    return low_rank() if kind == "whole" else low_rank(1, half_stars=True)


class Interrupted(Exception):
    """Stands in for a crash in the middle of an epoch."""


@dataclass
class Fit:
    """A fitted model and what was seen while it trained."""

    model: TorchRecommender
    calls: int = 0
    param_devices: set[str] = field(default_factory=set)
    batch_devices: set[str] = field(default_factory=set)
    optimizers: list[torch.optim.Optimizer] = field(default_factory=list)
    storage: list[tuple[str, str]] = field(default_factory=list)  # (device, storage) of each data set

    def predict(self, test: Interactions) -> np.ndarray:
        return self.model.predict_internal(test.user, test.item)


def fit(
    spec: str,
    device: str,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    interrupt_at: int | None = None,
) -> Fit:
    """Fit ``spec`` on ``device``, recording the devices of the weights and of each batch at every
    loss call, the optimizer and where the loop kept the data; ``interrupt_at`` raises
    :class:`Interrupted` at that loss call."""
    name, params, kind = SPECS[spec]
    model = create(name, {**params, "device": device})
    assert isinstance(model, TorchRecommender)
    out = Fit(model)
    real_loss, real_make = RatingTask.loss, loop.make_optimizer

    def loss(self: RatingTask, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out.calls += 1
        if out.calls == interrupt_at:
            raise Interrupted(f"loss call {out.calls}")
        out.param_devices.update(p.device.type for p in self.module.parameters())
        out.batch_devices.update(t.device.type for t in batch.values())
        return real_loss(self, batch)

    def make_optimizer(module: nn.Module, cfg: Any) -> torch.optim.Optimizer:
        opt = real_make(module, cfg)
        out.optimizers.append(opt)
        return opt

    class Arrays(tensors.DeviceArrays):
        def __init__(self, arrays: dict[str, np.ndarray], dev: torch.device) -> None:
            super().__init__(arrays, dev)
            out.storage.append((self.device.type, self.storage.type))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RatingTask, "loss", loss)
        mp.setattr(loop, "make_optimizer", make_optimizer)
        mp.setattr(loop, "DeviceArrays", Arrays)
        model.fit(data(kind)[0], checkpoint_dir=checkpoint_dir, resume=resume)
    return out


@functools.cache
def fitted(spec: str, device: str) -> Fit:
    """One fit per (spec, device), shared by the tests below."""
    return fit(spec, device)


def weights_device(model: TorchRecommender) -> set[str]:
    net = model.net
    assert net is not None
    return {t.device.type for t in net.state_dict().values()}


# ----- training on the device ---------------------------------------------------------------------
@pytest.mark.parametrize("spec", list(SPECS))
def test_weights_batches_and_optimizer_state_live_on_the_device(spec):
    f = fitted(spec, DEVICE)
    assert f.param_devices == {DEVICE} and f.batch_devices == {DEVICE}
    assert f.storage and all(s == (DEVICE, DEVICE) for s in f.storage)  # small data: resident
    assert f.model.history["device"].startswith(DEVICE)
    assert weights_device(f.model) == {DEVICE}  # the fitted model stays where it trained
    (opt,) = f.optimizers
    assert type(opt) is OPTIMIZER[spec]
    moments = [v for st in opt.state.values() for k, v in st.items() if k != "step" and torch.is_tensor(v)]
    assert moments and {v.device.type for v in moments} == {DEVICE}
    assert any(p.grad is not None and p.grad.is_sparse for g in opt.param_groups for p in g["params"])


@pytest.mark.parametrize("spec", list(SPECS))
def test_quality_is_that_of_the_same_fit_on_the_cpu(spec):
    train, test = data(SPECS[spec][2])
    gpu, cpu = fitted(spec, DEVICE), fitted(spec, "cpu")
    assert cpu.param_devices == {"cpu"}
    p_gpu, p_cpu = gpu.predict(test), cpu.predict(test)
    assert np.isfinite(p_gpu).all() and p_gpu.min() >= 0.5 and p_gpu.max() <= 5.0
    y = test.values()
    base = rmse(y, np.full(len(y), train.values().mean()))
    ours, ref = rmse(y, p_gpu), rmse(y, p_cpu)
    assert ours < 0.5 * base, (ours, base)
    assert abs(ours - ref) < 0.05, (ours, ref)
    h_gpu, h_cpu = gpu.model.history["history"], cpu.model.history["history"]
    assert len(h_gpu) == len(h_cpu) == SPECS[spec][1]["epochs"]
    assert h_gpu[-1]["loss"] < 0.5 * h_gpu[0]["loss"]
    # Same start, same batches: the first epoch differs by float rounding only (and object2vec's id
    # dropout, drawn from another generator on each device).
    rel = 0.1 if spec == "object2vec" else 0.01
    assert h_gpu[0]["loss"] == pytest.approx(h_cpu[0]["loss"], rel=rel)


@pytest.mark.parametrize("spec", ["deep-mf", "object2vec"])
def test_same_seed_same_predictions_on_the_device(spec):
    test = data(SPECS[spec][2])[1]
    again = fit(spec, DEVICE)
    np.testing.assert_array_equal(again.predict(test), fitted(spec, DEVICE).predict(test))


def test_data_kept_on_the_host_trains_as_when_resident(monkeypatch):
    """Data too large for the device stays in host memory and each batch is copied over."""
    resident = fitted("deep-mf", DEVICE)  # before the patch below
    monkeypatch.setattr(tensors, "_DEVICE_SHARE", 0.0)
    host = fit("deep-mf", DEVICE)
    assert host.storage and all(s == (DEVICE, "cpu") for s in host.storage)
    assert host.batch_devices == {DEVICE} and host.param_devices == {DEVICE}
    test = data("whole")[1]
    np.testing.assert_allclose(host.predict(test), resident.predict(test), rtol=0, atol=1e-6)


# ----- the row-wise optimizers: the same step on both devices ---------------------------------------
class Tables(nn.Module):
    """A sparse Embedding, a sparse EmbeddingBag with padding, and a dense layer."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.emb = nn.Embedding(300, 7, sparse=True, dtype=dtype)
        self.bag = nn.EmbeddingBag(50, 5, mode="sum", sparse=True, padding_idx=0, dtype=dtype)
        self.out = nn.Linear(12, 1, dtype=dtype)

    def loss(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(step)  # drawn on the CPU, then moved: same batch on any device
        dev, dtype = self.out.weight.device, self.out.weight.dtype
        ids = torch.randint(0, 40, (128,), generator=g).to(dev)  # few distinct rows: many duplicates
        tokens = torch.randint(0, 50, (128, 3), generator=g).to(dev)
        y = torch.randn(128, generator=g, dtype=dtype).to(dev)
        pred = self.out(torch.cat([self.emb(ids), self.bag(tokens)], dim=1))[:, 0]
        return ((pred - y) ** 2).mean()


def _steps(
    opt_cls: Callable[..., torch.optim.Optimizer], net: Tables, steps: int, **kw: Any
) -> torch.optim.Optimizer:
    opt = opt_cls(net.parameters(), lr=0.05, **kw)
    for step in range(steps):
        opt.zero_grad()
        net.loss(step).backward()
        opt.step()
    return opt


@pytest.mark.parametrize(
    ("opt_cls", "kw"), [(RowAdagrad, {}), (RowAdam, {}), (RowAdam, {"weight_decay": 0.1})], ids=str
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("steps", [1, 5])
def test_row_optimizers_step_alike_on_the_device_and_the_cpu(opt_cls, kw, dtype, steps):
    torch.manual_seed(0)
    cpu = Tables(dtype)
    dev = copy.deepcopy(cpu).to(DEVICE)
    start = {k: v.clone() for k, v in cpu.state_dict().items()}
    opt_cpu = _steps(opt_cls, cpu, steps, **kw)
    opt_dev = _steps(opt_cls, dev, steps, **kw)
    rtol, atol = (1e-5, 1e-6) if dtype == torch.float32 else (1e-10, 1e-12)
    for (name, a), b in zip(cpu.named_parameters(), dev.parameters(), strict=True):
        assert b.device.type == DEVICE
        assert not torch.equal(a.detach(), start[name]), name  # every parameter moved
        torch.testing.assert_close(b.detach().cpu(), a.detach(), rtol=rtol, atol=atol, msg=name)
        for key, value in opt_cpu.state[a].items():
            other = opt_dev.state[b][key]
            if torch.is_tensor(value) and key != "step":
                assert other.device.type == DEVICE, key
            torch.testing.assert_close(
                torch.as_tensor(other).cpu(), torch.as_tensor(value), rtol=rtol, atol=atol, msg=key
            )
    # Lazy: rows no batch looked up never move, on the device as on the CPU.
    assert torch.equal(dev.emb.weight.detach()[40:].cpu(), start["emb.weight"][40:])
    assert torch.equal(dev.bag.weight.detach()[0].cpu(), start["bag.weight"][0])  # padding row


# ----- artifacts and checkpoints --------------------------------------------------------------------
@pytest.mark.parametrize("spec", list(SPECS))
def test_a_model_fitted_on_the_device_saves_and_loads_on_the_cpu(tmp_path, spec):
    f = fitted(spec, DEVICE)
    model = f.model
    out = save(model, tmp_path / "model", metrics={"note": "fitted on cuda"})
    back = load(out)
    assert isinstance(back, TorchRecommender) and type(back) is type(model)
    assert weights_device(back) == {"cpu"} and weights_device(model) == {DEVICE}
    test = data(SPECS[spec][2])[1]
    np.testing.assert_allclose(
        back.predict_internal(test.user, test.item), f.predict(test), rtol=1e-5, atol=1e-5
    )
    users = np.arange(min(len(model.users), 16))
    np.testing.assert_allclose(back.score(users), model.score(users), rtol=1e-5, atol=1e-5)
    assert back.history["history"] == model.history["history"]
    # A new user folded in on the device and on the CPU: the same scores, up to rounding.
    items = model.items.external[[0, 2, 4, 1, 3]]
    ratings = [5.0, 5.0, 5.0, 1.0, 1.0]
    on_dev = model._score_folded(model.fold_in(items, ratings))
    on_cpu = back._score_folded(back.fold_in(items, ratings))
    assert np.isfinite(on_dev).all()
    np.testing.assert_allclose(on_dev, on_cpu, rtol=0, atol=0.1)


def test_resume_on_the_device_and_on_the_cpu_from_a_device_checkpoint(tmp_path):
    spec = "deep-mf"
    reference = fitted(spec, DEVICE)
    epochs, bs = SPECS[spec][1]["epochs"], SPECS[spec][1]["batch_size"]
    batches = math.ceil(reference.model.history["train_rows"] / bs)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupted):
        fit(spec, DEVICE, checkpoint_dir=ckpt, interrupt_at=3 * batches + 5)  # within epoch 4
    loaded = load_checkpoint(ckpt)
    assert loaded is not None
    arrays, meta = loaded
    assert meta["epoch"] == 3 and {k.split(".")[0] for k in arrays} == {"module", "optim", "best"}
    shutil.copytree(ckpt, tmp_path / "for-cpu")

    test = data(SPECS[spec][2])[1]
    resumed = fit(spec, DEVICE, checkpoint_dir=ckpt, resume=True)
    assert resumed.calls == (epochs - 3) * batches  # epochs 4.. only
    assert resumed.param_devices == {DEVICE}
    h = resumed.model.history
    assert h["resumed_at_epoch"] == 3 and len(h["history"]) == epochs and h["stopped"] == "completed"
    np.testing.assert_allclose(resumed.predict(test), reference.predict(test), rtol=1e-6, atol=1e-6)

    # The device may change between runs: the checkpoint written on the device resumes on the CPU.
    on_cpu = fit(spec, "cpu", checkpoint_dir=tmp_path / "for-cpu", resume=True)
    assert on_cpu.calls == (epochs - 3) * batches and on_cpu.param_devices == {"cpu"}
    assert on_cpu.model.history["resumed_at_epoch"] == 3
    np.testing.assert_allclose(on_cpu.predict(test), reference.predict(test), rtol=0, atol=0.05)
    y = test.values()
    assert abs(rmse(y, on_cpu.predict(test)) - rmse(y, reference.predict(test))) < 0.01


# ----- the loop on the device -----------------------------------------------------------------------
def test_non_finite_loss_is_found_in_a_window_and_named_by_its_batch():
    """On CUDA the loss is checked for a window of batches at once (no wait per batch); the error
    still names the first bad batch."""
    with pytest.raises(TrainingError, match=r"epoch 2, batch 3 of 11"):
        train_tiny(TinyTask(nan_at_call=11 + 3))


def test_tiny_loop_is_deterministic_and_leaves_the_callers_state_alone():
    torch.manual_seed(123)  # every device's generator
    expected = torch.rand(3, device=DEVICE)
    torch.manual_seed(123)
    assert not torch.are_deterministic_algorithms_enabled()
    a, b = TinyTask(), TinyTask()  # dropout: the CUDA generator, seeded per epoch
    result = train_tiny(a)
    train_tiny(b)
    assert torch.equal(torch.rand(3, device=DEVICE), expected)
    assert not torch.are_deterministic_algorithms_enabled()  # switched on for the run only
    wa, wb = weights(a), weights(b)
    assert {v.device.type for v in wa.values()} == {DEVICE}
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    h = result.history
    assert result.device.startswith(DEVICE) and h[-1]["loss"] < 0.6 * h[0]["loss"]


def train_tiny(task: TinyTask) -> loop.TrainResult:
    return loop.train(task, make_arrays(), config(device=DEVICE))
