"""The seed's serverless function, runnable here: ``lambda_handler(event, context)``.

The event is the seed's: ``{"data": "<an invocation body as a string>", "type": "rating" |
"recommendation"}``, where the body is Object2Vec's ``{"instances": [{"in0": [user], "in1": [movie]}]}``.

- ``rating`` asks the rating model and answers "The User will likely rate this movie to 3.87".
- ``recommendation`` asks the recommendation model: a binary classifier answers "We recommend the
  user this movie." when p1 > 0.5 (the seed's rule); without a binary classifier, a rating model is
  asked and the movie is recommended when the predicted rating is above 3 (the threshold the seed's
  binary labels were made with, rating > 3).

One answer (a string) for one instance, as the seed returned; a list of answers for several.

Where the models are: either model directories loaded in-process (``RECENGINE_RATING_MODEL``,
``RECENGINE_REC_MODEL``), or a running ``recengine serve`` (``RECENGINE_ENDPOINT_URL``, with the
seed's ``ENDPOINT_NAME_RATING`` / ``ENDPOINT_NAME_REC`` naming the served models, and
``RECENGINE_API_KEY`` if the server has one), the way the seed's function called its endpoints.
Nothing is loaded at import; the first call loads and later calls reuse (as Lambda reuses a warm
container).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recengine.errors import ConfigError, RecengineError
from recengine.serving import sagemaker
from recengine.serving.models import ServedModel, load_served

RATING_THRESHOLD = 3.0  # without a binary classifier: recommend when the predicted rating is above this
ENV_RATING, ENV_REC = "RECENGINE_RATING_MODEL", "RECENGINE_REC_MODEL"
ENV_URL, ENV_KEY = "RECENGINE_ENDPOINT_URL", "RECENGINE_API_KEY"
ENV_NAME_RATING, ENV_NAME_REC = "ENDPOINT_NAME_RATING", "ENDPOINT_NAME_REC"


class EventError(RecengineError):
    """An event that is not the seed's shape, or a model that cannot answer it."""


class Backend(ABC):
    """Where the models are: answers an invocation body for a target (directory or served name)."""

    @abstractmethod
    def invoke(self, target: str, body: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def kind(self, target: str) -> str: ...


class LocalBackend(Backend):
    """Model directories loaded in this process (verified, once each)."""

    def __init__(self) -> None:
        self._models: dict[str, ServedModel] = {}

    def _get(self, target: str) -> ServedModel:
        if target not in self._models:
            self._models[target] = load_served(Path(target).name or "model", target, warm_up=False)
        return self._models[target]

    def invoke(self, target: str, body: str) -> list[dict[str, Any]]:
        content, _ = sagemaker.invoke(self._get(target), body.encode("utf-8"), sagemaker.JSON, sagemaker.JSON)
        return list(json.loads(content)["predictions"])

    def kind(self, target: str) -> str:
        return self._get(target).kind


class HttpBackend(Backend):
    """A running ``recengine serve``, called as the seed's function called SageMaker endpoints."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError as e:  # e.g. an unclosed IPv6 bracket
            raise ConfigError(f"endpoint {url!r} is not a URL: {e}") from None
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"endpoint {url!r} is not an http(s) URL (such as http://127.0.0.1:8080)")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _request(self, path: str, body: bytes | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        req = urllib.request.Request(
            self.url + path, data=body, headers=headers, method="POST" if body else "GET"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")
            raise EventError(f"the endpoint answered {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise EventError(f"cannot reach the endpoint {self.url}: {e}") from None

    def invoke(self, target: str, body: str) -> list[dict[str, Any]]:
        """``target`` "" is the server's default model (``/invocations``)."""
        path = f"/endpoints/{urllib.parse.quote(target, safe='')}/invocations" if target else "/invocations"
        out = self._request(path, body.encode("utf-8"))
        if not isinstance(out, dict) or not isinstance(out.get("predictions"), list):
            raise EventError("the endpoint answered without predictions")
        return list(out["predictions"])

    def kind(self, target: str) -> str:
        if not target:
            listing = self._request("/v1/models")
            target = str(listing["default"])
        return str(self._request(f"/v1/models/{urllib.parse.quote(target, safe='')}")["kind"])


@dataclass
class LambdaApp:
    """The handler's configuration: a backend and the rating / recommendation targets."""

    backend: Backend
    rating: str | None
    recommendation: str | None = None

    def __call__(self, event: Any, context: Any = None) -> str | list[str]:
        data, kind = _parse_event(event)
        if kind == "rating":
            if self.rating is None:
                raise EventError("no rating model is configured")
            return _one_or_list([_rating_answer(p) for p in self.backend.invoke(self.rating, data)])
        target = self.recommendation or self.rating
        if target is None:
            raise EventError("no recommendation or rating model is configured")
        binary = self.backend.kind(target) == "binary"
        answers = [_recommend_answer(p, binary) for p in self.backend.invoke(target, data)]
        return _one_or_list(answers)


def _parse_event(event: Any) -> tuple[str, str]:
    if not isinstance(event, Mapping):
        raise EventError(
            'the event must be a JSON object {"data": "...", "type": "rating" | "recommendation"}'
        )
    kind = event.get("type")
    if kind not in ("rating", "recommendation"):
        raise EventError(f"event type must be 'rating' or 'recommendation', got {kind!r}")
    data = event.get("data")
    if isinstance(data, dict | list):  # leniently: the body as JSON rather than as a string of JSON
        data = json.dumps(data)
    if not isinstance(data, str) or not data.strip():
        raise EventError('event "data" must be the invocation body as a string')
    return data, str(kind)


def _scores(prediction: dict[str, Any]) -> list[float]:
    scores = prediction.get("scores")
    if not isinstance(scores, list) or not scores:
        raise EventError("the model answered no scores: send pairs (in0 and in1), not one side")
    return [float(s) for s in scores]


def _rating_answer(prediction: dict[str, Any]) -> str:
    scores = _scores(prediction)
    if len(scores) != 1:
        raise EventError("the rating model is a classifier; configure a rating (regression) model")
    return f"The User will likely rate this movie to {scores[0]:.2f}"


def _recommend_answer(prediction: dict[str, Any], binary: bool) -> str:
    """Yes when P(like) is over 0.5 (a binary model's [P(0), P(1)], or its one probability) or a
    rating model's prediction is over :data:`RATING_THRESHOLD`."""
    scores = _scores(prediction)
    if len(scores) > 2 or (len(scores) == 2 and not binary):
        raise EventError(
            f"the recommendation model answers {len(scores)} class probabilities; configure a binary "
            "(two classes) or rating model"
        )
    yes = scores[-1] > 0.5 if binary else scores[0] > RATING_THRESHOLD
    return "We recommend the user this movie." if yes else "We DO NOT recommend the user this movie."


def _one_or_list(answers: list[str]) -> str | list[str]:
    return answers[0] if len(answers) == 1 else answers


def from_env(env: Mapping[str, str]) -> LambdaApp:
    """The handler configured as the environment says (see the module docstring)."""
    url = env.get(ENV_URL)
    if url:
        backend: Backend = HttpBackend(url, env.get(ENV_KEY))
        # Without endpoint names, the server's default model answers both kinds of event.
        return LambdaApp(backend, env.get(ENV_NAME_RATING, ""), env.get(ENV_NAME_REC) or None)
    rating, rec = env.get(ENV_RATING), env.get(ENV_REC)
    if not rating and not rec:
        raise ConfigError(f"set {ENV_RATING} (and optionally {ENV_REC}) to model directories, or {ENV_URL}")
    return LambdaApp(LocalBackend(), rating or None, rec or None)


_apps: dict[tuple[tuple[str, str], ...], LambdaApp] = {}  # warm-container reuse, filled on first call


def lambda_handler(event: Any, context: Any = None) -> str | list[str]:
    """The seed's entry point name and signature; configured by the environment."""
    keys = (ENV_URL, ENV_KEY, ENV_NAME_RATING, ENV_NAME_REC, ENV_RATING, ENV_REC)
    config = tuple((k, os.environ.get(k, "")) for k in keys)
    if config not in _apps:
        _apps[config] = from_env(os.environ)
    return _apps[config](event, context)
