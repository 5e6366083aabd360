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


@pytest.mark.usefixtures("prefect_server")
def test_curate_flow_runs_the_stages_and_publishes_pii_counts(tmp_path):
    from prefect.artifacts import Artifact

    from flows.curate import curate_flow
    from tests.helpers import DEMO_CONFIG, chat_log, convo, write_jsonl

    email = "Hi, this is Maria Garcia, reach me at maria.g@example.com about order NW-123456. Thanks"
    recs = [chat_log("a", convo(email), '{"priority": "high"}'), chat_log("b", convo(email), '{"priority": "high"}')]
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    summary = curate_flow([str(src)], str(tmp_path / "c.duckdb"), str(DEMO_CONFIG), out=str(tmp_path / "ds"))
    assert summary["ingest"]["accepted"] == 2
    stages = summary["stages"]
    assert stages["dedupe"]["dropped"] == {"exact_duplicate": 1} and stages["redact"]["kept"] == 1
    assert stages["leak_gate"]["detail"] == {"mode": "quarantine", "leaks": 0, "listed": []}
    assert summary["dataset"]["version"] == 1 and stages["filter"]["dropped"] == {"schema_mismatch": 1}
    assert (tmp_path / "ds" / "v0001" / "report.html").is_file()
    funnel = Artifact.get("curation-summary")
    assert funnel is not None and "Dataset version 1" in funnel.data
    counts = Artifact.get("pii-entity-counts")
    assert counts is not None and "EMAIL_ADDRESS" in counts.data


@pytest.mark.usefixtures("prefect_server")
def test_curate_flow_publishes_the_leak_gate_quarantine_and_goes_on(tmp_path):
    from prefect.artifacts import Artifact

    from flows.curate import curate_flow
    from tests.helpers import chat_log, convo, write_jsonl

    recs = [
        chat_log("fine", convo("Which plan includes priority support for a team of five?"), "The Team plan does."),
        chat_log("card", convo("Please charge my card 4539 1488 0343 6467 for the order."), "Done, it is charged."),
    ]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("redact:\n  entities: [PERSON]\n  workers: 1\nsplit:\n  min_holdout: 0\n")
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    summary = curate_flow([str(src)], str(tmp_path / "c.duckdb"), str(cfg), out=str(tmp_path / "ds"))
    assert summary["stages"]["leak_gate"]["detail"]["leaks"] == 1 and summary["dataset"]["version"] == 1
    assert summary["train"] + summary["holdout"] == 1
    listed = Artifact.get("leak-gate-quarantine")
    assert listed is not None and "openai_chat:card" in listed.data and "CREDIT_CARD" in listed.data
    assert "4539" not in listed.data
    funnel = Artifact.get("curation-summary")
    assert funnel is not None and "| leak gate | 2 | 1 | CREDIT_CARD 1 |" in funnel.data
