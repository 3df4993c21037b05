"""The shared training loop on a tiny embedding model: learning, determinism, early stopping,
optimizers and schedules, non-finite losses, progress output."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from recengine.errors import ConfigError, DataError, TrainingError
from recengine.training.checkpoint import load_checkpoint
from recengine.training.config import TrainConfig, auto_batch_size
from recengine.training.loop import (
    TrainResult,
    load_module_state,
    module_state_arrays,
    resolve_device,
    split_validation,
    train,
)
from tests.training.tiny import TinyTask, config, make_arrays, weights


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return make_arrays()


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loss_decreases_and_history_is_complete(arrays):
    task = TinyTask()
    result = train(task, arrays, config(epochs=8))
    h = result.history
    assert [r["epoch"] for r in h] == list(range(1, 9))
    assert {"epoch", "loss", "val_rmse", "lr", "seconds", "samples_per_second"} <= h[0].keys()
    assert h[-1]["loss"] < 0.6 * h[0]["loss"]
    assert h[-1]["val_rmse"] < h[0]["val_rmse"]
    assert result.stopped == "completed" and result.best_epoch == 8
    assert result.train_rows + result.val_rows == len(arrays["target"]) and result.val_rows == 300
    d = result.as_dict()
    assert d["history"] == h and d["val_metric"] == "rmse"


def test_same_seed_same_weights_other_seed_other_weights(arrays):
    runs = []
    for seed in (3, 3, 4):
        task = TinyTask()
        train(task, arrays, config(seed=seed, epochs=3))
        runs.append(weights(task))
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])


def test_training_leaves_the_callers_rng_alone(arrays):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(TinyTask(), arrays, config(epochs=1))
    assert torch.equal(torch.rand(3), expected)


class ScriptedTask:
    """A task whose validation metric follows a script, one value per epoch, and which remembers the
    weights it had at each validation, so that the restored best weights can be checked."""

    def __init__(self, script: list[float], metric: str = "rmse") -> None:
        self.module: nn.Module = nn.Linear(1, 1)
        self.val_metric = metric
        self.script = script
        self.seen: list[dict[str, torch.Tensor]] = []

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return ((self.module(batch["x"]).squeeze(-1) - batch["target"]) ** 2).mean()

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        epoch = len(self.seen)
        if epoch >= len(self.script):  # past the script: the loop's own check of a run without validation
            return self.module(batch["x"]).squeeze(-1)
        self.seen.append({k: v.detach().clone() for k, v in self.module.state_dict().items()})
        value = self.script[epoch]
        if self.val_metric == "accuracy":  # value = share of rows predicted right
            n = len(batch["target"])
            right = torch.arange(n) < round(value * n)
            return torch.where(right, batch["target"], 1 - batch["target"])
        return batch["target"] + value  # rmse = value


def scripted_arrays(n: int = 400) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 1)).astype(np.float32)
    return {"x": x, "target": (2 * x[:, 0] + 1).astype(np.float32)}


def test_early_stopping_stops_and_restores_the_best_epoch():
    task = ScriptedTask([1.0, 0.8, 0.7, 0.75, 0.9, 0.95, 0.5, 0.4])
    # One validation batch per epoch: the val part (100 rows) is smaller than the eval batch.
    result = train(task, scripted_arrays(), config(epochs=8, patience=2, batch_size=64, val_fraction=0.25))
    assert result.stopped == "early-stopped"
    assert len(result.history) == 5 and result.best_epoch == 3
    assert result.best_value == pytest.approx(0.7)
    assert [round(h["val_rmse"], 6) for h in result.history] == [1.0, 0.8, 0.7, 0.75, 0.9]
    assert same(weights(task), task.seen[2])  # the weights validated in epoch 3
    assert not same(weights(task), task.seen[4])


def test_tolerance_and_higher_is_better_for_accuracy():
    task = ScriptedTask([0.5, 0.52, 0.53, 0.8, 0.81, 0.82], metric="accuracy")
    arrays = scripted_arrays()
    arrays["target"] = (arrays["x"][:, 0] > 0).astype(np.float32)
    result = train(task, arrays, config(epochs=6, patience=2, tolerance=0.05, batch_size=64))
    # 0.52 and 0.53 are within the tolerance of 0.5: two epochs without improvement stop the run,
    # and the weights kept are the best epoch's (on 40 validation rows both read 21/40: the first),
    # not those of the last epoch that beat the tolerance.
    assert result.stopped == "early-stopped" and len(result.history) == 3
    assert result.best_epoch == 2 and result.best_value == pytest.approx(0.525)
    assert result.history[0]["val_accuracy"] == pytest.approx(0.5, abs=0.01)
    assert same(weights(task), task.seen[1])


def test_a_gain_within_the_tolerance_still_keeps_the_better_weights():
    task = ScriptedTask([1.0, 0.995, 0.991, 0.9905, 0.98])
    result = train(task, scripted_arrays(), config(epochs=5, patience=3, tolerance=0.01, batch_size=64))
    assert result.stopped == "early-stopped" and len(result.history) == 4  # no gain over 0.01 for 3
    assert result.best_epoch == 4 and result.best_value == pytest.approx(0.9905)
    assert same(weights(task), task.seen[3])


def test_no_validation_means_no_early_stopping(arrays):
    result = train(TinyTask(), arrays, config(epochs=2, val_fraction=0.0, patience=1))
    assert "val_rmse" not in result.history[0] and result.val_metric is None
    assert result.best_epoch == 2 and result.stopped == "completed"


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "adagrad"])
def test_each_optimizer_learns(arrays, optimizer):
    lr = {"adam": 0.02, "adamw": 0.02, "sgd": 0.05, "adagrad": 0.1}[optimizer]
    result = train(TinyTask(), arrays, config(epochs=4, optimizer=optimizer, lr=lr, weight_decay=1e-4))
    losses = [h["loss"] for h in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_learning_rate_schedules(arrays):
    def lrs(**kw: object) -> list[float]:
        return [h["lr"] for h in train(TinyTask(), arrays, config(epochs=4, lr=0.02, **kw)).history]

    assert lrs(lr_schedule="constant") == [0.02] * 4
    assert lrs(lr_schedule="step", lr_step_epochs=1, lr_gamma=0.5) == pytest.approx(
        [0.02, 0.01, 0.005, 0.0025]
    )
    cosine = lrs(lr_schedule="cosine")
    assert cosine[0] == 0.02 and all(a > b for a, b in itertools.pairwise(cosine))
    task = ScriptedTask([1.0, 1.1, 1.2, 1.3])
    result = train(
        task, scripted_arrays(), config(epochs=4, lr=0.02, lr_schedule="plateau", lr_plateau_patience=0)
    )
    assert [h["lr"] for h in result.history] == pytest.approx([0.02, 0.02, 0.01, 0.005])


def test_lr_plan_sets_each_epochs_rate_and_holds_its_last(arrays):
    result = train(TinyTask(), arrays, config(epochs=4, lr=0.02, lr_plan=[0.02, 0.01, 0.004]))
    assert [h["lr"] for h in result.history] == pytest.approx([0.02, 0.01, 0.004, 0.004])
    with pytest.raises(ValueError, match="lr_plan"):
        config(lr_plan=[0.01, 0.0])


def test_refit_trains_every_row_for_the_best_epoch_count_with_the_replayed_rates():
    task = ScriptedTask([1.0, 1.0, 0.7, 0.75, 0.9, 0.95])
    start = {k: v.clone() for k, v in task.module.state_dict().items()}
    arrays = scripted_arrays()
    cfg = config(
        epochs=6,
        patience=2,
        batch_size=64,
        val_fraction=0.25,
        lr=0.02,
        lr_schedule="plateau",
        lr_plateau_patience=0,
        refit=True,
    )
    result = train(task, arrays, cfg)
    first = result.refit_from
    assert first is not None and first["best_epoch"] == 3 and first["stopped"] == "early-stopped"
    assert first["val_rows"] == 100 and len(first["history"]) == 5
    plan = [h["lr"] for h in first["history"][:3]]
    assert plan == pytest.approx([0.02, 0.02, 0.01])  # epoch 2 did not improve: the rate halved
    # The second run: every row, no validation, the first three epochs' rates.
    assert result.train_rows == 400 and result.val_rows == 0 and result.val_metric is None
    assert len(result.history) == 3 and result.best_epoch == 3 and result.stopped == "completed"
    assert [h["lr"] for h in result.history] == plan
    assert result.as_dict()["refit_from"]["best_value"] == pytest.approx(0.7)
    # ... which is training from the same start on every row with that plan.
    again = ScriptedTask([1.0])
    again.module.load_state_dict(start)
    train(again, arrays, config(epochs=3, batch_size=64, val_fraction=0.0, lr=0.02, lr_plan=plan))
    assert same(weights(task), weights(again))


def test_refit_checkpoints_resume_to_the_same_weights(arrays, tmp_path):
    cfg = config(epochs=3, refit=True)
    ref = TinyTask()
    train(ref, arrays, cfg)
    task = TinyTask()
    first = train(task, arrays, cfg, checkpoint_dir=tmp_path)
    assert (tmp_path / "refit").is_dir() and first.refit_from is not None
    again = TinyTask()
    resumed = train(again, arrays, cfg, checkpoint_dir=tmp_path, resume=True)
    assert resumed.resumed_at_epoch == first.best_epoch
    assert same(weights(again), weights(ref)) and same(weights(task), weights(ref))


def test_refit_without_a_validation_cut_is_one_run(arrays):
    result = train(TinyTask(), arrays, config(epochs=2, val_fraction=0.0, refit=True))
    assert result.refit_from is None and len(result.history) == 2


def test_nan_loss_names_the_epoch_and_keeps_the_last_good_checkpoint(arrays, tmp_path):
    batches = 11  # 2,700 training rows in batches of 256
    task = TinyTask(nan_at_call=2 * batches + 4)
    with pytest.raises(TrainingError, match=r"epoch 3, batch 4 of 11") as err:
        train(task, arrays, config(), checkpoint_dir=tmp_path)
    assert "epoch 2" in str(err.value) and str(tmp_path) in str(err.value)
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None and loaded[1]["epoch"] == 2
    assert all(np.isfinite(v).all() for k, v in loaded[0].items() if v.dtype.kind == "f")
    # The kept checkpoint resumes to the same weights as a run that never saw the NaN.
    resumed, clean = TinyTask(), TinyTask()
    train(resumed, arrays, config(), checkpoint_dir=tmp_path, resume=True)
    train(clean, arrays, config())
    assert same(weights(resumed), weights(clean))


def test_a_window_of_batches_is_checked_at_once_as_on_cuda(arrays, monkeypatch):
    from recengine.training import loop

    monkeypatch.setattr(loop, "_CHECK_EVERY", {"cpu": 4})
    with pytest.raises(TrainingError, match=r"epoch 2, batch 3 of 11"):
        train(TinyTask(nan_at_call=11 + 3), arrays, config())


def test_nan_in_the_first_epoch_says_there_is_no_checkpoint(arrays, tmp_path):
    with pytest.raises(TrainingError, match=r"epoch 1, batch 1 of .*no epoch finished"):
        train(TinyTask(nan_at_call=1), arrays, config(), checkpoint_dir=tmp_path)
    assert load_checkpoint(tmp_path) is None


class _BreaksOnItsLastStep(TinyTask):
    """Its loss is finite at every call, but the step after the last one leaves the weights NaN
    (``"nan"``) or so large that predictions overflow (``"huge"``, with plain SGD)."""

    def __init__(self, how: str, at_call: int) -> None:
        super().__init__()
        self.how, self.at_call = how, at_call

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = super().loss(batch)
        if self.calls == self.at_call:
            if self.how == "nan":
                with torch.no_grad():
                    self.module.bias.fill_(float("nan"))  # type: ignore[operator]
                return loss  # computed before: finite
            return loss * 1e30
        return loss


@pytest.mark.parametrize(
    ("how", "message"),
    [("nan", r"weights are not finite .* epoch 1 \(bias\)"), ("huge", "predictions are not finite")],
)
def test_a_run_that_breaks_on_its_last_step_is_not_returned(arrays, tmp_path, how, message):
    batches = 12  # every row trains (no validation cut): 3,000 rows in batches of 256
    task = _BreaksOnItsLastStep(how, at_call=batches)
    cfg = config(epochs=1, val_fraction=0.0, optimizer="sgd", lr=1.0, momentum=0.0)
    with pytest.raises(TrainingError, match=message) as err:
        train(task, arrays, cfg, checkpoint_dir=tmp_path)
    assert "no epoch finished" in str(err.value) and load_checkpoint(tmp_path) is None


def test_progress_bar_writes_epochs_to_stderr_only(arrays, capsys):
    train(TinyTask(), arrays, config(epochs=2), progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "epoch 2/2" in captured.err and "val rmse" in captured.err


def test_bad_inputs(arrays):
    with pytest.raises(DataError, match="target"):
        train(TinyTask(), {"user": arrays["user"]}, config())
    with pytest.raises(DataError, match="rows"):
        train(TinyTask(), {**arrays, "item": arrays["item"][:10]}, config())
    with pytest.raises(TrainingError, match="no rows"):
        train(TinyTask(), {k: v[:0] for k, v in arrays.items()}, config())
    bad = dict(arrays, target=arrays["target"].copy())
    bad["target"][7] = np.nan
    with pytest.raises(DataError, match="row 7"):
        train(TinyTask(), bad, config())


def test_one_row_trains_without_validation(arrays):
    one = {k: v[:1] for k, v in arrays.items()}
    task = TinyTask()
    task.module.norm = nn.Identity()  # BatchNorm cannot train on a batch of one row
    result = train(task, one, config(epochs=2))
    assert result.val_rows == 0 and len(result.history) == 2


def test_explicit_validation_arrays(arrays):
    tr, va = split_validation(arrays, 0.2, 0)
    result = train(TinyTask(), tr, config(epochs=1), val_arrays=va)
    assert result.val_rows == len(va["target"]) == 600 and result.train_rows == 2400


def test_split_validation_is_seeded_and_disjoint(arrays):
    a_tr, a_va = split_validation(arrays, 0.1, 5)
    _, b_va = split_validation(arrays, 0.1, 5)
    _, c_va = split_validation(arrays, 0.1, 6)
    assert all(np.array_equal(a_va[k], b_va[k]) for k in arrays)
    assert not np.array_equal(a_va["user"], c_va["user"])
    assert len(a_va["target"]) == 300 and len(a_tr["target"]) == 2700
    tiny_tr, tiny_va = split_validation({k: v[:1] for k, v in arrays.items()}, 0.5, 0)
    assert len(tiny_tr["target"]) == 1 and len(tiny_va["target"]) == 0


def test_module_state_round_trip():
    a, b = TinyTask(seed=1), TinyTask(seed=2)
    params_before = [id(p) for p in b.module.parameters()]
    load_module_state(b.module, module_state_arrays(a.module))
    assert same(weights(a), weights(b))
    assert [id(p) for p in b.module.parameters()] == params_before  # copied in place
    broken = module_state_arrays(a.module)
    broken["user.weight"] = broken["user.weight"][:, :2]
    with pytest.raises(DataError, match=r"user\.weight has shape"):
        load_module_state(b.module, broken)
    del broken["bias"]
    with pytest.raises(DataError, match="missing bias"):
        load_module_state(b.module, broken)


def test_tied_weights_are_stored_once_and_stay_tied():
    def tied(seed: int) -> torch.nn.ModuleDict:
        torch.manual_seed(seed)
        m = torch.nn.ModuleDict({"a": torch.nn.Embedding(5, 3), "b": torch.nn.Embedding(5, 3)})
        m["b"].weight = m["a"].weight  # one table read by both sides
        return m

    a, b = tied(1), tied(2)
    arrays = module_state_arrays(a)
    assert sorted(arrays) == ["a.weight"]  # not the table twice
    load_module_state(b, arrays)
    assert b["a"].weight is b["b"].weight
    assert torch.equal(b.get_parameter("b.weight"), a.get_parameter("a.weight"))
    load_module_state(b, {**arrays, "b.weight": arrays["a.weight"]})  # files holding both names load
    with pytest.raises(DataError, match=r"missing a\.weight"):
        load_module_state(b, {"b.weight": arrays["a.weight"]})


def test_devices_and_config():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no usable CUDA"):
            resolve_device("cuda:0")
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="tpu")
    with pytest.raises(ValueError, match="extra"):
        TrainConfig.model_validate({"epochs": 2, "lr_rate": 0.1})

    class ModelParams(TrainConfig):
        factors: int = 8
        epochs: int = 7

    p = ModelParams(lr=0.05, factors=3)
    tc = p.train_config()
    assert type(tc) is TrainConfig and tc.lr == 0.05 and tc.epochs == 7
    assert set(tc.model_dump()) == set(TrainConfig.model_fields)


def test_train_result_is_plain_data():
    r = TrainResult(history=[{"epoch": 1, "loss": 0.5}], best_epoch=1, stopped="completed")
    assert r.as_dict()["history"] == [{"epoch": 1, "loss": 0.5}]


def test_auto_batch_size_keeps_small_data_and_grows_with_millions_of_rows():
    assert [auto_batch_size(n) for n in (0, 1, 90_570, 2_500_000)] == [1024] * 4
    assert auto_batch_size(5_000_000) == 2048 and auto_batch_size(10_000_000) == 4096
    assert auto_batch_size(19_000_000) == auto_batch_size(10**9) == 8192
    result = train(TinyTask(), make_arrays(), config(epochs=1))
    assert result.batch_size == 256 and result.as_dict()["batch_size"] == 256
