"""Every supported source format, from real-shaped fixtures, normalized role by role."""

from __future__ import annotations

import json

import pytest

from curation.ingest.run import ingest
from tests.conftest import FIXTURES, rows

F = FIXTURES / "formats"


def traces(store, fmt: str) -> list[dict]:
    out = []
    for r in rows(
        store,
        "SELECT trace_id, messages, session_id, finish_reason, error, feedback, tools, model, "
        "input_tokens, output_tokens, latency_ms, created_at, user_id FROM traces "
        "WHERE source_format = ? ORDER BY source_file, source_line, trace_id",
        fmt,
    ):
        keys = (
            "trace_id",
            "messages",
            "session_id",
            "finish_reason",
            "error",
            "feedback",
            "tools",
            "model",
            "input_tokens",
            "output_tokens",
            "latency_ms",
            "created_at",
            "user_id",
        )
        d = dict(zip(keys, r, strict=True))
        for k in ("messages", "feedback", "tools"):
            d[k] = json.loads(d[k]) if d[k] else d[k]
        out.append(d)
    return out


def roles(t: dict) -> list[str]:
    return [m["role"] for m in t["messages"]]


def test_openai_chat_logs_with_tool_calls_and_legacy_function_call(store):
    stats = ingest(store, [F / "openai_chat.jsonl"])
    assert (stats.records, stats.accepted, stats.quarantined) == (2, 2, 0)
    a, b = traces(store, "openai_chat")
    assert a["trace_id"] == "openai_chat:chatcmpl-AAA1"
    assert roles(a) == ["system", "user", "assistant"]
    assert a["messages"][1]["content"] == "My order #A-1001 never arrived."  # text parts flattened
    assert a["messages"][2]["tool_calls"] == [
        {"id": "call_1", "name": "lookup_order", "arguments": '{"order_id": "A-1001"}'}
    ]
    assert a["finish_reason"] == "tool_calls" and a["user_id"] == "u-42" and a["input_tokens"] == 120
    assert a["tools"][0]["function"]["name"] == "lookup_order"
    assert a["model"] == "gpt-4o-mini-2024-07-18"
    # developer -> system, legacy function_call -> tool call, role function -> tool
    assert roles(b) == ["system", "user", "assistant", "tool", "assistant"]
    assert b["messages"][2]["tool_calls"][0]["name"] == "get_weather"
    assert b["messages"][3] == {"role": "tool", "content": "rainy", "name": "get_weather"}
    assert b["finish_reason"] == "length" and b["session_id"] == "s-9"
    assert b["tools"] == [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def test_openai_batch_files_joined_on_custom_id(store):
    stats = ingest(store, [F / "batch_output.jsonl", F / "batch_input.jsonl"])  # order given does not matter
    assert (stats.records, stats.accepted, stats.batch_requests_joined) == (2, 2, 2)
    got = {t["messages"][-2]["content"]: t["messages"][-1]["content"] for t in traces(store, "openai_batch")}
    assert got == {"What is 2+2?": "2 + 2 equals 4.", "What is 3+3?": "3 + 3 equals 6."}


def test_batch_output_without_its_input_is_quarantined(store):
    stats = ingest(store, [F / "batch_output.jsonl"])
    assert stats.quarantine_reasons == {"batch_unmatched": 2}
    assert stats.records == stats.accepted + stats.already_present + stats.quarantined == 2
    messages = [r[0] for r in rows(store, "SELECT message FROM quarantine ORDER BY source_line")]
    assert messages[0].startswith("custom_id 'request-2': batch output line has no input line")


def test_openai_finetune_weights_double_encoded_arguments_and_legacy_prompt(store):
    ingest(store, [F / "finetune.jsonl"])
    chat, tools, legacy = traces(store, "openai_finetune")
    assert roles(chat) == ["system", "user", "assistant", "user", "assistant"]
    assert chat["messages"][2]["weight"] == 0 and "weight" not in chat["messages"][4]
    assert tools["messages"][1]["tool_calls"][0]["arguments"] == '{"location": "San Francisco, USA"}'
    assert legacy["messages"] == [
        {"role": "user", "content": "What is the answer to 2+2"},
        {"role": "assistant", "content": "4"},
    ]


def test_sharegpt_with_function_call_and_observation_turns(store):
    ingest(store, [F / "sharegpt.json"])
    plain, tool = traces(store, "sharegpt")
    assert roles(plain) == ["user", "assistant"]
    assert roles(tool) == ["system", "user", "assistant", "tool", "assistant"]
    assert tool["messages"][2]["tool_calls"] == [{"name": "get_order", "arguments": '{"id":"7"}'}]
    assert tool["tools"][0]["function"]["name"] == "get_order"


def test_anthropic_blocks_tool_use_and_tool_result(store):
    ingest(store, [F / "anthropic.jsonl"])
    (t,) = traces(store, "anthropic")
    assert roles(t) == ["system", "user", "assistant", "tool", "assistant"]
    assert t["messages"][0]["content"] == "You are a weather bot."
    call = t["messages"][2]["tool_calls"][0]
    assert call["id"] == "toolu_01" and json.loads(call["arguments"]) == {
        "location": "San Francisco, CA",
        "unit": "fahrenheit",
    }
    assert t["messages"][3]["tool_call_id"] == "toolu_01"
    assert t["finish_reason"] == "stop" and (t["input_tokens"], t["output_tokens"]) == (772, 47)
    assert t["tools"][0]["function"]["parameters"]["required"] == ["location"]


def test_langfuse_each_generation_is_a_record_with_session_and_scores(store):
    stats = ingest(store, [F / "langfuse_export.json"])
    assert (stats.records, stats.accepted) == (2, 2)  # the SPAN observation is not a record
    gen1, gen2 = traces(store, "langfuse")
    assert gen1["trace_id"] == "langfuse:obs-gen-1"
    assert roles(gen1) == ["system", "user", "assistant"]
    assert gen1["messages"][2]["content"] == '{"priority": "high"}'
    assert gen1["session_id"] == "sess-7" and gen1["user_id"] == "cust-7"
    assert gen1["feedback"] == [{"name": "user-feedback", "value": True, "comment": "Helpful answer"}]
    assert gen1["latency_ms"] == pytest.approx(1250.0) and gen1["input_tokens"] == 85
    assert roles(gen2) == ["user"] and gen2["messages"][0]["content"] == "Summarize it"  # OTel parts input
    assert gen2["error"] == "rate limited"


def test_langsmith_llm_runs_feedback_and_post_patch_payloads(store):
    stats = ingest(store, [F / "langsmith_runs.jsonl"])
    assert stats.quarantine_reasons == {"not_a_generation": 1}  # the chain run
    run, merged = traces(store, "langsmith")
    assert roles(run) == ["user", "assistant"] and run["messages"][1]["content"].startswith("Howdy!")
    assert run["session_id"] == "thread-1" and (run["input_tokens"], run["output_tokens"]) == (9, 9)
    assert run["feedback"] == [{"name": "thumbs", "value": 0.0, "comment": "too casual", "source": "app"}]
    assert merged["messages"][-1]["content"] == "pong"
    assert merged["latency_ms"] == pytest.approx(1000.0)  # ISO start, epoch-ms end


def test_otel_current_legacy_events_indexed_and_openinference(store):
    stats = ingest(store, [F / "otel_spans.jsonl"])
    assert stats.accepted == 4
    current, indexed, events, oi = traces(store, "otel")
    assert roles(current) == ["system", "user", "assistant", "tool", "assistant"]
    assert current["messages"][3] == {"role": "tool", "content": "rainy, 57°F", "tool_call_id": "call_VSPy"}
    assert current["session_id"] == "conv-1" and current["finish_reason"] == "stop"
    assert roles(indexed) == ["system", "user", "assistant"] and indexed["latency_ms"] == pytest.approx(1500.0)
    assert roles(events) == ["user", "assistant"] and events["messages"][1]["tool_calls"][0]["name"] == "get_joke"
    assert events["finish_reason"] == "tool_calls"
    assert roles(oi) == ["user", "assistant", "tool", "assistant"]
    assert oi["messages"][1]["tool_calls"][0]["arguments"] == '{"location":"Paris"}'
    assert oi["session_id"] == "sess-oi" and oi["input_tokens"] == 97


def test_forced_format_quarantines_records_of_another_shape(store):
    stats = ingest(store, [F / "sharegpt.json"], fmt="openai_chat")
    assert stats.accepted == 0 and stats.quarantine_reasons == {"unknown_format": 2}
    assert "does not look like openai_chat" in rows(store, "SELECT message FROM quarantine")[0][0]


def test_unknown_forced_format_is_a_clear_error(store):
    with pytest.raises(ValueError, match=r"unknown format 'openai'.*openai_chat"):
        ingest(store, [F / "sharegpt.json"], fmt="openai")


def test_compressed_and_parquet_files_read_the_same(store, tmp_path):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    raw = (F / "openai_chat.jsonl").read_bytes()
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw.replace(b"AAA", b"ZZZ")))
    recs = [json.loads(line) for line in (F / "finetune.jsonl").read_text().splitlines()[:1]]
    pq.write_table(pa.table({"messages": [json.dumps(r["messages"]) for r in recs]}), tmp_path / "c.parquet")
    stats = ingest(store, [tmp_path])
    assert stats.files == 3 and stats.accepted == 5 and stats.quarantined == 0
    assert stats.by_format == {"openai_chat": 4, "openai_finetune": 1}


FAST_PATH_RECORDS = [
    {"messages": [{"role": "user", "content": 'hi é \u2028 \x00 "q"'}, {"content": "ok", "role": "assistant"}]},
    {
        "messages": [
            {"role": "system"},
            {"role": "assistant", "content": "", "name": "bot", "weight": 0},
            {"role": "assistant", "content": "x", "tool_calls": [{"name": "f", "arguments": "{}"}], "weight": 1},
            {"role": "assistant", "tool_calls": [{"id": "c1", "name": "f"}], "name": None, "tool_call_id": None},
            {"role": "tool", "content": "r", "tool_call_id": "c1", "name": "f"},
        ],
        "source_id": "r1",
        "session_id": 7,
        "user_id": "",
        "model": "m",
        "created_at": "2026-01-01T00:00:00Z",
        "tags": ["a", "b"],
        "metadata": {"k": 1, "none": None, "nested": {"x": [1.5, None]}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "finish_reason": "stop",
        "error": "boom",
        "latency_ms": 12,
        "usage": {"input_tokens": 3, "output_tokens": None},
    },
    {"messages": [{"role": "user", "content": "a"}], "latency_ms": 1.5, "usage": {"input_tokens": 0}},
    {"messages": [{"role": "user", "content": "a"}], "usage": {"input_tokens": True}},  # pydantic decides
    {"messages": [{"role": "user", "content": "a", "weight": 2}], "tags": [1]},
    {"messages": [{"role": "narrator", "content": "a"}]},
]


def test_pydantic_free_fast_paths_make_the_general_paths_rows(monkeypatch):
    """`rows.fast_row` and `rows.chat_log_row` skip pydantic and the adapters for common records: wherever
    they make a row it must be the general path's, byte for byte (the content hash depends on it)."""
    from curation.ingest import parse, rows
    from curation.ingest.adapters import openai
    from curation.ingest.normalize import to_datetime

    def general(rec: dict) -> tuple:
        with monkeypatch.context() as m:
            m.setattr(parse, "fast_row", lambda *a: None)
            return parse.build_row(rec, "openai_chat", "f.jsonl", 3, "key")

    made = 0
    for rec in FAST_PATH_RECORDS:
        rec = {**rec, "created_at": to_datetime(rec.get("created_at"))}
        fast = rows.fast_row(rec, "openai_chat", "f.jsonl", 3, "key")
        if fast is not None:
            made += 1
            assert fast == general(rec) and list(map(type, fast)) == list(map(type, general(rec)))
    assert made == 3
    logs = [json.loads(line) for line in (F / "openai_chat.jsonl").read_text().splitlines()]
    logs += [
        {"request": {"messages": r["request"]["messages"][:1]}, "response": {**r["response"], "choices": []}}
        for r in logs
    ]
    logs.append(
        {
            "request": {
                "model": "m",
                "messages": [{"role": "user", "content": "q"}],
                "user": "u",
                "metadata": {"a": 1},
            },
            "response": {"id": "x", "created": 1790000000, "choices": [{"message": {"content": "a"}}], "usage": {}},
            "timestamp": "2026-10-01T00:00:00Z",
            "metadata": {"b": None},
            "tags": ["t", 3],
            "error": {"code": "E1"},
            "session_id": "s",
            "latency_ms": 5,
        }
    )
    logs.append(
        {
            "request": {"messages": [{"role": "system", "content": "s"}]},
            "response": {"id": "", "choices": [{"message": {}, "delta": {"role": "assistant", "content": "d"}}]},
            "timestamp": 1790000000,
            "user_id": 5,
            "feedback": [],
        }
    )
    made = 0
    for obj in logs:
        fast = rows.chat_log_row(obj, "f.jsonl", 3, "key")
        if fast is not None:
            made += 1
            assert fast == general(openai.parse_chat_log(obj)[0])
    assert made >= 3
