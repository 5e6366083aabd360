"""Agent-framework shapes from real-shaped fixtures, normalized role by role: the OpenAI Responses API
(own format, and nested in Langfuse / OTel), Gemini native `contents`/`candidates`, pydantic-ai's OTel
GenAI events, LangGraph tool messages whose role is the tool's name."""

from __future__ import annotations

import json

import pytest

from curation.ingest import formats
from curation.ingest.normalize import RecordError
from curation.ingest.run import ingest
from curation.ingest.shapes import messages_from_any, tool_roles
from tests.conftest import FIXTURES, rows
from tests.test_formats import roles, traces

A = FIXTURES / "agents"
WEATHER_CALL = {"id": "call_Kud0abc", "name": "get_weather", "arguments": '{"city":"Tokyo"}'}


def meta(store, trace_id: str) -> dict:
    return json.loads(rows(store, "SELECT metadata FROM traces WHERE trace_id = ?", trace_id)[0][0])


def quarantine(store) -> dict[int, tuple[str, str]]:
    return {line: (code, msg) for line, code, msg in rows(store, "SELECT source_line, code, message FROM quarantine")}


@pytest.fixture
def responses(store):
    stats = ingest(store, [A / "openai_responses.jsonl"])
    return stats, {t["trace_id"].removeprefix("openai_responses:"): t for t in traces(store, "openai_responses")}


def test_responses_request_with_instructions_and_string_input(store, responses):
    stats, t = responses
    assert (stats.records, stats.accepted, stats.quarantined) == (9, 7, 2)
    r = t["resp_0001"]
    assert r["messages"] == [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Tell me a three sentence bedtime story about a unicorn."},
        {"role": "assistant", "content": "Once upon a time, a unicorn named Lumi... The end."},
    ]
    assert r["finish_reason"] == "stop" and r["model"] == "gpt-4.1-mini-2025-04-14"
    assert (r["input_tokens"], r["output_tokens"]) == (36, 12)
    assert r["session_id"] == "sess-r1" and r["latency_ms"] == pytest.approx(812.5)  # the log envelope


def test_responses_items_tool_round_trip_reasoning_and_tools(store, responses):
    _, t = responses
    r = t["resp_0002"]
    assert roles(r) == ["system", "system", "user", "assistant", "tool", "assistant"]
    assert r["messages"][1] == {"role": "system", "content": "Use metric units."}  # developer, input_text part
    assert r["messages"][3] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call_TKY", "name": "get_weather", "arguments": '{"city":"Tokyo"}'}],
    }
    assert r["messages"][4] == {"role": "tool", "content": '{"temp_c": 18, "sky": "sunny"}', "tool_call_id": "call_TKY"}
    assert r["messages"][5] == {"role": "assistant", "content": "It is sunny in Tokyo, 18°C."}
    assert "18C" not in json.dumps(r["messages"])  # the reasoning summary is not trained text
    assert r["user_id"] == "user-42" and r["model"] == "o4-mini-2025-04-16"
    assert r["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        }
    ]
    m = meta(store, "openai_responses:resp_0002")
    assert m["reasoning_items"] == 2 and m["reasoning_tokens"] == 64
    assert m["builtin_tools"] == ["web_search_preview"] and m["previous_response_id"] == "resp_0001"


def test_responses_parallel_calls_incomplete_failed_and_refusal(responses):
    _, t = responses
    par = t["resp_0003"]
    assert roles(par) == ["user", "assistant"] and par["finish_reason"] == "tool_calls"
    assert [c["id"] for c in par["messages"][1]["tool_calls"]] == ["call_ROM", "call_OSL"]  # one assistant turn
    assert t["resp_0004"]["finish_reason"] == "length"  # incomplete_details.reason = max_output_tokens
    failed = t["resp_0005"]
    assert roles(failed) == ["user"] and failed["finish_reason"] is None
    assert failed["error"] == "The server had an error while processing your request."
    refusal = t["resp_0006"]  # a stored Response object alone: instructions + output
    assert refusal["messages"] == [
        {"role": "system", "content": "Be safe."},
        {"role": "assistant", "content": "I can't help with that."},
    ]
    paired = t["resp_0008"]  # input_items list stored with its Response
    assert paired["messages"][0] == {"role": "user", "content": "Tell me a joke."} and roles(paired) == [
        "user",
        "assistant",
    ]


def test_responses_without_output_are_quarantined_with_a_clear_code(store, responses):
    q = quarantine(store)
    code, msg = q[7]  # input_items alone
    assert code == "responses_no_output" and "input_items" in msg and msg.startswith("openai_responses: data:")
    code, msg = q[9]  # a failed Response with no output and no input
    assert code == "responses_no_output" and "resp_0009" in msg and "Rate limit reached" in msg
    assert msg.startswith("openai_responses: output:")


def test_responses_shapes_are_detected_and_chat_logs_are_not():
    line = json.loads((A / "openai_responses.jsonl").read_text().splitlines()[0])
    assert formats.detect(line).name == "openai_responses"
    assert formats.detect(line["response"]).name == "openai_responses"
    chat = json.loads((FIXTURES / "formats" / "openai_chat.jsonl").read_text().splitlines()[0])
    assert formats.detect(chat).name == "openai_chat"


@pytest.fixture
def langfuse(store):
    stats = ingest(store, [A / "langfuse_agents.json"])
    return stats, {t["trace_id"].removeprefix("langfuse:"): t for t in traces(store, "langfuse")}


def test_openai_agents_sdk_generations_in_langfuse(store, langfuse):
    stats, t = langfuse
    assert (stats.records, stats.accepted, stats.quarantine_reasons) == (9, 8, {"unknown_role": 1})
    first = t["obs-oa-1"]  # input: JSON string of items; output: the whole Response object as JSON string
    assert first["messages"] == [
        {"role": "system", "content": "You are a helpful agent. Use tools when needed."},  # Response.instructions
        {"role": "user", "content": "What's the weather in Tokyo?"},
        {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL]},
    ]
    assert first["finish_reason"] == "tool_calls" and first["tools"][0]["function"]["name"] == "get_weather"
    second = t["obs-oa-2"]
    assert roles(second) == ["system", "user", "assistant", "tool", "assistant"]
    assert second["messages"][3] == {
        "role": "tool",
        "content": "The weather in Tokyo is sunny.",
        "tool_call_id": "call_Kud0abc",
    }
    assert second["messages"][4] == {"role": "assistant", "content": "It's sunny in Tokyo today."}
    assert second["finish_reason"] == "stop" and (second["input_tokens"], second["output_tokens"]) == (90, 40)
    m = meta(store, "langfuse:obs-oa-2")
    assert (m["reasoning_items"], m["reasoning_tokens"]) == (1, 24)


def test_gemini_native_contents_and_candidates_in_langfuse(store, langfuse):
    _, t = langfuse
    g = t["obs-gem-1"]
    assert g["messages"] == [
        {"role": "system", "content": "You are a weather assistant."},
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "arguments": '{"city":"Paris"}'}]},
        {"role": "tool", "content": '{"result":"rainy, 12°C"}', "name": "get_weather"},
        {"role": "assistant", "content": "It's rainy in Paris, 12°C."},  # the thought part is left out
    ]
    assert g["finish_reason"] == "stop"
    assert (g["input_tokens"], g["output_tokens"]) == (41, 11)  # from usageMetadata
    assert meta(store, "langfuse:obs-gem-1")["reasoning_tokens"] == 28
    cut = t["obs-gem-2"]  # contents as a bare list, MAX_TOKENS, model from modelVersion
    assert roles(cut) == ["user", "assistant"] and cut["finish_reason"] == "length"
    assert cut["model"] == "gemini-2.0-flash"


def test_pydantic_ai_genai_events_in_langfuse(langfuse):
    _, t = langfuse
    p = t["obs-pyd-1"]
    assert p["messages"] == [
        {"role": "system", "content": "You are a helpful weather agent."},
        {"role": "user", "content": "Weather in Berlin?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_BER", "name": "get_weather", "arguments": '{"city":"Berlin"}'}],
        },
        {"role": "tool", "content": "cloudy, 9°C", "name": "get_weather", "tool_call_id": "call_BER"},
        {"role": "assistant", "content": "It's cloudy in Berlin, 9°C."},  # the thinking part is left out
    ]
    assert p["finish_reason"] == "stop"
    call = t["obs-pyd-2"]  # a choice event with object arguments
    assert call["messages"][1]["tool_calls"] == [
        {"id": "call_MAD", "name": "get_weather", "arguments": '{"city":"Madrid"}'}
    ]
    assert call["finish_reason"] == "tool_calls"


def test_langgraph_tool_name_roles_become_tool_messages(store, langfuse):
    _, t = langfuse
    lg = t["obs-lg-1"]
    assert roles(lg) == ["system", "user", "assistant", "tool", "assistant"]
    assert lg["messages"][3] == {
        "role": "tool",
        "content": "foggy, 17°C",
        "name": "get_weather",
        "tool_call_id": "call_LIM",
    }
    # no tool_call_id: the role names the preceding call, whose id it answers
    assert t["obs-lg-2"]["messages"][2] == {
        "role": "tool",
        "content": "sunny, 20°C",
        "name": "get_weather",
        "tool_call_id": "call_QUI",
    }
    ((code, msg),) = quarantine(store).values()  # a role that is no tool stays unknown
    assert code == "unknown_role" and "narrator" in msg and "observations[9]" in msg


def test_responses_shapes_nested_in_otel_spans(store):
    stats = ingest(store, [A / "otel_responses.jsonl"])
    assert (stats.accepted, stats.quarantined) == (2, 0)
    flat, oi = traces(store, "otel")
    assert flat["messages"] == [
        {"role": "system", "content": "You translate to German."},
        {"role": "user", "content": "Good morning"},
        {"role": "assistant", "content": "Guten Morgen"},
    ]
    assert flat["finish_reason"] == "stop" and (flat["input_tokens"], flat["output_tokens"]) == (20, 4)
    assert roles(oi) == ["system", "user", "assistant", "tool", "assistant"]  # OpenInference input/output.value
    assert oi["messages"][2]["tool_calls"] == [
        {"id": "call_PE", "name": "lookup_capital", "arguments": '{"country":"Peru"}'}
    ]
    assert oi["messages"][3] == {"role": "tool", "content": "Lima", "tool_call_id": "call_PE"}
    assert oi["finish_reason"] == "length" and oi["model"] == "o4-mini-2025-04-16" and oi["session_id"] == "oi-sess-2"


def test_tool_roles_only_convert_roles_that_name_a_tool():
    call = {"id": "c1", "name": "search", "arguments": "{}"}
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    assert tool_roles([*msgs, {"role": "search", "content": "r"}], None)[2] == {
        "role": "tool",
        "content": "r",
        "name": "search",
        "tool_call_id": "c1",
    }
    defined = [{"type": "function", "function": {"name": "lookup"}}]
    assert tool_roles([{"role": "lookup", "content": "x"}], defined)[0]["role"] == "tool"
    assert tool_roles([{"role": "x", "content": "y", "tool_call_id": "c9"}], None)[0]["role"] == "tool"
    assert tool_roles([*msgs, {"role": "critic", "content": "r"}], defined)[2]["role"] == "critic"
    plain = [{"role": "user", "content": "q"}]
    assert tool_roles(plain, None) is plain  # the common case is not copied


def test_bad_nested_shapes_raise_errors_that_name_the_field():
    with pytest.raises(RecordError, match=r"out\.contents\[0\]\.parts: must be a list") as e:
        messages_from_any({"contents": [{"role": "user", "parts": "hi"}]}, "user", "out")
    assert e.value.code == "schema_error"
    with pytest.raises(RecordError, match=r"out\.output\[1\]: item must be an object"):
        messages_from_any({"object": "response", "status": "completed", "output": ["x", 3]}, "assistant", "out")
    with pytest.raises(RecordError, match=r"out: no messages found"):
        messages_from_any({"foo": 1}, "assistant", "out")
    # an empty Gemini response holds no assistant turn, and says why when it was blocked
    assert messages_from_any({"candidates": [], "promptFeedback": {"blockReason": "SAFETY"}}, "assistant", "o") == (
        [],
        "content_filter",
    )


def test_langchain_serialized_messages_in_a_langsmith_run():
    from curation.ingest.adapters.langsmith import parse

    def lc(cls: str, **kwargs) -> dict:
        return {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", cls], "kwargs": kwargs}

    call = {"name": "get_weather", "args": {"city": "Rome"}, "id": "call_R", "type": "tool_call"}
    run = {
        "id": "lc-1",
        "run_type": "llm",
        "start_time": "2026-11-20T09:00:00Z",
        "end_time": "2026-11-20T09:00:01Z",
        "inputs": {"messages": [[lc("SystemMessage", content="Be brief."), lc("HumanMessage", content="Rome?")]]},
        "outputs": {
            "generations": [
                [
                    {
                        "text": "",
                        "type": "ChatGeneration",
                        "generation_info": {"finish_reason": "tool_calls"},
                        "message": lc("AIMessage", content="", tool_calls=[call]),
                    }
                ]
            ]
        },
    }
    (rec,) = parse(run)
    assert rec["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Rome?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_R", "name": "get_weather", "arguments": '{"city":"Rome"}'}],
        },
    ]
    assert rec["finish_reason"] == "tool_calls"
