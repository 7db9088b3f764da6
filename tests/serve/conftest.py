from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="amber[serve] (starlette) is not installed")
pytest.importorskip("uvicorn", reason="amber[serve] (uvicorn) is not installed")

from tests.serve.helpers import ALL_SPECS, fill_store, server
from tests.store.s3_server import s3_server, s3_url  # the store tests' moto server, shared

__all__ = ["s3_server", "s3_url"]


@pytest.fixture(scope="package")
def models_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("serve") / "store"
    return root, fill_store(root)


@pytest.fixture(scope="package")
def url(models_store: tuple[Path, dict[str, Any]]) -> Iterator[str]:
    """One server for the protocol and bad-input tests."""
    with server(
        models_store[0], ALL_SPECS, "--poll", "0", "--max-body-mb", "1", "--body-timeout", "2"
    ) as base:
        yield base
