"""REST API v1: every route's happy path and its errors, feedback changing recommendations, the
API key, the OpenAPI document, reload through the admin route and refusal of a corrupt model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recengine import artifacts
from recengine.serving.app import create_app

ROUTES = (
    "/ping",
    "/invocations",
    "/endpoints/{name}/invocations",
    "/v1/users/{user}/recommendations",
    "/v1/recommendations",
    "/v1/items/{item}/similar",
    "/v1/items",
    "/v1/items/{item}",
    "/v1/predictions",
    "/v1/users/{user}/ratings",
    "/v1/models",
    "/v1/models/{name}",
    "/v1/admin/reload",
)


JSON = {"content-type": "application/json"}


def _ok(r, status: int = 200) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["model"]) >= {"name", "version", "created", "library_version"}
    assert r.headers["x-model-version"] == body["model"]["version"]
    return body


def test_known_user_recommendations_match_the_model(client: TestClient, model_dirs: dict[str, Path]) -> None:
    body = _ok(client.get("/v1/users/196/recommendations", params={"k": 5}))
    assert body["user"] == 196 and body["folded_in"] is False and body["model"]["name"] == "bias"
    ids, scores = artifacts.load(model_dirs["bias"]).recommend([196], 5)
    assert [x["item"] for x in body["items"]] == ids[0].tolist()
    assert [x["score"] for x in body["items"]] == pytest.approx(scores[0].tolist())
    assert all(x["title"] and x["genres"] is not None and x["ratings"] > 0 for x in body["items"])


def test_filters_allow_block_and_exclude_seen(client: TestClient, model_dirs: dict[str, Path]) -> None:
    model = artifacts.load(model_dirs["bias"])
    seen = set(model.user_history(196)[0].tolist())
    top = [x["item"] for x in client.get("/v1/users/196/recommendations?k=3").json()["items"]]
    blocked = [
        x["item"] for x in client.get(f"/v1/users/196/recommendations?k=3&block={top[0]}").json()["items"]
    ]
    assert top[0] not in blocked and blocked[:2] == top[1:]
    allowed = client.get("/v1/users/196/recommendations?k=5&allow=1&allow=2&allow=3").json()["items"]
    assert {x["item"] for x in allowed} <= {1, 2, 3} - seen
    with_seen = client.get("/v1/users/196/recommendations?k=1000&exclude_seen=false").json()["items"]
    assert len(with_seen) == 1000 and seen & {x["item"] for x in with_seen}
    without = client.get("/v1/users/196/recommendations?k=1000").json()["items"]
    assert len(without) == 1000 and not seen & {x["item"] for x in without}
    post = client.post("/v1/users/196/recommendations", json={"k": 3, "block": [top[0]]})
    assert [x["item"] for x in _ok(post)["items"]] == blocked


@pytest.mark.parametrize(
    ("url", "status", "fragment"),
    [
        ("/v1/users/99999/recommendations", 404, "99999"),
        ("/v1/users/196/recommendations?k=0", 422, "k"),
        ("/v1/users/196/recommendations?k=1001", 422, "k"),
        ("/v1/users/196/recommendations?k=abc", 422, "k"),
        ("/v1/users/196/recommendations?block=424242", 404, "424242"),
        ("/v1/users/196/recommendations?model=nope", 404, "nope"),
        ("/v1/users/1_96/recommendations", 404, "1_96"),  # int() would read user 196
        ("/v1/users/%EF%BC%91%EF%BC%99%EF%BC%96/recommendations", 404, "１９６"),  # full-width digits
        ("/v1/items/424242/similar", 404, "424242"),
        ("/v1/items/1/similar", 422, "embeddings"),
        ("/v1/items/424242", 404, "424242"),
        ("/v1/items?q=", 422, "q"),
        ("/v1/items", 422, "q"),
        ("/v1/models/nope", 404, "nope"),
        ("/v1/nothing-here", 404, "Not Found"),
    ],
)
def test_get_errors(client: TestClient, url: str, status: int, fragment: str) -> None:
    r = client.get(url)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "detail"} and fragment in r.json()["detail"]


def test_anonymous_fold_in(client: TestClient, model_dirs: dict[str, Path]) -> None:
    ratings = [{"item": 50, "rating": 5}, {"item": "181", "rating": 4}, {"item": 50, "rating": 1}]
    body = _ok(client.post("/v1/recommendations", json={"ratings": ratings, "k": 4, "block": [408]}))
    assert body["folded_in"] and body["user"] is None and body["history_size"] == 2
    ids, _ = artifacts.load(model_dirs["bias"]).recommend_new([181, 50], [4.0, 1.0], 4, exclude_items=[408])
    assert [x["item"] for x in body["items"]] == ids.tolist()
    for bad, status in [
        ({"ratings": [{"item": 50, "rating": 9}]}, 422),
        ({"ratings": [{"item": 424242, "rating": 3}]}, 404),
        ({"ratings": [{"item": 50}]}, 422),
        ({"ratings": [], "k": 0}, 422),
        ({"ratings": [], "extra": 1}, 422),
    ]:
        assert client.post("/v1/recommendations", json=bad).status_code == status, bad
    nofold = client.post("/v1/recommendations?model=nope", json={"ratings": []})
    assert nofold.status_code == 404


def test_posted_rating_changes_next_recommendations(client: TestClient) -> None:
    before = _ok(client.get("/v1/users/196/recommendations?k=5"))
    top = before["items"][0]["item"]
    posted = _ok(client.post("/v1/users/196/ratings", json={"ratings": [{"item": top, "rating": 1}]}), 201)
    assert [(r["item"], r["rating"]) for r in posted["ratings"]] == [(top, 1.0)] and posted[
        "store"
    ] == "sqlite"
    after = _ok(client.get("/v1/users/196/recommendations?k=5"))
    assert (
        after["folded_in"]
        and after["feedback_size"] == 1
        and after["history_size"] == before["history_size"] + 1
    )
    assert top not in [x["item"] for x in after["items"]]  # rated now, so seen
    # a brand-new user exists once they have rated
    assert client.get("/v1/users/web-alice/recommendations").status_code == 404
    _ok(client.post("/v1/users/web-alice/ratings", json={"ratings": [{"item": 50, "rating": 5}]}), 201)
    alice = _ok(client.get("/v1/users/web-alice/recommendations?k=3"))
    assert alice["user"] == "web-alice" and alice["history_size"] == 1 and len(alice["items"]) == 3
    listed = _ok(client.get("/v1/users/web-alice/ratings"))
    assert (listed["ratings"][0]["title"], listed["ratings"][0]["year"]) == ("Star Wars", 1977)
    assert _ok(client.get("/v1/users/nobody/ratings"))["ratings"] == []
    # a number too large for the model's integer ids is a text id of a new user, not an error
    huge = "9" * 30
    posted = _ok(client.post(f"/v1/users/{huge}/ratings", json={"ratings": [{"item": 50, "rating": 4}]}), 201)
    assert posted["user"] == huge
    assert _ok(client.get(f"/v1/users/{huge}/recommendations"))["folded_in"]
    assert client.get(f"/v1/items/{huge}").status_code == 404


def test_known_user_history_is_training_ratings_plus_feedback(
    client: TestClient, ml100k, model_dirs: dict[str, Path]
) -> None:
    """Fold-in of a known user starts from their real training ratings; feedback on an item they
    rated in training replaces that rating, feedback on a new item adds to it."""
    data = ml100k.interactions
    rows = data.user == data.users.to_internal([196])[0]
    history = dict(
        zip(data.items.external[data.item[rows]].tolist(), data.rating[rows].tolist(), strict=True)
    )
    rated = next(iter(history))
    client.post(
        "/v1/users/196/ratings", json={"ratings": [{"item": rated, "rating": 1}, {"item": 1, "rating": 5}]}
    )
    history[rated], history[1] = 1.0, 5.0
    body = _ok(client.get("/v1/users/196/recommendations?k=5"))
    assert body["folded_in"] and body["history_size"] == len(history) and body["feedback_size"] == 2
    model = artifacts.load(model_dirs["bias"])
    ids, scores = model.recommend_new(list(history), list(history.values()), 5)
    assert [x["item"] for x in body["items"]] == ids.tolist()
    assert [x["score"] for x in body["items"]] == pytest.approx(scores.tolist())


def test_rating_changes_fold_in_scores(client: TestClient) -> None:
    """A lower rating of a movie lowers the user's folded-in bias: every score drops."""
    client.post("/v1/users/web-bob/ratings", json={"ratings": [{"item": 50, "rating": 5}]})
    high = client.get("/v1/users/web-bob/recommendations?k=3").json()["items"]
    client.post("/v1/users/web-bob/ratings", json={"ratings": [{"item": 50, "rating": 1}]})
    low = client.get("/v1/users/web-bob/recommendations?k=3").json()["items"]
    assert [x["item"] for x in high] == [x["item"] for x in low]
    assert all(lo["score"] < hi["score"] for lo, hi in zip(low, high, strict=True))


def test_post_ratings_errors(client: TestClient) -> None:
    url = "/v1/users/196/ratings"
    assert client.post(url, json={"ratings": [{"item": 424242, "rating": 3}]}).status_code == 404
    assert (
        client.post(url, json={"ratings": [{"item": 1, "rating": 0.5}]}).status_code == 422
    )  # off 1–5 step 1
    assert client.post(url, json={"ratings": [{"item": 1, "rating": 3.5}]}).status_code == 422
    assert client.post(url, json={"ratings": []}).status_code == 422
    assert (
        client.post(url, content=b'{"ratings": [', headers={"content-type": "application/json"}).status_code
        == 422
    )
    broken = client.post(url, content=b'{"ratings": [{"item": 1 "rating": 3}]}', headers=JSON)
    assert broken.status_code == 422
    assert broken.json()["detail"] == "the body is not valid JSON (Expecting ',' delimiter at character 25)"
    assert client.post(url, content=b"rating=3", headers={"content-type": "text/plain"}).status_code == 415
    assert (
        client.post(
            "/v1/users/" + "x" * 201 + "/ratings", json={"ratings": [{"item": 1, "rating": 3}]}
        ).status_code
        == 422
    )
    # JSON types only: a bool or a string is not a rating, a string not a yes/no
    for rating in (True, "5", " 5 ", "5e0"):
        assert client.post(url, json={"ratings": [{"item": 1, "rating": rating}]}).status_code == 422
    assert client.post("/v1/users/196/recommendations", json={"exclude_seen": "no"}).status_code == 422
    assert client.post("/v1/users/196/recommendations", json={"k": "3"}).status_code == 422
    # an id spelled with an underscore is no other id
    assert client.post(url, json={"ratings": [{"item": "1_7_2", "rating": 2}]}).status_code == 404
    assert _ok(client.get(url))["ratings"] == []  # nothing stored by the refused requests
    assert _ok(client.get("/v1/users/1_96/ratings"))["ratings"] == []  # a new user, not 196


def test_similar_items(make_client, model_dirs: dict[str, Path]) -> None:
    c = make_client("mf")
    body = _ok(c.get("/v1/items/50/similar?k=5"))
    assert body["item"]["title"] == "Star Wars" and len(body["items"]) == 5
    ids, _ = artifacts.load(model_dirs["mf"]).similar_items([50], 5)
    assert [x["item"] for x in body["items"]] == ids[0].tolist()


def test_predictions(client: TestClient, model_dirs: dict[str, Path]) -> None:
    pairs = [{"user": 196, "item": 242}, {"user": "1", "item": "50"}]
    body = _ok(client.post("/v1/predictions", json={"pairs": pairs}))
    assert body["kind"] == "regression"
    want = artifacts.load(model_dirs["bias"]).predict([196, 1], [242, 50])
    assert [p["prediction"] for p in body["predictions"]] == pytest.approx(want.tolist())
    assert body["predictions"][1]["user"] == "1"
    binary = _ok(client.post("/v1/predictions?model=binary", json={"pairs": pairs}))
    assert binary["kind"] == "binary" and all(0 <= p["prediction"] <= 1 for p in binary["predictions"])
    assert client.post("/v1/predictions", json={"pairs": []}).status_code == 422
    assert client.post("/v1/predictions", json={"pairs": [{"user": 424242, "item": 1}]}).status_code == 404
    assert client.post("/v1/predictions?model=pop", json={"pairs": pairs}).status_code == 422
    assert client.post("/v1/predictions", json={"pairs": [{"user": 2**70, "item": 1}]}).status_code == 422
    huge = client.post("/v1/predictions", json={"pairs": [{"user": str(2**70), "item": 1}]})
    assert huge.status_code == 404 and str(2**70) in huge.json()["detail"]


def test_predictions_at_a_time_for_a_model_with_sessions(tmp_path: Path) -> None:
    """A pair's timestamp reaches a model with sessions; pairs without one are predicted in none,
    as the model predicts without a time; a bad time is a 422."""
    from recengine.models.object2vec import Object2Vec
    from tests.models.test_object2vec_sessions import FAST, moods

    train, _ = moods()
    m = Object2Vec(FAST, session_gap=60, session_reg=0.5, epochs=10).fit(train)
    c = TestClient(create_app([("o2v", artifacts.save(m, tmp_path / "o2v"))], store_url=tmp_path / "f.db"))
    with c:
        t = int(train.timestamp[0])  # type: ignore[index]
        user, item = int(train.users.external[train.user[0]]), int(train.items.external[train.item[0]])
        pairs = [
            {"user": user, "item": item, "timestamp": t},
            {"user": user, "item": item},
            {"user": user, "item": item, "timestamp": t + 10**7},
        ]
        got = [p["prediction"] for p in _ok(c.post("/v1/predictions", json={"pairs": pairs}))["predictions"]]
        u, i = train.user[:1].repeat(3), train.item[:1].repeat(3)
        want = m.predict_internal(u, i, [t, -(2**63), t + 10**7])
        assert got == pytest.approx(want.tolist()) and got[1] == pytest.approx(got[2]) != got[0]
        untimed = _ok(c.post("/v1/predictions", json={"pairs": pairs[1:2]}))["predictions"][0]["prediction"]
        assert untimed == pytest.approx(m.predict_internal(u[:1], i[:1])[0])
        for bad in ("1.5e9", 1.5, 2**63):
            body = {"pairs": [{"user": user, "item": item, "timestamp": bad}]}
            assert c.post("/v1/predictions", json=body).status_code == 422


def test_search(client: TestClient) -> None:
    body = _ok(client.get("/v1/items", params={"q": "star wars"}))
    assert body["items"][0]["title"] == "Star Wars"
    items = _ok(client.get("/v1/items", params={"q": "THE GODFATHER", "limit": 5}))["items"]
    assert [x["item"] for x in items[:2]] == [127, 187]  # "Godfather, The" read as "The Godfather"
    star = _ok(client.get("/v1/items", params={"q": "star", "limit": 50}))["items"]
    assert all("star" in x["title"].lower() for x in star) and len(star) <= 50
    assert _ok(client.get("/v1/items", params={"q": "zzzzqqq"}))["items"] == []
    assert client.get("/v1/items", params={"q": "a", "limit": 101}).status_code == 422


def test_item_detail(client: TestClient) -> None:
    body = _ok(client.get("/v1/items/50"))
    item = body["item"]
    assert (item["item"], item["title"], item["year"], item["ratings"]) == (50, "Star Wars", 1977, 583)
    assert "Sci-Fi" in item["genres"]


def test_model_info_and_list(client: TestClient) -> None:
    listing = client.get("/v1/models").json()
    assert listing["default"] == "bias"
    assert [m["model"]["name"] for m in listing["models"]] == ["bias", "binary", "pop"]
    info = _ok(client.get("/v1/models/binary"))
    assert info["kind"] == "binary" and info["algorithm"] == "bias" and info["dataset"] == "ml-100k"
    assert info["n_users"] == 943 and info["n_items"] == 1682 and info["created"] and not info["default"]
    assert {"evaluation", "training"} <= set(info["metrics"])
    assert _ok(client.get("/v1/models/pop"))["kind"] == "ranking"


def test_api_key(make_client) -> None:
    c = make_client("bias", api_key="s3cret")
    assert c.get("/ping").status_code == 200
    for path in ("/v1/models", "/openapi.json", "/v1/users/1/recommendations"):
        r = c.get(path)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert c.post("/invocations", json={"instances": [{"in0": [1], "in1": [1]}]}).status_code == 401
    assert c.get("/v1/models", headers={"x-api-key": "wrong"}).status_code == 401
    assert c.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_openapi_documents_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths) >= set(ROUTES)
    inv = paths["/invocations"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/jsonlines"} <= set(inv)
    rec = paths["/v1/users/{user}/recommendations"]["get"]["responses"]
    assert "$ref" in str(rec["200"]) and "404" in rec
    assert spec["components"]["securitySchemes"]["ApiKey"]["name"] == "x-api-key"
    assert "security" not in paths["/ping"]["get"] and paths["/v1/models"]["get"]["security"]
    assert client.get("/docs").status_code == 200


def test_reload_route(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    with TestClient(create_app([("m", model_dirs["bias"])], store_url=tmp_path / "s.sqlite3")) as c:
        v1 = c.get("/v1/models/m").json()["model"]["version"]
        r = _ok(c.post("/v1/admin/reload", json={"model": "m", "path": str(model_dirs["bias-v2"])}))
        v2 = r["model"]["version"]
        assert r["previous"]["version"] == v1 and v2 != v1
        assert c.get("/v1/models/m").json()["params"]["reg_user"] == 5.0
        # a corrupt directory is refused and the current model keeps serving
        bad = tmp_path / "bad"
        shutil.copytree(model_dirs["bias"], bad)
        with (bad / "weights.safetensors").open("r+b") as f:
            f.seek(100)
            f.write(b"\x00\x01\x02")
        refused = c.post("/v1/admin/reload", json={"model": "m", "path": str(bad)})
        assert refused.status_code == 422 and refused.json()["error"] == "model_rejected"
        assert "weights.safetensors" in refused.json()["detail"]
        info = c.get("/v1/models/m").json()
        assert info["model"]["version"] == v2 and info["params"]["reg_user"] == 5.0
        assert _ok(c.get("/v1/users/1/recommendations"))["model"]["version"] == v2
        # no body: reload the current directory
        assert _ok(c.post("/v1/admin/reload"))["path"] == str(model_dirs["bias-v2"].resolve())
        assert c.post("/v1/admin/reload", json={"model": "nope"}).status_code == 404
        assert c.post("/v1/admin/reload", json={"path": str(tmp_path / "missing")}).status_code == 422


def test_corrupt_model_refused_at_start(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(model_dirs["bias"], bad)
    (bad / "items.json").write_text("[]")
    with pytest.raises(artifacts.ArtifactError, match=r"items\.json"):
        create_app([bad], store_url=tmp_path / "s.sqlite3")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(artifacts.ArtifactError):
        create_app([model_dirs["bias"], foreign], store_url=tmp_path / "s.sqlite3")
    assert create_app([model_dirs["bias"]], store_url=tmp_path / "s.sqlite3").state.registry.names() == [
        "bias"
    ]


@pytest.fixture(scope="module")
def stars_binary_dir(ml100k, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """object2vec fitted on ml-100k's stars that predicts P(rating > 3): it takes stars, answers 0..1."""
    from recengine.models.object2vec import Object2Vec

    small = {"epochs": 1, "members": 1, "enc_dim": 16, "mlp_dim": 16, "token_embedding_dim": 16, "threads": 1}
    model = Object2Vec(output_layer="softmax", num_classes=5, label_threshold=3, rating_classes=True, **small)
    model.use_dataset(ml100k).fit(ml100k.interactions)
    return artifacts.save(model, tmp_path_factory.mktemp("o2v") / "o2v-binary", dataset=ml100k)


def test_a_binary_model_fitted_on_stars_takes_stars(stars_binary_dir: Path, tmp_path: Path) -> None:
    """Feedback, a known user's history and fold-in are on the scale the model was fitted on (stars),
    its predictions on 0..1: a posted star rating folds in with the training stars, not a scale error."""
    app = create_app([("o2v", stars_binary_dir)], store_url=tmp_path / "feedback.sqlite3")
    with TestClient(app) as client:
        info = _ok(client.get("/v1/models/o2v"))
        assert info["kind"] == "binary"
        assert info["rating_scale"] == {"low": 1.0, "high": 5.0, "step": 1.0}
        assert info["prediction_scale"] == {"low": 0.0, "high": 1.0, "step": 1.0}
        before = _ok(client.get("/v1/users/196/recommendations?k=5"))
        assert not before["folded_in"] and all(0 <= x["score"] <= 1 for x in before["items"])
        _ok(client.post("/v1/users/196/ratings", json={"ratings": [{"item": 50, "rating": 1}]}), 201)
        after = _ok(client.get("/v1/users/196/recommendations?k=5"))
        assert after["folded_in"] and after["feedback_size"] == 1
        assert after["history_size"] == before["history_size"] + 1
        assert all(0 <= x["score"] <= 1 for x in after["items"])
        assert (
            client.post("/v1/users/196/ratings", json={"ratings": [{"item": 1, "rating": 0}]}).status_code
            == 422
        )
        reasons = _ok(client.get("/v1/users/196/explain/50"))["because"]
        assert reasons and all(
            r["contribution"] == pytest.approx(r["similarity"] * (r["rating"] - 3)) for r in reasons
        )
        anon = _ok(
            client.post(
                "/v1/recommendations",
                json={"ratings": [{"item": 50, "rating": 5}, {"item": 181, "rating": 4}]},
            )
        )
        assert anon["folded_in"] and len(anon["items"]) == 10
    model = artifacts.load(stars_binary_dir)
    assert model.input_scale is not None and (model.input_scale.low, model.input_scale.high) == (1.0, 5.0)
    liked, disliked = model.fold_in([50, 172, 181], [5, 5, 5]), model.fold_in([50, 172, 181], [1, 1, 1])
    p_liked = model._score_folded(liked)[model.items.to_internal([174])[0]]  # Raiders of the Lost Ark
    p_disliked = model._score_folded(disliked)[model.items.to_internal([174])[0]]
    assert p_liked > p_disliked  # the stars are read as stars: loving the Star Wars films says more


def test_ids_over_2_to_the_62_are_served(tmp_path: Path) -> None:
    """Hashed ids fill the whole 64-bit range: a model trained on them answers for them on every
    route, as it does on the command line."""
    import numpy as np

    from recengine.data.interactions import Interactions
    from recengine.models.registry import create

    rng = np.random.default_rng(0)
    base = 9_000_000_000_000_000_000  # above 2**62, below 2**63
    users, items = rng.integers(0, 30, 600), rng.integers(0, 40, 600)
    inter = Interactions.from_arrays(users, base + items, rng.integers(1, 6, 600))
    model_dir = artifacts.save(create("mf", {"factors": 4, "epochs": 2}).fit(inter), tmp_path / "mf")
    with TestClient(create_app([("mf", model_dir)], store_url=tmp_path / "f.sqlite3")) as c:
        user, item = int(users[0]), base + int(items[0])
        recs = _ok(c.get(f"/v1/users/{user}/recommendations?k=3"))["items"]
        assert len(recs) == 3 and all(r["item"] >= base for r in recs)
        assert _ok(c.get(f"/v1/items/{item}/similar?k=2"))["items"][0]["item"] >= base
        pred = _ok(c.post("/v1/predictions", json={"pairs": [{"user": user, "item": item}]}))
        assert pred["predictions"][0]["item"] == item
        inv = c.post("/invocations", json={"instances": [{"in0": [user], "in1": [item]}]})
        assert inv.status_code == 200 and len(inv.json()["predictions"]) == 1, inv.text
        too_big = c.post("/v1/predictions", json={"pairs": [{"user": user, "item": 2**63}]})
        assert too_big.status_code == 422


def test_star_and_label_models_of_one_data_set_keep_their_feedback_apart(client: TestClient) -> None:
    """bias takes stars and binary 0/1 labels, both of ml-100k: a user's stars must not reach the
    label model (5 is no label) nor its likes the star model (1 would be one star)."""
    stars, likes = "/v1/users/both/ratings", "/v1/users/both/ratings?model=binary"
    _ok(client.post(stars, json={"ratings": [{"item": 50, "rating": 5}]}), 201)
    assert _ok(client.get(likes))["ratings"] == []
    _ok(client.post(likes, json={"ratings": [{"item": 1, "rating": 1}]}), 201)
    assert [(r["item"], r["rating"]) for r in _ok(client.get(stars))["ratings"]] == [(50, 5.0)]
    assert [(r["item"], r["rating"]) for r in _ok(client.get(likes))["ratings"]] == [(1, 1.0)]
    _ok(client.get("/v1/users/both/recommendations?model=binary"))  # folds in its own likes only


def test_feedback_namespaces() -> None:
    from recengine.data.interactions import RatingScale
    from recengine.serving.store import feedback_namespace

    assert feedback_namespace("ml-100k", RatingScale(1.0, 5.0, 1.0)) == "ml-100k"
    assert feedback_namespace("ml-100k", None) == "ml-100k"
    assert feedback_namespace("ml-100k", RatingScale(0.0, 1.0, 1.0)) == "ml-100k:labels"
