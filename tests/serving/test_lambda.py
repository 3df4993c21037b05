"""The seed's serverless handler: both event types, with models loaded in-process and through a
running server, and clear errors for events it cannot answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recengine import artifacts
from recengine.errors import ConfigError
from recengine.serving import lambda_handler as lh
from recengine.serving.app import create_app
from tests.serving.fixtures import thread_server

RECOMMEND = "We recommend the user this movie."
NOT_RECOMMEND = "We DO NOT recommend the user this movie."


def event(kind: str, pairs: list[tuple[int, int]]) -> dict:
    """The seed's event: the invocation body as a string."""
    return {
        "data": json.dumps({"instances": [{"in0": [str(u)], "in1": [str(m)]} for u, m in pairs]}),
        "type": kind,
    }


@pytest.fixture
def local(model_dirs: dict[str, Path]) -> lh.LambdaApp:
    return lh.from_env({lh.ENV_RATING: str(model_dirs["bias"]), lh.ENV_REC: str(model_dirs["binary"])})


def test_rating_event(local: lh.LambdaApp, model_dirs: dict[str, Path]) -> None:
    answer = local(event("rating", [(196, 242)]))
    want = float(artifacts.load(model_dirs["bias"]).predict([196], [242])[0])
    assert answer == f"The User will likely rate this movie to {want:.2f}"


def test_recommendation_event_with_binary_classifier(
    local: lh.LambdaApp, model_dirs: dict[str, Path]
) -> None:
    binary = artifacts.load(model_dirs["binary"])
    pairs = [(1, 50), (1, 1), (13, 655), (405, 1582)]
    answers = local(event("recommendation", pairs))
    p1 = binary.predict([u for u, _ in pairs], [m for _, m in pairs])
    assert answers == [RECOMMEND if p > 0.5 else NOT_RECOMMEND for p in p1]
    assert RECOMMEND in answers and NOT_RECOMMEND in answers


def test_recommendation_falls_back_to_rating_threshold(model_dirs: dict[str, Path]) -> None:
    app = lh.from_env({lh.ENV_RATING: str(model_dirs["bias"])})
    model = artifacts.load(model_dirs["bias"])
    pairs = [(1, 50), (405, 1582)]
    want = [RECOMMEND if r > 3 else NOT_RECOMMEND for r in model.predict([1, 405], [50, 1582])]
    assert app(event("recommendation", pairs)) == want


def test_lambda_handler_reads_the_environment(
    model_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(lh.ENV_RATING, str(model_dirs["bias"]))
    monkeypatch.setenv(lh.ENV_REC, str(model_dirs["binary"]))
    monkeypatch.delenv(lh.ENV_URL, raising=False)
    answer = lh.lambda_handler(event("rating", [(1, 1)]), None)
    assert isinstance(answer, str) and answer.startswith("The User will likely rate this movie to ")
    assert lh.lambda_handler(event("recommendation", [(1, 50)]), None) in (RECOMMEND, NOT_RECOMMEND)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("not a dict", "JSON object"),
        ({"data": "{}", "type": "other"}, "type must be"),
        ({"type": "rating"}, '"data"'),
        ({"data": "{nope", "type": "rating"}, "malformed JSON"),
        ({"data": json.dumps({"instances": [{"in0": [1]}]}), "type": "rating"}, "embeddings"),
    ],
)
def test_bad_events(local: lh.LambdaApp, bad: object, fragment: str) -> None:
    with pytest.raises(Exception, match=fragment) as info:
        local(bad)
    assert isinstance(info.value, lh.RecengineError)


def test_no_configuration_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=lh.ENV_RATING):
        lh.from_env({})


def test_through_a_running_server(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    """As the seed's function called its endpoints: by name, and the default model without names."""
    app = create_app(
        [("rating", model_dirs["bias"]), ("rec", model_dirs["binary"])], store_url=tmp_path / "s.db"
    )
    local = lh.from_env({lh.ENV_RATING: str(model_dirs["bias"]), lh.ENV_REC: str(model_dirs["binary"])})
    with thread_server(app) as url:
        remote = lh.from_env({lh.ENV_URL: url, lh.ENV_NAME_RATING: "rating", lh.ENV_NAME_REC: "rec"})
        for kind in ("rating", "recommendation"):
            ev = event(kind, [(196, 242), (1, 50)])
            assert remote(ev) == local(ev)
        default = lh.from_env({lh.ENV_URL: url})
        assert default(event("rating", [(196, 242)])) == local(event("rating", [(196, 242)]))
        with pytest.raises(lh.EventError, match="404"):
            remote(event("rating", [(424242, 1)]))
    with pytest.raises(lh.EventError, match="cannot reach"):
        remote(event("rating", [(1, 1)]))
