"""Torch state as plain numpy arrays and JSON, so that checkpoints and artifacts never need pickle.

``torch.save``/``torch.load`` pickle arbitrary objects; here a module's weights and an optimizer's
moments become named arrays (safetensors) and the optimizer's hyperparameters become JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recengine.errors import DataError


def module_state_arrays(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """Every parameter and buffer of ``module`` (its ``state_dict``) as a numpy copy, on the CPU;
    a tensor the module holds under several names (tied or shared weights) is kept once, under the
    first, so a model file does not carry a token table twice."""
    aliases = state_aliases(module)
    return {name: _to_numpy(t) for name, t in module.state_dict().items() if name not in aliases}


def state_aliases(module: torch.nn.Module) -> dict[str, str]:
    """Each state name whose tensor is one named earlier in the ``state_dict`` → that first name."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, t in module.state_dict(keep_vars=True).items():
        if id(t) in first:
            aliases[name] = first[id(t)]
        else:
            first[id(t)] = name
    return aliases


def load_module_state(module: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Copy ``arrays`` into ``module`` in place (parameters keep their identity, so an optimizer
    built on them stays valid); names and shapes must match exactly. A tied or shared tensor needs
    only its first name (files that also hold the others load too)."""
    state = module.state_dict()
    aliases = state_aliases(module)
    missing = sorted(n for n in set(state) - set(arrays) if n not in aliases)
    unexpected = sorted(set(arrays) - set(state))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}")
        raise DataError(f"weights do not fit the network: {'; '.join(parts)}")
    with torch.no_grad():
        for name, target in state.items():
            if name not in arrays:
                continue  # an alias: filled through its first name
            value = np.asarray(arrays[name])
            if tuple(value.shape) != tuple(target.shape):
                raise DataError(
                    f"weights do not fit the network: {name} has shape {tuple(value.shape)}, "
                    f"the network expects {tuple(target.shape)}"
                )
            target.copy_(torch.from_numpy(np.asarray(value, order="C")))


def clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the module's state on its own device (the early-stopping snapshot)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def copy_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, target in module.state_dict().items():
            target.copy_(state[name])


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The optimizer's tensors as ``"<param>.<name>"`` arrays and everything else as JSON data."""
    sd = opt.state_dict()
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        plain: dict[str, Any] = {}
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                arrays[f"{pid}.{name}"] = _to_numpy(value)
            else:
                plain[name] = value
        scalars[str(pid)] = plain
    groups = [{k: _plain(v) for k, v in g.items()} for g in sd["param_groups"]]
    return arrays, {"state": scalars, "param_groups": groups}


def load_optimizer_state(
    opt: torch.optim.Optimizer, arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> None:
    """Inverse of :func:`optimizer_state` on an optimizer over the same parameters."""
    state: dict[int, dict[str, Any]] = {int(pid): dict(entry) for pid, entry in meta["state"].items()}
    for key, value in arrays.items():
        pid, _, name = key.partition(".")
        state.setdefault(int(pid), {})[name] = torch.from_numpy(np.array(value, copy=True))
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
        t = t.float()
    return t.cpu().numpy().copy()


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    return v
