"""The exploration routes of a served model (``/v1/models/{name}/explore/...``): the t-SNE map, clusters,
k selection and neighbours of a real mf model of ml-100k, their agreement with one another and with
the similar-items route, and their errors (always 4xx JSON)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recengine.serving.app import create_app

BASE = "/v1/models/{}/explore"
ROUTES = ("map", "clusters", "k-selection", "neighbours", "user-neighbours")


@pytest.fixture(scope="module")
def explore_client(
    model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """mf (default, with item and user embeddings) beside bias and pop (neither has embeddings); one
    app for the module, so the map is computed once."""
    specs = [(n, model_dirs[n]) for n in ("mf", "bias", "pop")]
    store = tmp_path_factory.mktemp("explore-routes") / "feedback.sqlite3"
    with TestClient(create_app(specs, store_url=store)) as c:
        yield c


def _ok(r) -> dict:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["name"] == "mf" and set(body["model"]) >= {"version", "created", "library_version"}
    assert r.headers["x-model-version"] == body["model"]["version"]
    return body


def test_map_points_carry_title_genre_cluster_and_ratings(explore_client: TestClient) -> None:
    body = _ok(explore_client.get("/v1/models/mf/explore/map", params={"k": 6}))
    pts = body["points"]
    assert body["n_items"] == body["n_points"] == len(pts) == 1682 and not body["subsampled"]
    assert body["max_points"] >= 1682 and body["sample"] == "all items"
    assert body["method"] == "kmeans" and body["k"] == 6
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in pts)
    assert {p["genre"] for p in pts} <= set(body["genres"]) and {p["cluster"] for p in pts} == set(range(6))
    star_wars = next(p for p in pts if p["item"] == 50)
    assert star_wars["title"] == "Star Wars (1977)" and star_wars["ratings"] == 583
    assert star_wars["genre"] in star_wars["genres"] and 1 <= star_wars["mean_rating"] <= 5
    labelled = [pts[i]["ratings"] for i in body["labelled"]]
    assert labelled == sorted(labelled, reverse=True) and labelled[0] == max(p["ratings"] for p in pts)

    # The same map again (kept, and seeded), with the clusters of another k on the same points.
    again = _ok(explore_client.get("/v1/models/mf/explore/map", params={"k": 4, "method": "agglomerative"}))
    assert [(p["x"], p["y"]) for p in again["points"]] == [(p["x"], p["y"]) for p in pts]
    assert again["tsne"] == body["tsne"] and {p["cluster"] for p in again["points"]} == set(range(4))

    # The map's clusters are the cluster table's.
    table = _ok(explore_client.get("/v1/models/mf/explore/clusters", params={"k": 6}))
    assert Counter(p["cluster"] for p in pts) == {c["cluster"]: c["size"] for c in table["clusters"]}


def test_clusters_name_over_represented_genres_and_most_rated_titles(explore_client: TestClient) -> None:
    body = _ok(explore_client.get("/v1/models/mf/explore/clusters", params={"k": 8}))
    clusters = body["clusters"]
    assert body["k"] == len(clusters) == 8 and body["n_items"] == 1682
    sizes = [c["size"] for c in clusters]
    assert sum(sizes) == 1682 and sizes == sorted(sizes, reverse=True)  # 0 is the largest
    assert any(c["genres"] for c in clusters)
    for c in clusters:
        assert all(g["lift"] > 1 and 0 < g["share"] <= 1 for g in c["genres"])
        top = [t["ratings"] for t in c["most_rated"]]
        assert top and top == sorted(top, reverse=True) and all(t["title"] for t in c["most_rated"])
        assert 1 <= c["mean_rating"] <= 5
    assert body == _ok(explore_client.get("/v1/models/mf/explore/clusters", params={"k": 8}))


def test_k_selection_curves(explore_client: TestClient) -> None:
    for method in ("kmeans", "agglomerative"):
        body = _ok(explore_client.get("/v1/models/mf/explore/k-selection", params={"method": method}))
        assert body["method"] == method and body["n"] == body["n_items"] == 1682
        ks = body["ks"]
        assert ks == sorted(ks) and len(body["inertia"]) == len(body["silhouette"]) == len(ks)
        assert body["inertia"][0] > body["inertia"][-1] and body["elbow_k"] in ks
        assert body["best_silhouette_k"] in ks


def test_item_neighbours_agree_with_similar_items(explore_client: TestClient) -> None:
    body = _ok(
        explore_client.get(
            "/v1/models/mf/explore/neighbours", params={"item": ["50", "Fargo"], "k": 5, "min_ratings": 0}
        )
    )
    star_wars, fargo = body["neighbours"]
    assert star_wars["query"]["item"] == 50 and fargo["query"]["title"] == "Fargo"
    sims = [n["similarity"] for n in star_wars["neighbours"]]
    assert len(sims) == 5 and sims == sorted(sims, reverse=True)
    similar = explore_client.get("/v1/items/50/similar", params={"k": 5, "model": "mf"}).json()["items"]
    assert {n["item"] for n in star_wars["neighbours"]} == {s["item"] for s in similar}
    popular = _ok(explore_client.get("/v1/models/mf/explore/neighbours", params={"n": 3, "min_ratings": 100}))
    assert [t["query"]["item"] for t in popular["neighbours"]] == [50, 258, 100]  # the most rated
    assert all(n["ratings"] >= 100 for t in popular["neighbours"] for n in t["neighbours"])


def test_user_neighbours(explore_client: TestClient) -> None:
    body = _ok(explore_client.get("/v1/models/mf/explore/user-neighbours", params={"user": "1", "k": 3}))
    (table,) = body["neighbours"]
    assert table["query"] == {"user": 1, "ratings": 272} and len(table["neighbours"]) == 3
    assert all(0 <= n["shared_items"] <= n["ratings"] and n["user"] != 1 for n in table["neighbours"])
    busiest = _ok(explore_client.get("/v1/models/mf/explore/user-neighbours", params={"n": 2}))
    assert len(busiest["neighbours"]) == 2


@pytest.mark.parametrize(
    ("url", "status", "code", "fragment"),
    [
        ("/v1/models/nope/explore/map", 404, "unknown_model", "nope"),
        ("/v1/models/bias/explore/map", 422, "unsupported", "embeddings"),
        ("/v1/models/pop/explore/clusters", 422, "unsupported", "embeddings"),
        ("/v1/models/bias/explore/user-neighbours", 422, "unsupported", "embeddings"),
        ("/v1/models/mf/explore/clusters?k=1", 422, "invalid_request", "k"),
        ("/v1/models/mf/explore/clusters?k=41", 422, "invalid_request", "k"),
        ("/v1/models/mf/explore/map?k=x", 422, "invalid_request", "k"),
        ("/v1/models/mf/explore/map?method=dbscan", 422, "invalid_request", "method"),
        ("/v1/models/mf/explore/k-selection?method=", 422, "invalid_request", "method"),
        ("/v1/models/mf/explore/neighbours?item=no+such+film+anywhere", 404, "unknown_id", "no such film"),
        ("/v1/models/mf/explore/neighbours?item=%20", 422, "invalid_value", "empty"),
        ("/v1/models/mf/explore/neighbours?item=0", 404, "unknown_id", "no item has the id '0'"),
        ("/v1/models/mf/explore/neighbours?k=0", 422, "invalid_request", "k"),
        ("/v1/models/mf/explore/neighbours?k=101", 422, "invalid_request", "k"),
        ("/v1/models/mf/explore/user-neighbours?user=999999", 404, "unknown_id", "999999"),
        ("/v1/models/mf/explore/user-neighbours?n=0", 422, "invalid_request", "n"),
    ],
)
def test_errors_are_4xx_json(
    explore_client: TestClient, url: str, status: int, code: str, fragment: str
) -> None:
    r = explore_client.get(url)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code and fragment in body["detail"]


def test_openapi_and_api_key(explore_client: TestClient, make_client) -> None:
    paths = explore_client.get("/openapi.json").json()["paths"]
    for route in ROUTES:
        op = paths[f"/v1/models/{{name}}/explore/{route}"]["get"]
        assert op["tags"] == ["explore"] and {"200", "404", "422"} <= set(op["responses"])
        assert op["security"] == [{}, {"ApiKey": []}]
    guarded = make_client("mf", api_key="s3cret")
    assert guarded.get("/v1/models/mf/explore/clusters?k=3").status_code == 401
    r = guarded.get("/v1/models/mf/explore/clusters?k=3", headers={"x-api-key": "s3cret"})
    assert r.status_code == 200 and r.json()["k"] == 3
