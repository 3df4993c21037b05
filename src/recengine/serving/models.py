"""The models a server serves, by name, and their hot reload.

A request looks its model up once and keeps that :class:`ServedModel` to the end, so a reload
(which builds a complete new ``ServedModel`` first and then swaps one dictionary entry) never
changes a model under a request: in-flight requests finish on the old one, later ones get the new
one, and none fails. A directory that fails verification is refused and the old model keeps serving.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recengine import artifacts
from recengine.errors import ConfigError, RecengineError
from recengine.models.base import Recommender
from recengine.serving.catalog import Catalog
from recengine.serving.schemas import Kind, ModelRef

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class UnknownModelError(RecengineError, KeyError):
    """A request named a model this server does not serve."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def model_kind(model: Recommender) -> Kind:
    """``binary`` for a model fitted on 0/1 labels (it predicts the probability of 1), ``regression``
    for other rating models, ``ranking`` for models that only rank (popularity)."""
    if not model.capabilities.rating:
        return "ranking"
    s = model.scale
    if s is not None and s.is_binary:
        return "binary"
    return "regression"


@dataclass(frozen=True)
class ServedModel:
    """A loaded, verified model directory and everything derived from it once, at load time."""

    name: str
    path: Path
    model: Recommender
    version: str
    info: dict[str, Any]
    catalog: Catalog
    loaded_at: float

    @property
    def kind(self) -> Kind:
        return model_kind(self.model)

    @property
    def dataset(self) -> str | None:
        data = self.info.get("data")
        return str(data["name"]) if isinstance(data, dict) and data.get("name") else None

    @property
    def namespace(self) -> str:
        """The feedback store's namespace: ids belong to the data set, so models on one data set
        share a user's ratings (those taking 0/1 labels apart from those taking stars); a model saved
        without a data set keeps its own."""
        from recengine.serving.store import feedback_namespace

        return feedback_namespace(self.dataset or f"model:{self.name}", self.model.input_scale)

    @property
    def ref(self) -> ModelRef:
        return ModelRef(
            name=self.name,
            version=self.version,
            created=self.info.get("created"),
            library_version=self.info.get("recengine_version"),
        )

    @property
    def metrics(self) -> dict[str, Any]:
        return {"evaluation": self.info.get("evaluation") or {}, "training": self.info.get("training") or {}}


def load_served(name: str, path: str | Path, *, warm_up: bool = True) -> ServedModel:
    """Verify and load ``path``; raises ``ArtifactError`` (and nothing is swapped) when it is bad.
    ``warm_up`` runs one recommendation first (a server wants it; a one-shot handler does not)."""
    path = Path(path).expanduser().resolve()
    before = _manifest_digest(path)
    model = artifacts.load(path)  # verifies every file against the manifest first
    info = artifacts.info(path)
    if _manifest_digest(path) != before:
        raise artifacts.ArtifactError("the model directory changed while it was loaded; try again", path)
    if warm_up:
        _warm_up(model)
    popularity = np.bincount(model.seen().indices, minlength=len(model.items))
    catalog = Catalog(model.items, artifacts.item_metadata(path), popularity)
    return ServedModel(name, path, model, before[:12], info, catalog, time.time())


def _warm_up(model: Recommender) -> None:
    """One recommendation before the model is swapped in, so that the first request does not pay
    for lazy imports and compilation (and a model that cannot answer at all is found here)."""
    if len(model.users) and model.capabilities.topn:
        model.recommend(model.users.external[:1], 1)


def _manifest_digest(path: Path) -> str:
    try:
        return hashlib.sha256((path / artifacts.MANIFEST).read_bytes()).hexdigest()
    except OSError:
        return "0" * 64  # load() names what is missing


def parse_spec(spec: str | Path) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` (served under the directory's name)."""
    text = str(spec)
    name, sep, rest = text.partition("=")
    if sep and _NAME.match(name) and not Path(text).exists():
        return name, Path(rest)
    path = Path(text)
    return _valid_name(path.resolve().name), path


def _valid_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"{name!r} cannot name a served model (letters, digits, '.', '_' and '-'); use NAME=DIR"
        )
    return name


class ModelRegistry:
    """Served models by name, one of them the default; loading all of them at start refuses a
    directory that fails verification (the server does not start half-configured)."""

    def __init__(
        self, specs: Sequence[str | Path | tuple[str, str | Path]], default: str | None = None
    ) -> None:
        if not specs:
            raise ConfigError("give at least one model directory to serve")
        self._models: dict[str, ServedModel] = {}
        for spec in specs:
            name, path = spec if isinstance(spec, tuple) else parse_spec(spec)
            name = _valid_name(name)
            if name in self._models:
                raise ConfigError(f"two models are named {name!r}; name them with NAME=DIR")
            self._models[name] = load_served(name, path)
        self.default = default or next(iter(self._models))
        if self.default not in self._models:
            raise ConfigError(f"the default model {self.default!r} is not among {', '.join(self._models)}")
        self._reload_lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str | None = None) -> ServedModel:
        """The model to use for one whole request (None: the default)."""
        try:
            return self._models[name or self.default]
        except KeyError:
            raise UnknownModelError(
                f"unknown model {name!r}; this server serves {', '.join(self._models)}"
            ) from None

    def all(self) -> list[ServedModel]:
        return list(self._models.values())

    def reload(
        self, name: str | None = None, path: str | Path | None = None
    ) -> tuple[ServedModel, ServedModel]:
        """Load ``path`` (default: the model's current directory) and swap it in; returns (old, new).

        Reloads are serialized; the swap is one dictionary assignment, atomic for readers."""
        with self._reload_lock:
            old = self.get(name)
            new = load_served(old.name, path if path is not None else old.path)
            models = dict(self._models)
            models[old.name] = new
            self._models = models
            return old, new

    def reload_all(self) -> list[tuple[ServedModel, ServedModel]]:
        """Reload every model from its directory (SIGHUP); a bad one keeps its old model and is
        reported by its error, the others are still reloaded."""
        out = []
        errors = []
        for name in self.names():
            try:
                out.append(self.reload(name))
            except RecengineError as e:
                errors.append(f"{name}: {e}")
        if errors:
            raise artifacts.ArtifactError("; ".join(errors))
        return out
