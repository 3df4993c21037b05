"""Models by their short lower-case names, as ``--model NAME`` takes them.

Classes are imported on first use: the baselines need numpy only, while mf pulls in numba and the
deep models torch (seconds of import time a `recengine evaluate --model bias` should not pay).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from recengine.errors import ConfigError
from recengine.models.base import Recommender

#: name → "module:Class"; a new model is one line here.
_WHERE: dict[str, str] = {
    "global-mean": "recengine.models.baselines:GlobalMean",
    "user-mean": "recengine.models.baselines:UserMean",
    "bias": "recengine.models.baselines:Bias",
    "popularity": "recengine.models.baselines:Popularity",
    "mf": "recengine.models.mf:MF",
    "deep-mf": "recengine.models.deep_mf:DeepMF",
    "neumf": "recengine.models.neumf:NeuMF",
    "object2vec": "recengine.models.object2vec:Object2Vec",
}


class _Registry(Mapping[str, type[Recommender]]):
    """A read-only name → class mapping that imports each class when it is first asked for."""

    def __init__(self, where: dict[str, str]) -> None:
        self._where = where
        self._loaded: dict[str, type[Recommender]] = {}

    def __getitem__(self, name: str) -> type[Recommender]:
        if name not in self._loaded:
            module, _, cls = self._where[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), cls)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


MODELS: Mapping[str, type[Recommender]] = _Registry(_WHERE)


def model_class(name: str) -> type[Recommender]:
    if name not in _WHERE:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(_WHERE)}")
    return MODELS[name]


def create(name: str, params: dict[str, Any] | None = None) -> Recommender:
    return model_class(name)(params)
