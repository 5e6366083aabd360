"""Decoders for the many shapes observability tools store as a generation's input or output: OpenAI
messages and ChatCompletions, Responses items and Response objects, Gemini `contents`/`candidates`,
OTel GenAI `parts` messages and event bodies (pydantic-ai), LangChain serialized messages, plain text."""

from __future__ import annotations

from typing import Any

from curation.ingest.adapters import responses
from curation.ingest.normalize import (
    RecordError,
    arguments_text,
    dumps,
    maybe_json,
    norm_role,
    openai_message,
    openai_response_messages,
    otel_message,
    text_of,
    turn,
    usage_from,
)

Found = tuple[list[dict[str, Any]], str | None]

EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
    "gen_ai.choice": "assistant",
}
_GEMINI_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}
_LC_ROLES = {
    "HumanMessage": "user",
    "AIMessage": "assistant",
    "AIMessageChunk": "assistant",
    "SystemMessage": "system",
    "ToolMessage": "tool",
    "FunctionMessage": "tool",
}
_CANONICAL = frozenset(("system", "user", "assistant", "tool"))


def messages_from_any(value: Any, default_role: str, where: str) -> Found:
    """Messages from the many shapes observability tools store as a generation's input or output.

    Returns the messages and a finish reason when the value carries one."""
    value = maybe_json(value)
    if value is None:
        return [], None
    if isinstance(value, str):
        return [{"role": default_role, "content": value}], None
    if isinstance(value, dict):
        return _from_object(value, default_role, where)
    if not isinstance(value, list):
        raise RecordError("schema_error", f"{where}: expected messages, got {type(value).__name__}")
    return _from_list(value, default_role, where)


def _is_choice(v: dict[str, Any]) -> bool:
    return isinstance(v.get("message"), dict) and ("index" in v or "finish_reason" in v or "generation_info" in v)


def _from_object(value: dict[str, Any], default_role: str, where: str) -> Found:
    if "choices" in value:
        return openai_response_messages(value, where)
    if responses.is_response(value):
        return responses.response_messages(value, where)
    if isinstance(value.get("candidates"), list):
        return gemini_response(value, where)
    if isinstance(value.get("contents"), list | str):
        return gemini_request(value, where), None
    if "event.name" in value or _is_choice(value):
        return _from_list([value], default_role, where)
    if responses.is_item_list(value):
        return _from_list(value["data"], default_role, f"{where}.data")
    if responses.is_request(value) and (
        "instructions" in value or "model" in value or isinstance(value["input"], list)
    ):
        return responses.request_messages(value, where), None
    if "messages" in value and isinstance(maybe_json(value["messages"]), list):
        msgs, finish = messages_from_any(value["messages"], default_role, f"{where}.messages")
        if isinstance(value.get("system"), str | list) and value["system"]:  # Anthropic-style request
            msgs = [{"role": "system", "content": text_of(value["system"], f"{where}.system")}, *msgs]
        return msgs, finish
    if isinstance(value.get("content"), dict) and "parts" in value["content"]:  # one Gemini candidate
        return gemini_content(value["content"], default_role, f"{where}.content"), _gemini_finish(value)
    if "role" in value or "content" in value or "parts" in value or "type" in value or "lc" in value:
        return _from_list([value], default_role, where)
    if "text" in value or "prompt" in value:
        return [{"role": default_role, "content": text_of(value.get("text", value.get("prompt")), where)}], None
    raise RecordError("schema_error", f"{where}: no messages found (keys: {', '.join(list(value)[:8])})")


def _from_list(items: list[Any], default_role: str, where: str) -> Found:
    if len(items) == 1 and isinstance(items[0], list):  # LangChain batches: [[message, ...]]
        items, where = items[0], f"{where}[0]"
    out: list[dict[str, Any]] = []
    finish = None
    for i, m in enumerate(items):
        w = f"{where}[{i}]"
        if isinstance(m, str):
            out.append({"role": default_role, "content": m})
        elif not isinstance(m, dict):
            raise RecordError("schema_error", f"{w}: message must be an object")
        elif isinstance(m.get("parts"), list):
            if all("type" in p for p in m["parts"] if isinstance(p, dict)):
                out += otel_message({**m, "role": m.get("role", default_role)}, w)
            else:
                out += gemini_content(m, default_role, w)
        elif "parts" in m:
            raise RecordError("schema_error", f"{w}.parts: must be a list")
        elif isinstance(m.get("content"), dict) and "parts" in m["content"]:
            out += gemini_content(m["content"], default_role, f"{w}.content")
            finish = _gemini_finish(m) or finish
        elif "event.name" in m or _is_choice(m):
            msgs, f = event_message(m, w)
            out += msgs
            finish = f or finish
        elif responses.is_item(m):
            responses.add_item(out, m, default_role, w)
        elif m.get("lc") is not None and isinstance(m.get("kwargs"), dict):
            out.append(langchain_message(m, default_role, w))
        else:
            if "role" not in m:
                m = {**m, "role": default_role}
            kwargs = m.get("additional_kwargs")
            if isinstance(kwargs, dict) and kwargs.get("tool_calls") and not m.get("tool_calls"):
                m = {**m, "tool_calls": kwargs["tool_calls"]}
            out.append(openai_message(m, w))
    return out, finish


def gemini_content(c: dict[str, Any], default_role: str, where: str) -> list[dict[str, Any]]:
    """A Gemini `Content` (`{role: user|model, parts: [text | functionCall | functionResponse]}`);
    functionResponse parts become `tool` messages, thought parts are left out."""
    parts = c.get("parts")
    if not isinstance(parts, list):
        raise RecordError("schema_error", f"{where}.parts: must be a list")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, p in enumerate(parts):
        if isinstance(p, str):
            texts.append(p)
            continue
        if not isinstance(p, dict):
            raise RecordError("schema_error", f"{where}.parts[{j}]: must be an object")
        if p.get("thought"):
            continue
        fc = p.get("functionCall") or p.get("function_call")
        fr = p.get("functionResponse") or p.get("function_response")
        if isinstance(fc, dict):
            args = fc.get("args") if fc.get("args") is not None else {}
            calls.append({"id": fc.get("id"), "name": fc.get("name"), "arguments": arguments_text(args)})
        elif isinstance(fr, dict):
            resp = fr.get("response")
            content = resp if isinstance(resp, str) else dumps(resp)
            results.append({"role": "tool", "name": fr.get("name"), "tool_call_id": fr.get("id"), "content": content})
        elif isinstance(p.get("text"), str):
            texts.append(p["text"])
        else:
            texts.append(f"[{next((k for k, v in p.items() if v is not None), 'part')}]")
    return turn(norm_role(c.get("role") or default_role), texts, calls, results)


def _gemini_text(value: Any, where: str) -> str:
    if isinstance(value, dict) and isinstance(value.get("parts"), list):
        value = value["parts"]
    return text_of(value, where)


def gemini_request(value: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A Gemini generateContent request: `systemInstruction` (or config.system_instruction) and `contents`."""
    config = value.get("config") if isinstance(value.get("config"), dict) else {}
    system = next(
        (
            v
            for v in (
                value.get("systemInstruction"),
                value.get("system_instruction"),
                config.get("systemInstruction"),
                config.get("system_instruction"),
            )
            if v
        ),
        None,
    )
    out = [{"role": "system", "content": _gemini_text(system, f"{where}.systemInstruction")}] if system else []
    contents = value["contents"]
    for i, c in enumerate([contents] if isinstance(contents, str) else contents):
        w = f"{where}.contents[{i}]"
        if isinstance(c, dict) and "parts" in c:
            out += gemini_content(c, "user", w)
        else:
            out += _from_list([c], "user", w)[0]
    return out


def _gemini_finish(candidate: dict[str, Any]) -> str | None:
    reason = candidate.get("finishReason") or candidate.get("finish_reason")
    if not reason:
        return None
    r = str(reason).rsplit(".", 1)[-1]
    return _GEMINI_FINISH.get(r.upper(), r.lower())


def gemini_response(value: dict[str, Any], where: str) -> Found:
    """Candidate 0 of a Gemini generateContent response, with its finish reason."""
    cands = value["candidates"]
    if not cands:
        blocked = (value.get("promptFeedback") or value.get("prompt_feedback") or {}).get("blockReason")
        return [], "content_filter" if blocked else None
    c0 = cands[0]
    if not isinstance(c0, dict):
        raise RecordError("schema_error", f"{where}.candidates[0]: must be an object")
    content = c0.get("content")
    msgs = gemini_content(content, "assistant", f"{where}.candidates[0].content") if content else []
    return msgs, _gemini_finish(c0)


def event_message(e: dict[str, Any], where: str) -> Found:
    """One OTel GenAI event body (`gen_ai.user.message`, `gen_ai.choice`, ...) as OTel log events and
    pydantic-ai's observations carry it (`event.name` next to the body fields)."""
    name = e.get("event.name")
    body = {k.removeprefix("gen_ai.event."): maybe_json(v) for k, v in e.items()}
    finish = None
    role = EVENT_ROLES.get(name, "assistant" if _is_choice(body) else "user")
    if name == "gen_ai.choice" or (name is None and _is_choice(body)):
        finish = body.get("finish_reason") or (body.get("generation_info") or {}).get("finish_reason")
        msg = body["message"] if isinstance(body.get("message"), dict) else {}
        if msg.get("lc") is not None and isinstance(msg.get("kwargs"), dict):  # a LangChain ChatGeneration
            return [langchain_message(msg, "assistant", f"{where}.message")], finish
        body = {**msg, "tool_calls": body.get("tool_calls") or msg.get("tool_calls")}
    m: dict[str, Any] = {
        "role": body.get("role") or role,
        "content": body.get("content"),
        "tool_calls": body.get("tool_calls"),
    }
    if role == "tool" or m["role"] == "tool":
        m["tool_call_id"] = body.get("tool_call_id") or body.get("id")
        m["name"] = body.get("name")
    return [openai_message(m, where)], finish


def langchain_message(m: dict[str, Any], default_role: str, where: str) -> dict[str, Any]:
    """A LangChain serialized message (`{lc: 1, type: constructor, id: [..., "AIMessage"], kwargs}`)."""
    kw = m["kwargs"]
    cls = m["id"][-1] if isinstance(m.get("id"), list) and m["id"] else ""
    role = _LC_ROLES.get(cls) or kw.get("role") or default_role
    msg: dict[str, Any] = {"role": role, "content": kw.get("content")}
    calls = kw.get("tool_calls") or (kw.get("additional_kwargs") or {}).get("tool_calls")
    if calls:
        msg["tool_calls"] = [
            c if "function" in c else {"id": c.get("id"), "name": c.get("name"), "arguments": c.get("args")}
            for c in calls
            if isinstance(c, dict)
        ]
    for key in ("tool_call_id", "name"):
        if kw.get(key) is not None:
            msg[key] = kw[key]
    return openai_message(msg, where)


def exchange(inp: Any, out: Any, where_in: str, where_out: str) -> tuple[list[dict[str, Any]], str | None, dict]:
    """A generation's input and output decoded into one conversation, its finish reason, and `facts`.

    The `instructions` of a Response output become the system turn when the input has none (the
    OpenAI Agents SDK logs the input items and the Response object apart)."""
    inp, out = maybe_json(inp), maybe_json(out)
    messages, _ = messages_from_any(inp, "user", where_in)
    outputs, finish = messages_from_any(out, "assistant", where_out)
    if responses.is_response(out) and out.get("instructions") and not (messages and messages[0]["role"] == "system"):
        messages = responses.instructions_messages(out["instructions"], f"{where_out}.instructions") + messages
    return messages + outputs, finish, facts(inp, out)


def facts(*values: Any) -> dict[str, Any]:
    """What decoded inputs/outputs carry besides messages (a Response, ChatCompletion, Gemini response,
    Responses items): model, usage, reasoning item and token counts, error and tool definitions."""
    out: dict[str, Any] = {}
    items = 0
    for v in values:
        if isinstance(v, list):
            items += responses.count_reasoning(v)
            continue
        if not isinstance(v, dict):
            continue
        if responses.is_request(v):
            items += responses.count_reasoning(v.get("input"))
            usage, model = None, None
        elif responses.is_response(v):
            items += responses.count_reasoning(v.get("output"))
            usage, model = v.get("usage"), v.get("model")
            if responses.error_text(v):
                out["error"] = responses.error_text(v)
        elif "choices" in v:
            usage, model = v.get("usage") or v.get("usage_metadata"), v.get("model")
        elif "candidates" in v:
            usage = v.get("usageMetadata") or v.get("usage_metadata")
            model = v.get("modelVersion") or v.get("model_version")
        else:
            continue
        tools, _ = responses.tool_defs(v.get("tools"))
        found = {
            "model": model,
            "usage": usage_from(usage) or None,
            "reasoning_tokens": responses.reasoning_tokens(usage),
            "tools": tools,
        }
        out.update({k: x for k, x in found.items() if x is not None})
    if items:
        out["reasoning_items"] = items
    return out


def tool_roles(messages: list[Any], tools: Any) -> list[Any]:
    """Messages whose role is a tool's name (LangGraph logs tool results so) become `tool` messages with
    that `name`: the role must match a preceding tool call or a tool definition, or the message must carry
    a tool_call_id. Any other unknown role is left for validation to reject."""
    if all(isinstance(m, dict) and m.get("role") in _CANONICAL for m in messages):
        return messages
    defined = set()
    for t in tools or []:
        fn = t.get("function") if isinstance(t, dict) and isinstance(t.get("function"), dict) else t
        if isinstance(fn, dict) and fn.get("name"):
            defined.add(fn["name"])
    open_calls: list[dict[str, Any]] = []
    out = []
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else None
        if role == "assistant":
            open_calls += [c for c in m.get("tool_calls") or [] if isinstance(c, dict)]
        elif role == "tool":
            open_calls = [c for c in open_calls if c.get("id") is None or c.get("id") != m.get("tool_call_id")]
        elif isinstance(role, str) and role and role not in _CANONICAL:
            call = next((c for c in open_calls if c.get("name") == role), None)
            if call is not None or role in defined or m.get("tool_call_id") is not None:
                m = {**m, "role": "tool", "name": m.get("name") or role}
                if m.get("tool_call_id") is None and call is not None and call.get("id"):
                    m["tool_call_id"] = call["id"]
                if call is not None:
                    open_calls.remove(call)
        out.append(m)
    return out
