"""Shared fixtures. Prefect is pointed at a throw-away home before anything imports it."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="tracetune-prefect-"))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TRACETUNE = str(Path(sys.executable).with_name("tracetune"))


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite + subprocess API) for the whole test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def curated_samples(tmp_path_factory):
    """data/samples ingested and curated once with the demo's config: (store, summary, dataset folder)."""
    from curation import curate
    from curation.ingest.run import ingest
    from curation.store import Store
    from schemas.config import load_config
    from tests.helpers import DEMO_CONFIG

    tmp = tmp_path_factory.mktemp("samples")
    with Store(tmp / "s.duckdb") as s:
        ingest(s, [ROOT / "data" / "samples"])
        yield s, curate.run(s, load_config(DEMO_CONFIG), tmp / "dataset"), tmp / "dataset"


@pytest.fixture
def store(tmp_path):
    from curation.store import Store

    with Store(tmp_path / "t.duckdb") as s:
        yield s


def rows(store, sql: str, *params):
    return store.con.execute(sql, list(params)).fetchall()
