"""Why an item was recommended: the library function on hand-made embeddings, and the REST route."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recengine.data.interactions import RatingScale
from recengine.errors import ConfigError, DataError
from recengine.models.explain import explain_item


class _Embedded:
    """What explain_item reads from a model: item embeddings and the scale of the history's ratings."""

    def __init__(self, emb: np.ndarray, scale: RatingScale | None) -> None:
        self._emb, self.input_scale = emb, scale

    def item_embeddings(self) -> np.ndarray:
        return self._emb


EMB = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]], dtype=np.float32)


def test_liked_neighbours_first_disliked_neighbours_pull_down() -> None:
    model: Any = _Embedded(EMB, RatingScale(1, 5, 1))
    r = explain_item(model, 0, [1, 2, 3, 4, 0], [5, 5, 1, 5, 5], k=10)
    assert 0 not in r.items  # an item never explains itself
    # 1: cos ≈ 0.994, rated 5 → +1.99; 3: cos = -1, rated 1 → +2 (unlike something disliked);
    # 2 and 4 (a zero vector) are orthogonal → 0.
    assert r.items.tolist() == [3, 1, 2, 4]
    np.testing.assert_allclose(r.similarity, [-1.0, 0.9 / np.hypot(0.9, 0.1), 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(r.contribution, r.similarity * (r.rating - 3.0))
    assert explain_item(model, 0, [1, 2, 3], [1, 5, 5], k=1).contribution[0] < 2.5  # k cuts the list
    low = explain_item(model, 0, [1], [1], k=5)
    assert low.contribution[0] < 0  # a disliked near neighbour counts against the item


def test_implicit_weights_and_bad_input() -> None:
    model: Any = _Embedded(EMB, None)
    r = explain_item(model, 0, [2, 1], [1, 1], k=5)
    assert r.items.tolist() == [1, 2] and r.contribution[0] == pytest.approx(r.similarity[0])
    empty = explain_item(model, 0, [], [], k=5)
    assert len(empty.items) == 0
    with pytest.raises(ConfigError):
        explain_item(model, 0, [1], [1], k=0)
    with pytest.raises(DataError):
        explain_item(model, 9, [1], [1])
    with pytest.raises(DataError):
        explain_item(model, 0, [1, 2], [1])


def test_route_explains_with_stored_feedback(make_client: Callable[..., TestClient]) -> None:
    c = make_client("mf", "bias")
    user = "web-explain"
    assert c.get(f"/v1/users/{user}/explain/50").status_code == 404  # no ratings yet
    rated = {50: 5, 181: 5, 1: 2}
    r = c.post(
        f"/v1/users/{user}/ratings", json={"ratings": [{"item": i, "rating": v} for i, v in rated.items()]}
    )
    assert r.status_code == 201, r.text
    top = c.get(f"/v1/users/{user}/recommendations", params={"k": 1}).json()["items"][0]
    body = c.get(f"/v1/users/{user}/explain/{top['item']}", params={"k": 2}).json()
    assert body["model"]["name"] == "mf" and body["user"] == user
    assert body["item"]["item"] == top["item"] and body["score"] == pytest.approx(top["score"], rel=1e-5)
    assert body["history_size"] == 3 and "cosine" in body["method"]
    because = body["because"]
    assert len(because) == 2 and {b["item"] for b in because} <= set(rated)
    assert because[0]["contribution"] >= because[1]["contribution"]
    for b in because:
        assert b["rating"] == rated[b["item"]] and -1 <= b["similarity"] <= 1 and b["title"]

    # A known training user is explained from their training ratings.
    known = c.get("/v1/users/196/explain/50").json()
    assert known["history_size"] > 0 and len(known["because"]) == 5
    # Errors are 4xx with the offending id named; a model without embeddings says it cannot.
    unknown = c.get(f"/v1/users/{user}/explain/999999")
    assert unknown.status_code == 404 and "999999" in unknown.json()["detail"]
    assert c.get(f"/v1/users/{user}/explain/50", params={"k": 0}).status_code == 422
    bias = c.get("/v1/users/196/explain/50", params={"model": "bias"})
    assert bias.status_code == 422 and bias.json()["error"] == "unsupported"
