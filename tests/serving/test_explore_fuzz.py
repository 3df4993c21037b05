"""Property-based fuzzing of the exploration routes (schemathesis) against a model that has
embeddings, so that generated parameters reach the map, the clusters and the neighbour search: no
request, valid or not, makes the app answer 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from recengine.serving.app import create_app


@pytest.fixture(scope="module")
def explore_schema(model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    specs = [(n, model_dirs[n]) for n in ("mf", "bias")]
    store = tmp_path_factory.mktemp("explore-fuzz") / "fuzz.sqlite3"
    app = create_app(specs, store_url=store, max_body_bytes=64 * 1024)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_explore_routes_never_answer_5xx(explore_schema: Any, mode: GenerationMode) -> None:
    """Each explore operation with generated parameters; the model name is mostly a served one
    (a generated name is only ever unknown, and an unknown model stops a request before any work)."""
    operations = [r.ok() for r in explore_schema.get_all_operations() if "/explore/" in r.ok().path]
    assert len(operations) == 5
    for op in operations:

        @given(case=op.as_strategy(generation_mode=mode), name=st.sampled_from(["mf", "mf", "bias", None]))
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any, name: str | None) -> None:
            if name is not None:
                case.path_parameters = {**(case.path_parameters or {}), "name": name}
            # A map is a t-SNE fit: on a loaded machine it outlasts the client's 10 s default, which
            # is time, not a server error.
            case.call_and_validate(checks=[not_a_server_error], timeout=300)

        check()
