"""Property-based fuzzing of the OpenAPI document (schemathesis): no generated request, valid or
not, makes the app answer 5xx. Bounded examples per operation keep it to seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from recengine.serving.app import create_app


@schemathesis.serializer("application/jsonlines")
def _jsonlines(ctx: Any, value: Any) -> bytes:
    """Bodies for the JSON Lines media type: strings as they are, anything else one JSON line."""
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else json.dumps(value) + "\n").encode("utf-8", "surrogatepass")


@pytest.fixture
def api_schema(model_dirs: dict[str, Path], tmp_path: Path) -> Any:
    specs = [(n, model_dirs[n]) for n in ("bias", "binary", "pop")]
    app = create_app(specs, store_url=tmp_path / "fuzz.sqlite3", max_body_bytes=64 * 1024)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_server_errors(api_schema: Any, mode: GenerationMode) -> None:
    """Every operation, with schema-valid (positive) and schema-violating (negative) requests.

    (The operations are walked here rather than with ``schema.parametrize``: schemathesis's pytest
    plugin and this pytest disagree on test node internals.)"""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14
    for op in operations:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        try:
            check()
        except Unsatisfiable:
            # No request can violate an operation without parameters or body (GET /ping).
            assert mode is GenerationMode.NEGATIVE, op.label
