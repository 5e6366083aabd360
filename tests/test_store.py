"""The DuckDB store: migrations, idempotent re-ingest, one writer at a time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from curation.ingest.run import ingest
from curation.store import MIGRATIONS, Store, StoreError
from tests.conftest import FIXTURES, rows

F = FIXTURES / "formats"


def snapshot(store) -> tuple:
    return (
        rows(store, "SELECT * EXCLUDE (ingested_at) FROM traces ORDER BY trace_id"),
        rows(store, "SELECT * EXCLUDE (ingested_at) FROM quarantine ORDER BY source_file, record_key"),
    )


def test_migrations_are_numbered_and_applied_once(tmp_path):
    db = tmp_path / "m.duckdb"
    with Store(db) as s:
        versions = rows(s, "SELECT version FROM schema_migrations ORDER BY version")
        tables = {r[0] for r in rows(s, "SELECT table_name FROM information_schema.tables")}
    assert [v for (v,) in versions] == [m[0] for m in MIGRATIONS]
    assert {"traces", "quarantine", "ingest_files"} <= tables
    with Store(db) as s:  # reopening applies nothing twice
        assert s.count("schema_migrations") == len(MIGRATIONS)


def test_reingest_is_a_noop_with_identical_tables(store):
    first = ingest(store, [F])
    before = snapshot(store)
    again = ingest(store, [F])
    assert first.accepted > 0
    assert (again.accepted, again.quarantined, again.records, again.files_skipped) == (0, 0, 0, first.files)
    assert snapshot(store) == before


def test_changed_file_adds_only_new_records(store, tmp_path):
    src = (F / "openai_chat.jsonl").read_text()
    f = tmp_path / "log.jsonl"
    f.write_text(src)
    ingest(store, [f])
    extra = json.loads(src.splitlines()[0])
    extra["response"]["id"] = "chatcmpl-NEW"
    f.write_text(src + json.dumps(extra) + "\n")
    stats = ingest(store, [f])
    assert (stats.records, stats.accepted, stats.already_present, stats.quarantined) == (3, 1, 2, 0)
    assert store.count("traces") == 3
    assert store.count("ingest_files") == 2  # one row per distinct content


def test_same_id_with_different_messages_is_quarantined_not_overwritten(store, tmp_path):
    rec = json.loads((F / "openai_chat.jsonl").read_text().splitlines()[0])
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps(rec) + "\n")
    rec["response"]["choices"][0]["message"]["content"] = "something else"
    b.write_text(json.dumps(rec) + "\n")
    ingest(store, [a])
    stats = ingest(store, [b])
    assert stats.quarantine_reasons == {"duplicate_id": 1}
    (msg,) = rows(store, "SELECT message FROM quarantine")[0]
    assert "openai_chat:chatcmpl-AAA1" in msg and "different messages" in msg
    assert store.count("traces") == 1


def test_exact_duplicate_lines_count_as_already_present(store, tmp_path):
    line = (F / "finetune.jsonl").read_text().splitlines()[0]
    f = tmp_path / "dup.jsonl"
    f.write_text(f"{line}\n{line}\n")
    stats = ingest(store, [f])
    assert (stats.records, stats.accepted, stats.already_present) == (2, 1, 1)


def test_second_writer_gets_a_lock_error_naming_the_file(tmp_path):
    db = tmp_path / "locked.duckdb"
    with Store(db):
        code = f"from curation.store import Store\nStore({str(db)!r})"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("curation.store.StoreLockedError:")
    assert "locked.duckdb: database is locked by process" in last


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.duckdb"
    bad.write_text("hello")
    with pytest.raises(StoreError, match=r"x\.duckdb"):
        Store(bad)
