"""Fixtures of the serving tests: ml-100k model directories built once, an app on a fresh store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recengine.data.dataset import Dataset
from recengine.data.load import load_dataset
from recengine.serving.app import create_app
from tests.serving.fixtures import build_models


@pytest.fixture(scope="session")
def ml100k(ml100k_dir: Path) -> Dataset:
    return load_dataset(str(ml100k_dir))


@pytest.fixture(scope="session")
def model_dirs(ml100k: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_models(tmp_path_factory.mktemp("models"), ml100k)


@pytest.fixture
def make_client(model_dirs: dict[str, Path], tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """``make_client(names..., **create_app options)``: a TestClient over a store in tmp_path."""
    clients: list[TestClient] = []

    def make(*names: str, **options: Any) -> TestClient:
        specs = [(n, model_dirs[n]) for n in (names or ("bias",))]
        options.setdefault("store_url", tmp_path / "feedback.sqlite3")
        client = TestClient(create_app(specs, **options))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """bias (the default), binary and pop served side by side."""
    return make_client("bias", "binary", "pop")
