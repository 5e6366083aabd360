"""OpenTelemetry spans: GenAI semantic conventions (current `gen_ai.input.messages`/`output.messages`,
legacy `gen_ai.*.message` events, indexed `gen_ai.prompt.N.*` attributes) and OpenInference
`llm.input_messages.*` attributes. Spans come one per record or as an OTLP `resourceSpans` export."""

from __future__ import annotations

import re
from typing import Any

from curation.ingest.normalize import (
    RecordError,
    arguments_text,
    as_int,
    each,
    latency_ms,
    maybe_json,
    norm_role,
    openai_message,
    to_datetime,
)
from curation.ingest.shapes import EVENT_ROLES, event_message, exchange, messages_from_any


def _otlp_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        return as_int(v["intValue"])
    if "arrayValue" in v:
        return [_otlp_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return attributes(v["kvlistValue"].get("values", []))
    return v


def attributes(attrs: Any) -> dict[str, Any]:
    """Span attributes as a flat dict, from a plain mapping or OTLP's `[{key, value: {stringValue}}]`."""
    if isinstance(attrs, dict):
        return attrs
    if isinstance(attrs, list):
        return {a["key"]: _otlp_value(a.get("value")) for a in attrs if isinstance(a, dict) and "key" in a}
    return {}


def _is_span(s: Any) -> bool:
    return isinstance(s, dict) and "attributes" in s and ("name" in s or "spanId" in s or "context" in s)


def _is_llm(attrs: dict[str, Any]) -> bool:
    return attrs.get("openinference.span.kind") == "LLM" or any(
        k.startswith(
            (
                "gen_ai.input",
                "gen_ai.output",
                "gen_ai.prompt",
                "gen_ai.completion",
                "llm.input_messages",
                "gen_ai.request.model",
                "gen_ai.operation.name",
            )
        )
        for k in attrs
    )


def detect(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("resourceSpans"), list) or _is_span(obj)


def spans(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(obj.get("resourceSpans"), list):
        return [("<record>", obj)]
    out = []
    for i, rs in enumerate(obj["resourceSpans"]):
        for j, ss in enumerate((rs or {}).get("scopeSpans") or (rs or {}).get("instrumentationLibrarySpans") or []):
            for k, span in enumerate((ss or {}).get("spans") or []):
                if _is_span(span) and _is_llm(attributes(span["attributes"])):
                    out.append((f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]", span))
    if not out:
        raise RecordError("no_messages", "resourceSpans: no LLM span in this export")
    return out


def _indexed(attrs: dict[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """Collect `prefix.N.rest` attributes into {N: {rest: value}}."""
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.(.+)$")
    out: dict[int, dict[str, Any]] = {}
    for k, v in attrs.items():
        m = pat.match(k)
        if m:
            out.setdefault(int(m.group(1)), {})[m.group(2)] = v
    return dict(sorted(out.items()))


def _openinference_messages(attrs: dict[str, Any], prefix: str, where: str) -> list[dict[str, Any]]:
    out = []
    for n, fields in _indexed(attrs, prefix).items():
        content = fields.get("message.content")
        if content is None:
            parts = _indexed(fields, "message.contents")
            content = "\n".join(str(p.get("message_content.text", "")) for p in parts.values())
        msg: dict[str, Any] = {"role": fields.get("message.role"), "content": content or ""}
        calls = _indexed(fields, "message.tool_calls")
        if calls:
            msg["tool_calls"] = [
                {
                    "id": c.get("tool_call.id"),
                    "function": {
                        "name": c.get("tool_call.function.name"),
                        "arguments": c.get("tool_call.function.arguments"),
                    },
                }
                for c in calls.values()
            ]
        for key, dst in (("message.tool_call_id", "tool_call_id"), ("message.name", "name")):
            if fields.get(key) is not None:
                msg[dst] = fields[key]
        out.append(openai_message(msg, f"{where}.{prefix}.{n}"))
    return out


def _indexed_genai(attrs: dict[str, Any], prefix: str, default_role: str) -> tuple[list[dict[str, Any]], str | None]:
    out, finish = [], None
    for f in _indexed(attrs, prefix).values():
        msg: dict[str, Any] = {"role": norm_role(f.get("role", default_role)), "content": f.get("content") or ""}
        calls = _indexed(f, "tool_calls")
        if calls:
            msg["tool_calls"] = [
                {"id": c.get("id"), "name": c.get("name"), "arguments": arguments_text(c.get("arguments"))}
                for c in calls.values()
            ]
        if f.get("tool_call_id") is not None:
            msg["tool_call_id"] = f["tool_call_id"]
        finish = f.get("finish_reason", finish)
        out.append(msg)
    return out, finish


def _event_messages(events: Any, where: str) -> tuple[list[dict[str, Any]], str | None]:
    out, finish = [], None
    for i, e in enumerate(events or []):
        if not isinstance(e, dict) or e.get("name") not in EVENT_ROLES:
            continue
        body = maybe_json(e.get("body"))
        if not isinstance(body, dict):
            body = attributes(e.get("attributes"))
        msgs, f = event_message({**body, "event.name": e["name"]}, f"{where}.events[{i}]")
        out += msgs
        finish = f or finish
    return out, finish


def parse_span(where: str, span: dict[str, Any]) -> dict[str, Any]:
    a = attributes(span.get("attributes"))
    finish, info, w = None, {}, f"{where}.attributes."
    if "gen_ai.input.messages" in a or "gen_ai.output.messages" in a:
        messages = []
        if a.get("gen_ai.system_instructions"):
            sys = maybe_json(a["gen_ai.system_instructions"])
            sys_text = (
                "\n".join(p.get("content", "") for p in sys if isinstance(p, dict))
                if isinstance(sys, list)
                else str(sys)
            )
            messages.append({"role": "system", "content": sys_text})
        messages += messages_from_any(
            a.get("gen_ai.input.messages"), "user", f"{where}.attributes.gen_ai.input.messages"
        )[0]
        outs = maybe_json(a.get("gen_ai.output.messages"))
        messages += messages_from_any(outs, "assistant", f"{where}.attributes.gen_ai.output.messages")[0]
        if isinstance(outs, list) and outs and isinstance(outs[-1], dict):
            finish = outs[-1].get("finish_reason")
    elif any(k.startswith("llm.input_messages.") for k in a):
        messages = _openinference_messages(a, "llm.input_messages", f"{where}.attributes")
        messages += _openinference_messages(a, "llm.output_messages", f"{where}.attributes")
        finish = a.get("llm.finish_reason")
    elif any(k.startswith("gen_ai.prompt.") for k in a):
        messages, _ = _indexed_genai(a, "gen_ai.prompt", "user")
        outs, finish = _indexed_genai(a, "gen_ai.completion", "assistant")
        messages += outs
    elif "gen_ai.prompt" in a or "gen_ai.completion" in a:
        messages, finish, info = exchange(
            a.get("gen_ai.prompt"), a.get("gen_ai.completion"), f"{w}gen_ai.prompt", f"{w}gen_ai.completion"
        )
    else:
        messages, finish = _event_messages(span.get("events"), where)
        if not messages and ("input.value" in a or "output.value" in a):  # OpenInference payloads only
            messages, finish, info = exchange(
                a.get("input.value"), a.get("output.value"), f"{w}input.value", f"{w}output.value"
            )
    reasons = maybe_json(a.get("gen_ai.response.finish_reasons"))
    if finish is None and isinstance(reasons, list) and reasons:
        finish = reasons[0]
    status = span.get("status") or {}
    code = status.get("code") if isinstance(status, dict) else None
    error = a.get("error.type")
    if error is None and code in (2, "ERROR", "STATUS_CODE_ERROR"):
        error = status.get("message") or "span status ERROR"
    ctx = span.get("context") or span.get("spanContext") or {}
    trace_id = span.get("traceId") or ctx.get("trace_id") or ctx.get("traceId")
    span_id = span.get("spanId") or ctx.get("span_id") or ctx.get("spanId")
    meta = maybe_json(a.get("metadata"))
    tags = maybe_json(a.get("tag.tags"))
    tools = maybe_json(a.get("gen_ai.tool.definitions"))
    usage = {
        "input_tokens": as_int(a.get("gen_ai.usage.input_tokens", a.get("llm.token_count.prompt"))),
        "output_tokens": as_int(a.get("gen_ai.usage.output_tokens", a.get("llm.token_count.completion"))),
    }
    start = span.get("startTimeUnixNano") or span.get("start_time") or span.get("startTime")
    end = span.get("endTimeUnixNano") or span.get("end_time") or span.get("endTime")
    return {
        "where": where,
        "source_id": f"{trace_id}:{span_id}" if span_id else None,
        "session_id": a.get("gen_ai.conversation.id") or a.get("session.id"),
        "user_id": a.get("user.id") or a.get("enduser.id"),
        "created_at": to_datetime(start),
        "model": a.get("gen_ai.response.model")
        or a.get("gen_ai.request.model")
        or a.get("llm.model_name")
        or info.get("model"),
        "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
        "metadata": {
            "otel_trace_id": trace_id,
            "span_name": span.get("name"),
            "provider": a.get("gen_ai.provider.name") or a.get("gen_ai.system") or a.get("llm.provider"),
            **({"span_metadata": meta} if isinstance(meta, dict) else {}),
            "reasoning_items": info.get("reasoning_items"),
            "reasoning_tokens": as_int(
                a.get("gen_ai.usage.reasoning.output_tokens", a.get("llm.token_count.completion_details.reasoning"))
            )
            or info.get("reasoning_tokens"),
        },
        "messages": messages,
        "tools": [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else info.get("tools"),
        "finish_reason": finish,
        "error": str(error) if error else info.get("error"),
        "latency_ms": latency_ms(start, end),
        "usage": usage if any(usage.values()) else info.get("usage") or usage,
    }


def parse(obj: dict[str, Any]) -> list[dict[str, Any] | RecordError]:
    events = [
        e for e in obj.get("events") or [] if isinstance(e, dict) and str(e.get("name", "")).startswith("gen_ai.")
    ]
    if _is_span(obj) and not _is_llm(attributes(obj["attributes"])) and not events:
        raise RecordError("not_a_generation", "attributes: span is not an LLM span (no gen_ai.* / llm.* messages)")
    return each(spans(obj), parse_span)
