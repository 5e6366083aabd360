"""LangSmith post/patch payloads: a run's create and update halves are merged by run id within one
ingest call (document form, one half per line, halves in different files, across worker spans);
a half whose other half never arrives is quarantined at its own file and line."""

from __future__ import annotations

import json

import pytest

import curation.ingest.run as run
from curation.ingest import formats
from curation.ingest.run import ingest
from curation.store import Store
from schemas.config import IngestConfig
from tests.conftest import FIXTURES, rows
from tests.test_formats import roles, traces

A = FIXTURES / "agents"
PY = A / "langsmith_py_lines.jsonl"
JS1, JS2 = A / "langsmith_js_batch_1.json", A / "langsmith_js_batch_2.json"
RUN = "langsmith:7b6f0c52-1d3e-4a8e-9c1f-00000000000"


def quarantine(store) -> list[tuple]:
    return rows(
        store, "SELECT source_file, source_line, code, message FROM quarantine ORDER BY source_file, source_line"
    )


def by_id(store) -> dict[str, dict]:
    return {t["trace_id"]: t for t in traces(store, "langsmith")}


def meta(store, trace_id: str) -> dict:
    return json.loads(rows(store, "SELECT metadata FROM traces WHERE trace_id = ?", trace_id)[0][0])


def test_a_bare_patch_is_detected_as_langsmith():
    lines = [json.loads(x) for x in PY.read_text().splitlines()]
    patch = lines[1]
    assert "run_type" not in patch and formats.detect(patch).name == "langsmith"
    assert formats.detect({"post": [], "patch": [patch]}).name == "langsmith"
    # an id with outputs but no run-tree keys is not taken for a patch
    assert formats.detect({"id": "x", "outputs": {"a": 1}}) is None


def test_line_form_python_sdk_runs_are_merged_role_by_role(store):
    stats = ingest(store, [PY])
    # 12 lines: 4 llm post/patch pairs, a chain run's pair, a post alone, a patch alone
    assert (stats.records, stats.accepted, stats.quarantined) == (7, 4, 3)
    assert stats.records == stats.accepted + stats.already_present + stats.quarantined
    t = by_id(store)
    tools = t[RUN + "1"]
    assert roles(tools) == ["system", "user", "assistant"]
    assert tools["messages"][2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call_Q1", "name": "lookup_order", "arguments": '{"order_id": "A-1001"}'}],
    }
    assert tools["finish_reason"] == "tool_calls" and tools["model"] == "gpt-4o-mini-2024-07-18"
    assert (tools["input_tokens"], tools["output_tokens"]) == (88, 18)
    assert tools["session_id"] == "thread-77" and tools["latency_ms"] == pytest.approx(1284.0)
    assert tools["tools"][0]["function"]["name"] == "lookup_order"
    streamed = t[RUN + "2"]  # object: chat.completion.chunk with the aggregated message
    assert streamed["messages"] == [
        {"role": "user", "content": "Say hi in French"},
        {"role": "assistant", "content": "Bonjour !"},
    ]
    assert streamed["finish_reason"] == "stop" and (streamed["input_tokens"], streamed["output_tokens"]) == (11, 4)
    reasoning = t[RUN + "4"]  # reasoning_content stays out of the assistant text; tokens are counted
    assert roles(reasoning) == ["system", "user", "assistant"] and reasoning["messages"][2]["content"] == "42"
    assert "6 times 7" not in json.dumps(reasoning["messages"])
    assert meta(store, RUN + "4")["reasoning_tokens"] == 128
    responses = t[RUN + "5"]  # a wrapped Responses call: request inputs, Response outputs
    assert responses["messages"] == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_OSLO", "name": "get_weather", "arguments": '{"city":"Oslo"}'}],
        },
    ]
    assert responses["finish_reason"] == "tool_calls" and responses["model"] == "o4-mini-2025-04-16"
    assert responses["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": True,
        },
    }
    assert {k: meta(store, RUN + "5")[k] for k in ("reasoning_items", "reasoning_tokens")} == {
        "reasoning_items": 1,
        "reasoning_tokens": 64,
    }
    # a merged trace sits at the line that completed it (the patch), like a Batch API pair
    assert rows(store, "SELECT source_line FROM traces WHERE trace_id = ?", RUN + "1") == [(2,)]


def test_lone_halves_are_quarantined_with_their_own_messages(store):
    ingest(store, [PY])
    q = {line: (code, msg) for _, line, code, msg in quarantine(store)}
    assert q[6][0] == "not_a_generation"  # the chain run's post + patch count once
    code, msg = q[11]
    assert code == "schema_error" and "patch" in msg and "missing" in msg
    assert "7b6f0c52-1d3e-4a8e-9c1f-000000000006" in msg and "outputs" in msg
    code, msg = q[12]
    assert code == "langsmith_unmatched_patch"
    assert "7b6f0c52-1d3e-4a8e-9c1f-0000000000ff" in msg and f"{PY}:12" in msg
    files = rows(store, "SELECT records, accepted, quarantined FROM ingest_files")
    assert files == [(7, 4, 3)]  # the late quarantines are added to the file's counts


@pytest.mark.parametrize("order", [(JS1, JS2), (JS2, JS1)])
def test_js_sdk_batches_in_two_files_are_joined_in_either_order(store, order):
    stats = ingest(store, list(order))
    assert (stats.records, stats.accepted, stats.quarantined) == (2, 2, 0)
    t = by_id(store)
    tool = t["langsmith:0f1e2d3c-0000-4000-8000-00000000a001"]
    assert roles(tool) == ["user", "assistant", "tool", "assistant"]
    assert tool["messages"][1]["tool_calls"] == [
        {"id": "call_PAR", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    ]
    assert tool["messages"][2] == {"role": "tool", "content": "rainy, 12°C", "tool_call_id": "call_PAR"}
    assert tool["messages"][3]["content"] == "It is rainy in Paris, 12°C."
    assert tool["latency_ms"] == pytest.approx(1250.0)  # epoch-ms start and end
    assert tool["session_id"] == "js-thread-1" and tool["input_tokens"] == 60
    cut = t["langsmith:0f1e2d3c-0000-4000-8000-00000000a002"]
    assert cut["finish_reason"] == "length" and cut["messages"][-1]["content"] == "Roses are red,"
    # located in the file that completed the pair
    assert {r[0] for r in rows(store, "SELECT source_file FROM traces")} == {str(order[1])}


def test_patches_alone_are_quarantined_and_a_later_call_does_not_double_count(store):
    stats = ingest(store, [JS2])
    assert stats.accepted == 0 and stats.quarantine_reasons == {"langsmith_unmatched_patch": 2}
    msgs = [m for *_, m in quarantine(store)]
    assert all("has no post" in m and str(JS2) in m and "patch[" in m for m in msgs)
    stats = ingest(store, [JS1])  # posts alone now: their patches were in the other call
    assert stats.quarantine_reasons == {"schema_error": 2}
    posts = [m for _, _, code, m in quarantine(store) if code == "schema_error"]
    assert len(posts) == 2 and all("patch" in m and "missing" in m for m in posts)


def test_document_form_still_merges_inside_one_record(store):
    stats = ingest(store, [FIXTURES / "formats" / "langsmith_runs.jsonl"])
    assert stats.accepted == 2 and stats.quarantine_reasons == {"not_a_generation": 1}


def _pairs_file(path, n: int, gap: int) -> None:
    """n llm runs in line form; run i's patch comes `gap` lines after its post."""
    lines = [json.loads(x) for x in PY.read_text().splitlines()[:2]]
    post, patch = lines
    out: list[str] = []
    pending: list[str] = []
    for i in range(n):
        rid = f"run-{i:05d}"
        p = {
            **post,
            "id": rid,
            "trace_id": rid,
            "inputs": {**post["inputs"], "messages": [{"role": "user", "content": f"q{i}"}]},
        }
        out.append(json.dumps(p))
        pending.append(json.dumps({**patch, "id": rid, "trace_id": rid}))
        if len(pending) > gap:
            out.append(pending.pop(0))
    out += pending
    path.write_text("\n".join(out) + "\n")


def test_halves_across_chunks_and_worker_spans_equal_the_serial_result(tmp_path, monkeypatch):
    f = tmp_path / "runs.jsonl"
    _pairs_file(f, 400, gap=25)

    def result(db, parallel: bool):
        if parallel:
            monkeypatch.setattr(run, "PARALLEL_MIN_BYTES", 0)
            monkeypatch.setattr(run, "SPAN_BYTES", 64 << 10)
        else:
            monkeypatch.setattr(run, "CHUNK_RECORDS", 37)
        with Store(db) as store:
            stats = ingest(store, [f], config=IngestConfig(workers=2 if parallel else 1, batch_size=100))
            got = rows(store, "SELECT trace_id, source_line, messages FROM traces ORDER BY trace_id")
        return stats, got

    s1, t1 = result(tmp_path / "serial.duckdb", parallel=False)
    s2, t2 = result(tmp_path / "parallel.duckdb", parallel=True)
    assert (s1.records, s1.accepted, s1.quarantined) == (s2.records, s2.accepted, s2.quarantined) == (400, 400, 0)
    assert t1 == t2
    assert json.loads(t1[0][2])[0] == {"role": "user", "content": "q0"}
