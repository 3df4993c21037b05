"""The web page end to end: Debian's Chromium (Playwright) against a real uvicorn server on 127.0.0.1
serving an mf model of ml-100k, with the feedback store in tmp_path.

A person searches, rates five movies (one by keyboard only), watches the recommendations change and
exclude what they rated, opens a recommendation's similar movies and the reasons it was picked,
reloads and finds the ratings kept; the page fits a 390-px phone screen; errors show on the page.
The explore section draws the t-SNE map and the cluster table, recolours by cluster, and leads from a
clicked dot, a focused dot (keyboard) and a title in the table to that movie's similar movies.
Screenshots are written to tmp_path (``--basetemp`` keeps them for a look).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from recengine import artifacts
from recengine.data.dataset import Dataset
from recengine.models.registry import create
from recengine.serving.app import create_app
from tests.serving.fixtures import thread_server

pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency: pip install -e .[dev]")
from playwright.sync_api import Page, expect

TIMEOUT_MS = 20_000  # the machine running the tests may be busy; every wait is still bounded
expect.set_options(timeout=TIMEOUT_MS)  # expect's own default is 5 s: a first t-SNE under load takes more
# Star Wars, Toy Story, Godfather, Pulp Fiction, Titanic
RATED = {50: 5.0, 1: 4.0, 127: 5.0, 56: 4.0, 313: 2.0}
SEARCH = {50: "star wars", 1: "toy story", 127: "godfather", 56: "pulp", 313: "titanic"}
NO_OVERFLOW = """() => {
  const w = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')].filter((e) => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.right > w + 1 && !e.closest('.visually-hidden');
  });
  return {scroll: document.documentElement.scrollWidth, width: w,
          wide: wide.slice(0, 5).map((e) => e.tagName + '.' + e.className)};
}"""


@pytest.fixture(scope="module")
def mf_dir(ml100k: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mf model of all of ml-100k, a few seconds of training: enough for sensible neighbours."""
    model = create("mf", {"factors": 32, "epochs": 20}).fit(ml100k.interactions)
    return artifacts.save(model, tmp_path_factory.mktemp("web") / "mf", dataset=ml100k)


@pytest.fixture
def server(mf_dir: Path, tmp_path: Path) -> Iterator[str]:
    app = create_app([("mf-ml100k", mf_dir)], store_url=tmp_path / "feedback.sqlite3")
    with thread_server(app) as url:
        yield url


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


def _watch(page: Page) -> list[str]:
    """Collects console errors and uncaught exceptions of the page (a test asserts there are none)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def _renders(page: Page) -> int:
    return int(page.locator("#recs").get_attribute("data-renders") or 0)


def _wait_renders_after(page: Page, n: int) -> list[int]:
    """Waits for a recommendations render after the ``n``-th; returns the recommended item ids."""
    page.wait_for_function("n => Number(document.getElementById('recs').dataset.renders || 0) > n", arg=n)
    ids = page.locator("#recs > li").evaluate_all("els => els.map((e) => Number(e.dataset.item))")
    return [int(i) for i in ids]


def _search(page: Page, item: int) -> Any:
    box = page.locator("#search-input")
    box.fill(SEARCH[item])
    row = page.locator(f'#search-results > li[data-item="{item}"]')
    expect(row).to_be_visible()
    return row


def test_rate_five_see_recommendations_explanations_reload_and_phone(
    server: str, context: Any, browser: Any, tmp_path: Path
) -> None:
    page = context.new_page()
    errors = _watch(page)
    page.goto(server + "/")
    expect(page.locator("#model")).to_contain_text("mf-ml100k")
    expect(page.locator("#model")).to_contain_text("version")
    expect(page.locator("#recs-status")).to_contain_text("Rate a few movies")
    user = page.locator("#user-id").inner_text()
    assert user.startswith("web-")

    history: list[list[int]] = []
    # 1. Star Wars, five stars, by mouse.
    row = _search(page, 50)
    n = _renders(page)
    row.locator('.star[data-value="5"]').click()
    history.append(_wait_renders_after(page, n))

    # 2. Toy Story by keyboard only, from a fresh load: the skip link, typing, Tab to its stars, "3",
    # then ArrowRight.
    page.reload()
    expect(page.locator("#mine > li")).to_have_count(1)
    _wait_renders_after(page, 0)  # the load's own render, so the next one is the rating's
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#search-input")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type(SEARCH[1])
    row = page.locator('#search-results > li[data-item="1"]')
    expect(row).to_be_visible()
    first = page.locator("#search-results > li").first
    assert first.get_attribute("data-item") == "1"  # the whole title ranks first
    page.keyboard.press("Tab")  # the title button
    expect(first.locator(".title")).to_be_focused()
    page.keyboard.press("Tab")  # the star group: one tab stop
    expect(first.locator('.star[data-value="1"]')).to_be_focused()
    n = _renders(page)
    page.keyboard.press("3")
    history.append(_wait_renders_after(page, n))
    expect(first.locator('.star[data-value="3"]')).to_be_focused()
    expect(first.locator('.star[data-value="3"]')).to_have_attribute("aria-checked", "true")
    n = _renders(page)
    page.keyboard.press("ArrowRight")  # saved once the arrows stop (debounced)
    expect(first.locator('.star[data-value="4"]')).to_be_focused()
    history.append(_wait_renders_after(page, n))
    expect(first.locator(".stars")).to_have_attribute("data-value", "4")

    # 3.-5. Three more by mouse.
    for item in (127, 56, 313):
        row = _search(page, item)
        n = _renders(page)
        row.locator(f'.star[data-value="{int(RATED[item])}"]').click()
        history.append(_wait_renders_after(page, n))

    stored = httpx.get(f"{server}/v1/users/{user}/ratings").json()["ratings"]
    assert {r["item"]: r["rating"] for r in stored} == RATED
    rated_so_far = [{50}, {50, 1}, {50, 1}, {50, 1, 127}, {50, 1, 127, 56}, set(RATED)]
    for recs, rated in zip(history, rated_so_far, strict=True):
        assert len(recs) == 10 and not set(recs) & rated, (recs, rated)
    assert history[0] != history[-1]  # the recommendations follow the ratings
    assert sum(a != b for a, b in itertools.pairwise(history)) >= 3
    expect(page.locator("#recs-status")).to_contain_text("from your 5 ratings")
    expect(page.locator("#mine > li")).to_have_count(5)
    # Rating again inside "Your ratings" (which is redrawn) keeps the keyboard focus on those stars.
    page.locator('#mine li[data-item="1"] .star[data-value="4"]').focus()
    n = _renders(page)
    page.keyboard.press("4")
    _wait_renders_after(page, n)
    expect(page.locator('#mine li[data-item="1"] .star[data-value="4"]')).to_be_focused()
    page.screenshot(path=str(tmp_path / "desktop-rated.png"), full_page=True)

    # A recommendation: why it was picked (reasons are rated movies) and its similar movies.
    top = page.locator("#recs > li").first
    top_item = int(top.get_attribute("data-item") or 0)
    top.locator(".why").click()
    dialog = page.locator("#detail")
    expect(dialog).to_be_visible()
    expect(page.locator("#why-list > li").first).to_be_visible()
    expect(page.locator("#why-status")).to_contain_text("Based on your 5 ratings")
    reasons = page.locator("#why-list > li").all_inner_texts()
    titles = ("Star Wars", "Toy Story", "Godfather", "Pulp Fiction", "Titanic")
    assert reasons and all(any(t in r for t in titles) for r in reasons), reasons
    expect(page.locator("#similar-list > li").first).to_be_visible()
    similar = page.locator("#similar-list > li").evaluate_all("els => els.map((e) => Number(e.dataset.item))")
    assert len(similar) == 8 and top_item not in similar
    api_similar = httpx.get(f"{server}/v1/items/{top_item}/similar", params={"k": 8}).json()["items"]
    assert similar == [s["item"] for s in api_similar]
    assert page.evaluate("location.hash") == f"#item={top_item}"
    page.screenshot(path=str(tmp_path / "desktop-why.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # Reload: the ratings come back from the store, stars and all.
    page.reload()
    expect(page.locator("#mine > li")).to_have_count(5)
    expect(page.locator("#mine-status")).to_contain_text("5 movies rated")
    for item, value in RATED.items():
        expect(page.locator(f'#mine .stars[data-item="{item}"]')).to_have_attribute(
            "data-value", f"{value:g}"
        )
    recs = _wait_renders_after(page, 0)
    assert len(recs) == 10 and not set(recs) & set(RATED)

    # An unknown movie (a link to it) says so on the page.
    page.goto(server + "/#item=999999")
    expect(page.locator("#detail-error")).to_be_visible()
    expect(page.locator("#detail-error")).to_contain_text("No such movie")
    expect(page.locator("#detail-error")).to_contain_text("999999")
    assert not errors or all("404" in e for e in errors), errors  # the 404 itself is logged by the browser

    # A phone: same browser user (its storage), 390 px wide; nothing sticks out sideways.
    phone = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        storage_state=context.storage_state(),
    )
    phone.set_default_timeout(TIMEOUT_MS)
    try:
        mobile = phone.new_page()
        mobile.goto(server + "/")
        expect(mobile.locator("#mine > li")).to_have_count(5)
        expect(mobile.locator("#recs > li")).to_have_count(10)
        layout = mobile.evaluate(NO_OVERFLOW)
        assert layout["scroll"] <= 390 and not layout["wide"], layout
        mobile.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        mobile.locator("#recs > li .title").first.tap()
        expect(mobile.locator("#similar-list > li").first).to_be_visible()
        expect(mobile.locator("#why-list > li").first).to_be_visible()
        box = mobile.locator("#detail").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        layout = mobile.evaluate(NO_OVERFLOW)
        assert layout["scroll"] <= 390 and not layout["wide"], layout
        mobile.screenshot(path=str(tmp_path / "phone-detail.png"))
    finally:
        phone.close()


def test_api_key_prompt_and_server_down_are_shown(mf_dir: Path, context: Any, tmp_path: Path) -> None:
    app = create_app([("mf-ml100k", mf_dir)], store_url=tmp_path / "f.sqlite3", api_key="s3cret")
    page = context.new_page()
    with thread_server(app) as url:
        page.goto(url + "/")  # the page itself needs no key
        expect(page.locator("#key-form")).to_be_visible()
        expect(page.locator("#error")).to_contain_text("API key")
        page.locator("#key-input").fill("s3cret")
        page.locator("#key-input").press("Enter")
        expect(page.locator("#model")).to_contain_text("mf-ml100k")
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#recs-status")).to_contain_text("Rate a few movies")
    page.locator("#search-input").fill("star")  # the server is gone now
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("Cannot reach the recommendation server")
    expect(page.locator("#error-retry")).to_be_visible()
    page.screenshot(path=str(tmp_path / "server-down.png"))


def test_the_page_shows_the_model_its_address_names(
    mf_dir: Path, ml100k: Dataset, context: Any, tmp_path: Path
) -> None:
    """With several models served, a picker names them; ?model=NAME shows that one (its
    recommendations, its map), the picker leads to another, and an unknown name says so."""
    bias_dir = artifacts.save(create("bias").fit(ml100k.interactions), tmp_path / "bias", dataset=ml100k)
    app = create_app([("mf-ml100k", mf_dir), ("bias", bias_dir)], store_url=tmp_path / "f.sqlite3")
    page = context.new_page()
    errors = _watch(page)
    with thread_server(app) as url:
        page.goto(url + "/")
        expect(page.locator("#model")).to_contain_text("Model mf-ml100k")  # the default
        expect(page.locator("#model-pick")).to_be_visible()
        assert page.locator("#model-pick option").all_inner_texts() == ["mf-ml100k", "bias"]
        with page.expect_request(lambda r: "/v1/items?" in r.url and "model=bias" in r.url):
            page.locator("#model-pick").select_option("bias")
            expect(page).to_have_url(url + "/?model=bias")
            expect(page.locator("#model")).to_contain_text("Model bias")
            page.locator("#search-input").fill("star wars")
        expect(page.locator("#model-pick")).to_have_value("bias")
        page.locator("#explore-link").click()
        expect(page.locator("#explore-status")).to_contain_text("cannot be explored")
        page.goto(url + "/?model=nope")
        expect(page.locator("#error")).to_contain_text("No model named nope is served here")
        expect(page.locator("#model")).to_contain_text("Model mf-ml100k")
    # bias's map (422: no embeddings) is answered on the page, and logged by the browser
    assert errors and all("422" in e for e in errors), errors


def test_the_explore_section_follows_a_reloaded_model(
    mf_dir: Path, ml100k: Dataset, context: Any, tmp_path: Path
) -> None:
    """When the page learns of a new version of its model (any answer names it), the map and the
    clusters are drawn again for that version, not kept from the old one."""
    other = create("mf", {"factors": 8, "epochs": 3}).fit(ml100k.interactions)
    other_dir = artifacts.save(other, tmp_path / "mf-v2", dataset=ml100k)
    app = create_app([("mf-ml100k", mf_dir)], store_url=tmp_path / "f.sqlite3")
    page = context.new_page()
    with thread_server(app) as url:
        page.goto(url + "/")
        page.locator("#explore-link").click()
        expect(page.locator("#explore")).to_have_attribute("data-loaded", "true")
        old = page.locator("#model").get_attribute("data-version")
        r = httpx.post(
            f"{url}/v1/admin/reload", json={"model": "mf-ml100k", "path": str(other_dir)}, timeout=60
        )
        new = r.json()["model"]["version"]
        assert r.status_code == 200 and new != old
        with page.expect_request(lambda q: "/explore/map" in q.url, timeout=TIMEOUT_MS):
            page.locator("#search-input").fill("toy story")  # an answer that names the new version
        expect(page.locator("#model")).to_have_attribute("data-version", new)
        expect(page.locator("#model")).to_contain_text("just reloaded")
        expect(page.locator("#explore")).to_have_attribute("data-loaded", "true")


def test_page_and_assets_are_public_and_fixed(mf_dir: Path, tmp_path: Path) -> None:
    app = create_app([("m", mf_dir)], store_url=tmp_path / "f.sqlite3", api_key="k")
    with TestClient(app) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "/static/app.js" in page.text and "http" not in page.text.split("<body>")[0]
        for name, media in (("app.js", "text/javascript"), ("style.css", "text/css")):
            r = c.get(f"/static/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(media)
        for path in ("/static/index.html", "/static/nope.js", "/static/..%2Fweb.py"):
            assert c.get(path).status_code in (401, 404)  # nothing else is served, key or not
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"x-api-key": "k"}).status_code == 200
        assert all(
            p != "/" and not p.startswith("/static")
            for p in c.get("/openapi.json", headers={"x-api-key": "k"}).json()["paths"]
        )


def _similar_ids(page: Page) -> list[int]:
    expect(page.locator("#similar-list > li").first).to_be_visible()
    ids = page.locator("#similar-list > li").evaluate_all("els => els.map((e) => Number(e.dataset.item))")
    return [int(i) for i in ids]


def test_explore_map_clusters_and_similar_movies(
    server: str, context: Any, browser: Any, tmp_path: Path
) -> None:
    api = httpx.get(f"{server}/v1/models/mf-ml100k/explore/map", params={"k": 12}, timeout=120).json()
    table = httpx.get(f"{server}/v1/models/mf-ml100k/explore/clusters", params={"k": 12}).json()
    page = context.new_page()
    errors = _watch(page)
    page.goto(server + "/")
    expect(page.locator("#model")).to_contain_text("mf-ml100k")
    page.locator("#explore-link").click()  # the header's link scrolls to the section, which loads
    expect(page.locator("#explore")).to_have_attribute("data-loaded", "true")
    dots = page.locator("#explore-map .dots circle")
    expect(dots).to_have_count(api["n_points"])
    assert api["n_points"] == 1682 and not api["subsampled"]
    expect(page.locator("#explore-status")).to_contain_text("1,682 movies")
    expect(page.locator("#explore-legend > li").first).to_be_visible()
    rows = page.locator("#cluster-rows > tr")
    expect(rows).to_have_count(12)
    first = table["clusters"][0]
    expect(rows.first).to_contain_text(f"{first['size']:,}")
    expect(rows.first.locator(".title").first).to_have_text(
        f"{first['most_rated'][0]['title']} ({first['most_rated'][0]['year']})"
    )
    expect(page.locator("#explore-hint")).to_contain_text("Suggested")

    # Genre colours, then cluster colours: the toggle repaints the same dots.
    by_genre = dots.evaluate_all("els => els.map((e) => e.getAttribute('fill'))")
    page.locator('input[name="explore-colour"][value="cluster"]').check()
    expect(page.locator("#explore-map")).to_have_attribute("data-colour", "cluster")
    by_cluster = dots.evaluate_all("els => els.map((e) => e.getAttribute('fill'))")
    assert by_genre != by_cluster and len(set(by_cluster)) == 12
    page.screenshot(path=str(tmp_path / "explore.png"), full_page=True)

    # A title in the cluster table opens that movie with its similar movies.
    title = rows.first.locator(".title").first
    item = int(title.get_attribute("data-item") or 0)
    title.click()
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-title")).to_contain_text(first["most_rated"][0]["title"])
    api_similar = httpx.get(f"{server}/v1/items/{item}/similar", params={"k": 8}).json()["items"]
    assert _similar_ids(page) == [s["item"] for s in api_similar]
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()

    # A dot: hovering names it, clicking opens it.
    star_wars = next(i for i, p in enumerate(api["points"]) if p["item"] == 50)
    dot = page.locator(f'#explore-map .dots circle[data-i="{star_wars}"]')
    dot.scroll_into_view_if_needed()
    box = dot.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator("#map-tip")).to_be_visible()
    expect(page.locator("#map-tip")).to_contain_text("Star Wars")
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator("#detail-title")).to_contain_text("Star Wars")
    assert 50 not in _similar_ids(page)
    page.keyboard.press("Escape")

    # The keyboard: focus the map, step with the arrows, Enter opens the movie under the cursor.
    page.locator("#explore-map").focus()
    expect(page.locator("#map-tip")).to_be_visible()
    expect(page.locator("#map-focus")).to_contain_text("Enter opens similar movies")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    cursor = page.locator("#explore-map").get_attribute("data-cursor")
    assert cursor is not None
    page.keyboard.press("Enter")
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-title")).not_to_have_text("Loading…")
    assert page.evaluate("location.hash") == f"#item={cursor}"
    _similar_ids(page)
    page.keyboard.press("Escape")
    assert errors == [], errors  # a new user is not asked for recommendations before rating anything

    # A phone: the map and the table fit 390 px.
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    phone.set_default_timeout(TIMEOUT_MS)
    try:
        mobile = phone.new_page()
        mobile.goto(server + "/")
        mobile.locator("#explore-h").scroll_into_view_if_needed()
        expect(mobile.locator("#cluster-rows > tr")).to_have_count(12)
        expect(mobile.locator("#explore-map .dots circle")).to_have_count(api["n_points"])
        layout = mobile.evaluate(NO_OVERFLOW)
        assert layout["scroll"] <= 390 and not layout["wide"], layout
        mobile.locator("#cluster-rows > tr .title").first.tap()
        expect(mobile.locator("#similar-list > li").first).to_be_visible()
        mobile.screenshot(path=str(tmp_path / "phone-explore.png"), full_page=True)
    finally:
        phone.close()


def test_a_map_of_movies_without_genres_is_coloured_by_cluster(
    ml100k: Dataset, context: Any, tmp_path: Path
) -> None:
    """A model saved without item metadata has no genres: every dot would be one grey "no genre",
    so the map opens coloured by cluster and the genre choice is off."""
    model = create("mf", {"factors": 8, "epochs": 3}).fit(ml100k.interactions)
    bare = artifacts.save(model, tmp_path / "mf-bare")
    app = create_app([("bare", bare)], store_url=tmp_path / "f.sqlite3")
    page = context.new_page()
    errors = _watch(page)
    with thread_server(app) as url:
        page.goto(url + "/")
        page.locator("#explore-link").click()
        expect(page.locator("#explore")).to_have_attribute("data-loaded", "true")
        expect(page.locator('input[name="explore-colour"][value="genre"]')).to_be_disabled()
        expect(page.locator('input[name="explore-colour"][value="cluster"]')).to_be_checked()
        expect(page.locator("#explore-map")).to_have_attribute("data-colour", "cluster")
        expect(page.locator("#explore-status")).to_contain_text("coloured by 12 clusters")
    assert not errors, errors


def test_a_reload_to_another_kind_of_model_is_shown_as_that_kind(
    mf_dir: Path, ml100k: Dataset, context: Any, tmp_path: Path
) -> None:
    """An admin reload may put a binary model where a rating model was: once an answer names the new
    version, the page reads the model's info again, so the header names the new algorithm and the
    recommendations show probabilities, not stars."""
    from recengine.data.interactions import RatingScale

    inter = ml100k.interactions
    likes = inter.with_ratings((inter.values() > 3).astype("float32"), RatingScale(0.0, 1.0, 1.0))
    binary = create("neumf", {"epochs": 1}).fit(likes)  # embeddings: the map redraws
    binary_dir = artifacts.save(binary, tmp_path / "neumf-likes", dataset=ml100k)
    app = create_app([("main", mf_dir)], store_url=tmp_path / "f.sqlite3")
    page = context.new_page()
    errors = _watch(page)
    with thread_server(app) as url:
        page.goto(url + "/")
        expect(page.locator("#model")).to_contain_text("mf")
        n = _renders(page)
        _search(page, 50).locator('.star[data-value="5"]').click()
        _wait_renders_after(page, n)
        expect(page.locator("#recs > li").first).to_contain_text("★")
        r = httpx.post(f"{url}/v1/admin/reload", json={"model": "main", "path": str(binary_dir)}, timeout=60)
        assert r.status_code == 200, r.text
        n = _renders(page)
        _search(page, 1).locator('.star[data-value="1"]').click()  # a like: the new model's scale is 0-1
        _wait_renders_after(page, n)
        expect(page.locator("#model")).to_contain_text("just reloaded")
        expect(page.locator("#model")).to_contain_text("neumf")
        expect(page.locator("#recs > li").first).to_contain_text("score ")
        expect(page.locator("#recs > li").first).not_to_contain_text("predicted")
    assert not errors, errors
