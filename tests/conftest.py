"""Shared pytest setup. Fixtures live in ``tests/fixtures/*.py``, one module per area, all loaded here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the test suite may reach the internet: turn off Prefect analytics/version checks before any import.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_API_ENABLE_HTTP2", "false")

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)


@pytest.fixture(autouse=True)
def _torch_threads():
    """One torch thread per test by default: the models in tests are small, and on 2 cores (CI) a second intra-op
    thread costs more in synchronisation than it gains. Tests that want more set it themselves."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
