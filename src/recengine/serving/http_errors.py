"""Library errors → JSON 4xx responses, by type: bad input never becomes a 5xx.

Every error body is ``{"error": code, "detail": message}``; the message is the library's own, which
names the offending id, field or file.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recengine.artifacts import ArtifactError
from recengine.errors import CapabilityError, ConfigError, DataError, RecengineError, UnknownIdError
from recengine.serving.models import UnknownModelError
from recengine.serving.sagemaker import InvocationError, NotAcceptableError
from recengine.serving.store import StoreError

#: exception type → (HTTP status, error code); the most specific class present wins.
STATUS: dict[type[Exception], tuple[int, str]] = {
    UnknownModelError: (404, "unknown_model"),
    UnknownIdError: (404, "unknown_id"),
    InvocationError: (400, "bad_request"),
    NotAcceptableError: (406, "not_acceptable"),
    CapabilityError: (422, "unsupported"),
    ArtifactError: (422, "model_rejected"),
    ConfigError: (422, "invalid_value"),
    DataError: (422, "invalid_value"),
    StoreError: (503, "store_unavailable"),  # the database, not the input: worth a retry
    RecengineError: (422, "rejected"),
    # Raised by numpy/IdMap on out-of-range ids or mismatched inputs that slipped past the schemas.
    OverflowError: (422, "invalid_value"),
    ValueError: (422, "invalid_value"),
}


def error_response(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _handler(status: int, code: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return error_response(status, code, str(exc) or type(exc).__name__)

    return handle


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":  # loc is ("body", character offset)
            offset = next((x for x in err.get("loc", ())[1:] if isinstance(x, int)), None)
            at = f" at character {offset + 1}" if offset is not None else ""
            reason = (err.get("ctx") or {}).get("error", "JSON decode error")
            parts.append(f"the body is not valid JSON ({reason}{at})")
            continue
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    errors = list(exc.errors()) if isinstance(exc, RequestValidationError) else []
    return error_response(422, "invalid_request", _validation_message(errors))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 400
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else str(exc)
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    response = error_response(status, code, str(detail))
    if isinstance(exc, StarletteHTTPException) and exc.headers:
        response.headers.update(exc.headers)
    return response


def install(app: FastAPI) -> None:
    for exc_type, (status, code) in STATUS.items():
        app.add_exception_handler(exc_type, _handler(status, code))
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)


#: The error responses the OpenAPI document lists for a route (bodies: ``ErrorBody``).
def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    from recengine.serving.schemas import ErrorBody

    words = {
        400: "malformed body",
        401: "missing or wrong API key",
        404: "unknown model, user or item (named)",
        413: "body too large",
        406: "an Accept header that allows neither JSON nor JSON Lines",
        415: "wrong content type",
        422: "invalid value or unsupported by this model",
        503: "feedback store unavailable",
    }
    return {s: {"model": ErrorBody, "description": words.get(s, "error")} for s in statuses}
