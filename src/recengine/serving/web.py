"""The web page: three static files served by the API's own app, so a person can use the recommender.

The page is plain HTML, CSS and JavaScript (no build step, nothing fetched from another host); it calls
the REST API v1 from the browser. Its files are read once when the app is built and served from a
fixed list, so no request path ever reaches the file system. They are public even when the server
has an API key (they hold no data); the page asks for the key when the API answers 401.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from recengine.errors import UnknownIdError

FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
#: Paths the API key guard lets through (the page and its assets, nothing else).
PUBLIC_PATHS = frozenset({"/", *(f"/static/{name}" for name in FILES if name != "index.html")})
#: Everything from this server only: a page that loads nothing else cannot leak a user's ratings.
_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",  # revalidate, so a new version of the page is seen after an upgrade
}


def _read(name: str) -> bytes:
    return resources.files("recengine.serving").joinpath("static", name).read_bytes()


def router() -> APIRouter:
    """``GET /`` (the page) and ``GET /static/{name}`` (its script and style), kept out of the
    OpenAPI document: they are not part of the API."""
    files = {name: _read(name) for name in FILES}
    r = APIRouter(include_in_schema=False)

    @r.get("/")
    def page() -> Response:
        return Response(files["index.html"], media_type=FILES["index.html"], headers=_HEADERS)

    @r.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in files or name == "index.html":
            raise UnknownIdError(f"no such file: /static/{name}")
        return Response(files[name], media_type=FILES[name], headers=_HEADERS)

    return r
