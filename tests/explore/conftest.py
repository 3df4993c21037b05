"""A small fitted model directory (mf, few epochs on ml-100k) shared by the exploration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from recengine import artifacts
from recengine.data.load import load_dataset
from recengine.models.registry import create


@pytest.fixture(scope="session")
def mf_dir(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = load_dataset(ml100k_dir)
    model = create("mf", {"factors": 16, "epochs": 8, "seed": 0}).fit(ds.interactions)
    return artifacts.save(model, tmp_path_factory.mktemp("explore") / "mf", dataset=ds)


@pytest.fixture(scope="session")
def bias_dir(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = load_dataset(ml100k_dir)
    model = create("bias").fit(ds.interactions)
    return artifacts.save(model, tmp_path_factory.mktemp("explore") / "bias", dataset=ds)
