"""Big files go through worker processes (spans of an uncompressed JSONL file, chunks of a
compressed one); the result must equal the single-process path, line numbers included."""

from __future__ import annotations

import gzip
import itertools
import json

import pytest

import curation.ingest.run as run
from curation.ingest.readers import scan
from curation.ingest.run import ingest
from curation.store import Store
from schemas.config import IngestConfig
from tests.conftest import FIXTURES, rows

GOOD = json.loads((FIXTURES / "formats" / "openai_chat.jsonl").read_text().splitlines()[1])


def write_log(path, n: int, bad_every: int = 97) -> set[int]:
    """n lines, every `bad_every`-th one truncated; returns the bad line numbers."""
    bad = set()
    with path.open("w") as f:
        for i in range(1, n + 1):
            rec = json.loads(json.dumps(GOOD))
            rec["response"]["id"] = f"chatcmpl-{i}"
            line = json.dumps(rec)
            if i % bad_every == 0:
                line, _ = line[:50], bad.add(i)
            f.write(line + "\n")
    return bad


def test_scan_spans_cover_the_file_on_line_boundaries(tmp_path):
    f = tmp_path / "x.jsonl"
    write_log(f, 3000)
    data = f.read_bytes()
    _sha, spans = scan(f, span_bytes=64 << 10)
    assert len(spans) > 10
    assert spans[0].start == 0 and spans[-1].end == len(data)
    for a, b in itertools.pairwise(spans):
        assert a.end == b.start and data[a.end - 1 : a.end] == b"\n"
        assert b.first_line == data[: b.start].count(b"\n") + 1


@pytest.mark.parametrize("compress", [False, True])
def test_parallel_ingest_equals_serial(tmp_path, monkeypatch, compress):
    f = tmp_path / "big.jsonl"
    bad = write_log(f, 3000)
    if compress:
        f.with_suffix(".jsonl.gz").write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
        f = f.with_suffix(".jsonl.gz")

    def result(db, parallel: bool):
        if parallel:
            monkeypatch.setattr(run, "PARALLEL_MIN_BYTES", 0)
            monkeypatch.setattr(run, "SPAN_BYTES", 64 << 10)
        with Store(db) as store:
            stats = ingest(store, [f], config=IngestConfig(workers=2 if parallel else 1, batch_size=500))
            traces = rows(store, "SELECT trace_id, source_line, messages FROM traces ORDER BY trace_id")
            quarantined = rows(store, "SELECT source_line, code FROM quarantine ORDER BY source_line")
        return stats, traces, quarantined

    s1, t1, q1 = result(tmp_path / "serial.duckdb", parallel=False)
    s2, t2, q2 = result(tmp_path / "parallel.duckdb", parallel=True)
    assert (
        (s1.records, s1.accepted, s1.quarantined)
        == (s2.records, s2.accepted, s2.quarantined)
        == (3000, 3000 - len(bad), len(bad))
    )
    assert t1 == t2 and q1 == q2
    assert {line for line, _ in q2} == bad


def test_an_unguarded_script_gets_an_explained_worker_error(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "big.jsonl"
    write_log(log, 200)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import curation.ingest.run as run\n"
        "from curation.store import Store\n"
        "from schemas.config import IngestConfig\n"
        "run.PARALLEL_MIN_BYTES = 0\n"
        f"with Store({str(tmp_path / 'u.duckdb')!r}) as s:\n"
        f"    run.ingest(s, [{str(log)!r}], config=IngestConfig(workers=2))\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("curation.workers.WorkerError: a worker process died")
    assert 'if __name__ == "__main__":' in last and "ingest.workers: 1" in last
