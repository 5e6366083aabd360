"""The Prefect ingest flow, run for real against a temporary Prefect server."""

from __future__ import annotations

import pytest

from curation.store import Store
from tests.conftest import FIXTURES


@pytest.mark.usefixtures("prefect_server")
def test_ingest_flow_ingests_and_publishes_artifacts(tmp_path):
    from prefect.artifacts import Artifact

    from flows.ingest import ingest_flow

    db = tmp_path / "flow.duckdb"
    state = ingest_flow([str(FIXTURES / "formats")], str(db), return_state=True)
    assert state.is_completed()
    stats = state.result()
    assert stats["accepted"] == 18 and stats["quarantine_reasons"] == {"not_a_generation": 1}
    with Store(db, read_only=True) as store:
        assert store.count("traces") == 18
    summary = Artifact.get("ingest-summary")
    assert summary is not None and "| 19 | 18 | 0 | 1 |" in summary.data
    again = ingest_flow([str(FIXTURES / "formats")], str(db))
    assert again["accepted"] == 0 and again["files_skipped"] == stats["files"]
