"""SageMaker's container contract: the seed's payloads byte for byte, JSON Lines, feature rows, and
4xx (never 5xx) for every kind of bad body."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recengine import artifacts

JSON = {"content-type": "application/json"}
JSONL = {"content-type": "application/jsonlines"}


def seed_payload(pairs: list[tuple[int, int]]) -> str:
    """What the seed's notebook passed to ``predictor.predict`` (ids as strings)."""
    return json.dumps({"instances": [{"in0": [str(u)], "in1": [str(m)]} for u, m in pairs]})


def test_ping(client: TestClient) -> None:
    r = client.get("/ping")
    assert r.status_code == 200 and r.json() == {"status": "ok", "models": ["bias", "binary", "pop"]}


def test_seed_rating_payload_unchanged(client: TestClient, model_dirs: dict[str, Path]) -> None:
    r = client.post("/invocations", content=seed_payload([(196, 242), (186, 302)]), headers=JSON)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-model-name"] == "bias" and len(r.headers["x-model-version"]) == 12
    preds = r.json()["predictions"]
    expected = artifacts.load(model_dirs["bias"]).predict([196, 186], [242, 302])
    assert [p["scores"] for p in preds] == [[pytest.approx(x)] for x in expected]
    # ids as integers, as a client might also send them, give the same answer
    ints = client.post(
        "/invocations", json={"instances": [{"in0": [196], "in1": [242]}, {"in0": [186], "in1": [302]}]}
    )
    assert ints.json() == r.json()
    # a training line sent as it is: its label is ignored
    labelled = client.post("/invocations", json={"instances": [{"in0": [196], "in1": [242], "label": 3}]})
    assert labelled.json()["predictions"] == r.json()["predictions"][:1]


def test_binary_classifier_scores_are_p0_p1(client: TestClient) -> None:
    r = client.post(
        "/endpoints/binary/invocations", content=seed_payload([(196, 242), (1, 50)]), headers=JSON
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-model-name"] == "binary"
    for p in r.json()["predictions"]:
        p0, p1 = p["scores"]
        assert 0 <= p1 <= 1 and p0 == pytest.approx(1 - p1)


def test_jsonlines_in_and_out(client: TestClient) -> None:
    body = '{"in0": [196], "in1": [242]}\n\n{"in0": ["186"], "in1": ["302"]}\n'
    r = client.post("/invocations", content=body, headers=JSONL)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/jsonlines")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert len(lines) == 2 and all(len(x["scores"]) == 1 for x in lines)
    # JSON in, JSON Lines asked for
    r2 = client.post(
        "/invocations",
        content=seed_payload([(196, 242)]),
        headers={**JSON, "accept": "application/jsonlines"},
    )
    assert r2.text.strip() == r.text.splitlines()[0]
    # JSON Lines in, JSON asked for
    r3 = client.post("/invocations", content=body, headers={**JSONL, "accept": "application/json"})
    assert len(r3.json()["predictions"]) == 2


@pytest.mark.parametrize(
    ("accept", "answer"),
    [
        ("*/*", "application/jsonlines"),  # the request's own type
        ("application/*", "application/jsonlines"),
        ("text/csv, application/json;q=0.5", "application/json"),
        ("application/json;q=0.2, application/jsonlines", "application/jsonlines"),
        ("application/jsonlines;q=0.1, application/json;q=0.9", "application/json"),
        ("text/csv", None),
        ("application/json;q=0", None),
    ],
)
def test_the_accept_header_chooses_the_answer_or_is_refused(
    client: TestClient, accept: str, answer: str | None
) -> None:
    body = '{"in0": [196], "in1": [242]}\n'
    r = client.post("/invocations", content=body, headers={**JSONL, "accept": accept})
    if answer is None:
        assert r.status_code == 406 and r.json()["error"] == "not_acceptable", r.text
        assert "allows neither application/json nor application/jsonlines" in r.json()["detail"]
    else:
        assert r.status_code == 200 and r.headers["content-type"].startswith(answer), r.text


def test_one_side_gives_embeddings(make_client, model_dirs: dict[str, Path]) -> None:
    c = make_client("mf")
    r = c.post(
        "/invocations", json={"instances": [{"in0": [196]}, {"in1": ["242"]}, {"in0": [1], "in1": [1]}]}
    )
    assert r.status_code == 200, r.text
    p = r.json()["predictions"]
    model = artifacts.load(model_dirs["mf"])
    assert np.allclose(
        p[0]["embeddings"], model.user_embeddings()[model.users.to_internal([196])[0]], atol=1e-6
    )
    assert np.allclose(
        p[1]["embeddings"], model.item_embeddings()[model.items.to_internal([242])[0]], atol=1e-6
    )
    assert len(p[2]["scores"]) == 1


def test_one_side_without_embeddings_is_422(client: TestClient) -> None:
    r = client.post("/invocations", json={"instances": [{"in0": [196]}]})
    assert r.status_code == 422 and r.json()["error"] == "unsupported"


def test_feature_rows_dense_and_sparse(client: TestClient, model_dirs: dict[str, Path]) -> None:
    model = artifacts.load(model_dirs["bias"])
    nu, ni = len(model.users), len(model.items)
    dense = [0.0] * (nu + ni)
    dense[5] = dense[nu + 7] = 1.0
    sparse = {"data": {"features": {"keys": [5, nu + 7], "shape": [nu + ni], "values": [1, 1]}}}
    r = client.post("/invocations", json={"instances": [{"features": dense}, sparse]})
    assert r.status_code == 200, r.text
    s1, s2 = (p["score"] for p in r.json()["predictions"])
    assert s1 == s2 == pytest.approx(float(model.predict_internal([5], [7])[0]))
    rb = client.post("/endpoints/binary/invocations", json={"instances": [sparse]})
    p = rb.json()["predictions"][0]
    assert p["predicted_label"] == int(p["score"] >= 0.5)
    bad = client.post("/invocations", json={"instances": [{"features": [1.0, 1.0]}]})
    assert bad.status_code == 400 and "features" in bad.json()["detail"]


def test_thousand_instances_in_one_request(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    pairs = list(zip(rng.integers(1, 944, 1000).tolist(), rng.integers(1, 1683, 1000).tolist(), strict=True))
    r = client.post("/invocations", content=seed_payload(pairs), headers=JSON)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1000


@pytest.mark.parametrize(
    ("body", "headers", "status", "fragment"),
    [
        ("{not json", JSON, 400, "malformed JSON"),
        ('{"instances": []}', JSON, 400, "no instances"),
        ('{"instances": {}}', JSON, 400, "instances"),
        ("[1, 2]", JSON, 400, "JSON object"),
        ('{"instances": [1]}', JSON, 400, "not a JSON object"),
        ('{"instances": [{"in0": [1, 2], "in1": [3]}]}', JSON, 400, "one id"),
        ('{"instances": [{"in0": [true], "in1": [3]}]}', JSON, 400, "integer or a non-empty string"),
        ('{"instances": [{"in0": [1.5], "in1": [3]}]}', JSON, 400, "integer or a non-empty string"),
        ('{"instances": [{"in0": [1], "in1": [3], "x": 1}]}', JSON, 400, "unknown field"),
        ('{"instances": [{"foo": 1}]}', JSON, 400, "no known format"),
        ('{"instances": [{"in0": [NaN], "in1": [3]}]}', JSON, 400, "malformed"),
        ('{"instances": [{"in0": [99999], "in1": [3]}]}', JSON, 404, "99999"),
        ('{"instances": [{"in0": [1], "in1": ["abc"]}]}', JSON, 404, "abc"),
        (
            '{"instances": [{"in0": ["99999999999999999999999"], "in1": [1]}]}',
            JSON,
            404,
            "99999999999999999999999",
        ),
        (b"\xff\xfe", JSON, 400, "UTF-8"),
        ("[[[[" * 5000, JSON, 400, "malformed"),
        ("in0=1", {"content-type": "text/csv"}, 415, "text/csv"),
        (
            '{"instances": [{"in0": [1], "in1": [1]}]}',
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "",
        ),
        ("not json\n", JSONL, 400, "line 1"),
    ],
)
def test_bad_bodies_are_4xx(
    client: TestClient, body: str | bytes, headers: dict, status: int, fragment: str
) -> None:
    r = client.post("/invocations", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "detail"} and fragment in r.json()["detail"]


def test_ranking_model_cannot_score_pairs(client: TestClient) -> None:
    r = client.post("/endpoints/pop/invocations", content=seed_payload([(1, 1)]), headers=JSON)
    assert r.status_code == 422 and "does not score" in r.json()["detail"]


def test_unknown_endpoint_is_404(client: TestClient) -> None:
    r = client.post("/endpoints/nope/invocations", content=seed_payload([(1, 1)]), headers=JSON)
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_oversized_body_is_413(make_client) -> None:
    c = make_client("bias", max_body_bytes=1000)
    r = c.post("/invocations", content=seed_payload([(1, 1)] * 100), headers=JSON)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"

    def chunks():  # no Content-Length: the limit holds while the body streams in
        for _ in range(50):
            yield b" " * 100

    r2 = c.post("/invocations", content=chunks(), headers=JSON)
    assert r2.status_code == 413


def test_a_model_trained_on_pairs_takes_their_token_sequences(tmp_path: Path) -> None:
    """Served, a model trained on JSON Lines pairs answers the token sequences of its training file
    (several tokens per side here), as SageMaker's Object2Vec does, not ids of sequence numbers."""
    from recengine.data.pairs import read_pairs, write_pairs
    from recengine.models.object2vec import Object2Vec
    from recengine.serving.app import create_app

    rng = np.random.default_rng(0)
    in0 = [[int(u)] for u in rng.integers(0, 30, 400)]
    in1 = [[int(m), 100 + int(m) % 7] for m in rng.integers(0, 40, 400)]  # movie id and a genre token
    labels = [float(1 + (u[0] + m[0]) % 5) for u, m in zip(in0, in1, strict=True)]
    path = write_pairs(tmp_path / "train.jsonl", in0, in1, labels)
    small = {"epochs": 2, "members": 1, "enc_dim": 8, "mlp_dim": 8, "token_embedding_dim": 8, "threads": 1}
    model = Object2Vec(**small).fit_pairs(path)
    out = artifacts.save(model, tmp_path / "pairs-model")
    with TestClient(create_app([("pairs", out)], store_url=tmp_path / "fb.sqlite3")) as client:
        lines = path.read_text().splitlines()[:5]  # training lines, labels and all
        r = client.post("/invocations", content="\n".join(lines) + "\n", headers=JSONL)
        assert r.status_code == 200, r.text
        got = [json.loads(x)["scores"][0] for x in r.text.splitlines()]
        want = model.predict_pairs(read_pairs(path))[:5]
        np.testing.assert_allclose(got, want, rtol=1e-5)
        one = client.post("/invocations", json={"instances": [{"in1": in1[0]}, {"in0": in0[0]}]}).json()
        np.testing.assert_allclose(
            one["predictions"][0]["embeddings"], model.embed(1, [in1[0]])[0], rtol=1e-5
        )
        np.testing.assert_allclose(
            one["predictions"][1]["embeddings"], model.embed(0, [in0[0]])[0], rtol=1e-5
        )
        for body, status, fragment in [
            ({"in0": [1], "in1": [5, 999]}, 404, "instance 0, in1: token 999 is outside"),
            ({"in0": [], "in1": [5]}, 400, "non-empty list of tokens"),
            ({"in0": [1], "in1": [-2]}, 400, "non-negative integer"),
            ({"in0": [1], "in1": [5], "x": 1}, 400, "unknown field 'x'"),
        ]:
            bad = client.post("/invocations", json={"instances": [body]})
            assert bad.status_code == status and fragment in bad.json()["detail"], bad.text


def test_one_answer_shape_per_head_whatever_the_training_data(tmp_path: Path) -> None:
    """A softmax head answers one probability per class, trained on ratings or on pairs; a squared-
    error head on 0/1 labels answers [P(0), P(1)] like every binary model, so the serverless handler
    reads P(1) from either."""
    from recengine.data.interactions import Interactions
    from recengine.data.pairs import Pairs, write_pairs
    from recengine.models.object2vec import Object2Vec
    from recengine.serving import lambda_handler as lh
    from recengine.serving.app import create_app

    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 30, 600), rng.integers(0, 40, 600)
    small = {"epochs": 2, "members": 1, "enc_dim": 8, "mlp_dim": 8, "token_embedding_dim": 8, "threads": 1}
    three = Object2Vec(**small, output_layer="softmax", num_classes=3)
    three.fit(Interactions.from_arrays(users, items, (users + items) % 3, scale="infer"))
    likes = ((users + items) % 2).astype(float)
    path = write_pairs(tmp_path / "likes.jsonl", users, items, likes)
    mse = Object2Vec(**small).fit_pairs(path)
    dirs = [
        ("three", artifacts.save(three, tmp_path / "three")),
        ("mse", artifacts.save(mse, tmp_path / "mse")),
    ]
    with TestClient(create_app(dirs, store_url=tmp_path / "fb.sqlite3")) as client:
        body = {
            "instances": [
                {"in0": [int(u)], "in1": [int(i)]} for u, i in zip(users[:4], items[:4], strict=True)
            ]
        }
        rows = [
            p["scores"] for p in client.post("/endpoints/three/invocations", json=body).json()["predictions"]
        ]
        assert all(len(r) == 3 for r in rows)
        np.testing.assert_allclose(np.sum(rows, axis=1), 1.0, rtol=1e-5)
        ones = np.ones(4, dtype=np.int32)
        want = three.predict_pairs(
            Pairs(
                three.users.to_internal(users[:4])[:, None].astype(np.int64),
                ones,
                three.items.to_internal(items[:4])[:, None].astype(np.int64),
                ones,
            )
        )
        np.testing.assert_allclose(rows, want, rtol=1e-5)
        got = [
            p["scores"] for p in client.post("/endpoints/mse/invocations", json=body).json()["predictions"]
        ]
        p1 = mse.predict_pairs(path)[:4]
        np.testing.assert_allclose(got, np.stack([1 - p1, p1], axis=1), rtol=1e-5)
    app = lh.from_env({lh.ENV_RATING: str(dirs[1][1])})
    event = {"data": json.dumps(body), "type": "recommendation"}
    assert app(event) == [
        "We recommend the user this movie." if p > 0.5 else "We DO NOT recommend the user this movie."
        for p in p1
    ]
