"""Models by their short lower-case names, as ``--model NAME`` takes them."""

from __future__ import annotations

from typing import Any

from recengine.errors import ConfigError
from recengine.models.base import Recommender
from recengine.models.baselines import Bias, GlobalMean, Popularity, UserMean

MODELS: dict[str, type[Recommender]] = {m.name: m for m in (GlobalMean, UserMean, Bias, Popularity)}


def model_class(name: str) -> type[Recommender]:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None


def create(name: str, params: dict[str, Any] | None = None) -> Recommender:
    return model_class(name)(params)
