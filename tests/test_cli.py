"""The `tracetune` console script as a user runs it."""

from __future__ import annotations

import json
import subprocess

from curation.store import Store
from tests.conftest import FIXTURES, ROOT, TRACETUNE


def run(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([TRACETUNE, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_help_explains_the_formats():
    top = run("--help")
    assert top.returncode == 0
    for name in (
        "openai_chat",
        "openai_batch",
        "openai_finetune",
        "sharegpt",
        "langfuse",
        "langsmith",
        "otel",
        "anthropic",
    ):
        assert name in top.stdout
    sub = run("ingest", "--help")
    assert "--format" in sub.stdout and "quarantine" in sub.stdout and "sha256" in sub.stdout


def test_ingest_json_output_has_the_reconciled_counts(tmp_path):
    db = tmp_path / "c.duckdb"
    p = run("ingest", str(FIXTURES / "formats"), "--db", str(db), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    for key in ("files", "records", "accepted", "already_present", "quarantined", "by_format", "quarantine_reasons"):
        assert key in out
    assert out["records"] == out["accepted"] + out["already_present"] + out["quarantined"]
    assert out["by_format"]["otel"] == 4 and out["quarantine_reasons"] == {"not_a_generation": 1}
    again = json.loads(run("ingest", str(FIXTURES / "formats"), "--db", str(db), "--json").stdout)
    assert again["accepted"] == 0 and again["files_skipped"] == out["files"]


def test_locked_database_is_one_clear_line_and_exit_2(tmp_path):
    db = tmp_path / "l.duckdb"
    with Store(db):
        p = run("ingest", str(FIXTURES / "formats" / "anthropic.jsonl"), "--db", str(db))
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "database is locked" in p.stderr


def test_bad_arguments_are_one_line_errors(tmp_path):
    missing = run("ingest", str(tmp_path / "nope.jsonl"), "--db", str(tmp_path / "x.duckdb"))
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr and "Traceback" not in missing.stderr
    fmt = run("ingest", str(FIXTURES / "formats"), "--format", "csv", "--db", str(tmp_path / "x.duckdb"))
    assert fmt.returncode == 2 and "unknown format 'csv'" in fmt.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ingest:\n  max_record_byte: 5\n")
    bad_cfg = run("ingest", str(FIXTURES / "formats"), "--config", str(cfg), "--db", str(tmp_path / "x.duckdb"))
    assert bad_cfg.returncode == 2
    assert "unknown key 'ingest.max_record_byte'" in bad_cfg.stderr and "max_record_bytes" in bad_cfg.stderr


def test_quarantine_command_lists_reasons(tmp_path):
    db = tmp_path / "q.duckdb"
    run("ingest", str(FIXTURES / "formats"), "--db", str(db))
    p = run("quarantine", "--db", str(db), "--json")
    assert p.returncode == 0, p.stderr
    (row,) = [json.loads(x) for x in p.stdout.splitlines()]
    assert row["code"] == "not_a_generation" and row["source_line"] == 2


def test_curate_json_summary_and_leak_exit_code(tmp_path):
    from tests.helpers import chat_log, convo, write_jsonl

    db = tmp_path / "cur.duckdb"
    key = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ123456"
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [
            chat_log("a", convo(f"Hi, I am Maria Garcia, key {key}"), '{"ok": 1}'),
            chat_log("b", convo(f"Hi, I am Maria Garcia, key {key}"), '{"ok": 1}'),
        ],
    )
    assert run("ingest", str(src), "--db", str(db)).returncode == 0
    p = run("curate", "--db", str(db), "--out", str(tmp_path / "ds"), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["dataset"]["version"] == 1 and (tmp_path / "ds" / "latest" / "manifest.json").is_file()
    stages = out["stages"]
    assert (
        stages["dedupe"]["dropped"] == {"exact_duplicate": 1} and stages["redact"]["detail"]["entities"]["SECRET"] == 1
    )
    assert stages["leak_gate"]["detail"] == {"mode": "quarantine", "leaks": 0, "listed": []}
    cfg = tmp_path / "nosecrets.yaml"
    cfg.write_text("redact:\n  entities: [PERSON]\n  leak_gate: fail\n")
    leak = run("curate", "--db", str(db), "--config", str(cfg), "--out", str(tmp_path / "ds"))
    assert leak.returncode == 3 and "openai_chat:" in leak.stderr and "SECRET" in leak.stderr
