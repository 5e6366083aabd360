"""Helpers shared by the ingest adapters: decoding double-encoded JSON, content parts, timestamps,
tool calls and the OpenAI message vocabulary that several sources reuse."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

ROLE_ALIASES = {
    "developer": "system",
    "human": "user",
    "prompter": "user",
    "gpt": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "bot": "assistant",
    "function": "tool",
    "observation": "tool",
    "ipython": "tool",
}


class RecordError(Exception):
    """A record that cannot become a trace: `code` is the quarantine reason, the message names the field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def maybe_json(value: Any) -> Any:
    """Decode a value that a source stored as a JSON string (Langfuse, OTel, OpenInference do)."""
    if isinstance(value, str):
        s = value.lstrip()
        if s[:1] in ("{", "["):
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError:
                return value
    return value


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


_CANONICAL = frozenset(("system", "user", "assistant", "tool"))


def norm_role(role: Any) -> Any:
    """Map a source role name to the canonical vocabulary; unknown roles pass through for validation."""
    if role in _CANONICAL:
        return role
    if isinstance(role, str):
        r = role.strip().lower()
        return ROLE_ALIASES.get(r, r)
    return role


_TEXT_PART_KEYS = ("text", "content", "value", "refusal")


def text_of(content: Any, where: str) -> str:
    """Flatten string-or-parts content to text; non-text parts become a `[type]` marker."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        if "type" not in content:
            raise RecordError(
                "schema_error",
                f"{where}: content must be a string or a list of parts (got an object "
                f"with keys {', '.join(list(content)[:5])})",
            )
        content = [content]
    if isinstance(content, list):
        out = []
        for i, part in enumerate(content):
            if isinstance(part, str):
                out.append(part)
                continue
            if not isinstance(part, dict):
                raise RecordError("schema_error", f"{where}[{i}]: content part must be an object or string")
            for key in _TEXT_PART_KEYS:
                v = part.get(key)
                if isinstance(v, str):
                    out.append(v)
                    break
            else:
                out.append(f"[{part.get('type', 'part')}]")
        return "\n".join(out)
    raise RecordError(
        "schema_error", f"{where}: content must be a string or a list of parts (got {type(content).__name__})"
    )


def arguments_text(args: Any) -> str:
    """Tool-call arguments as JSON text; objects are serialized, double-encoded strings unwrapped once."""
    if args is None:
        return ""
    if isinstance(args, str):
        if args[:1] == '"':
            try:
                inner = orjson.loads(args)
            except orjson.JSONDecodeError:
                return args
            if isinstance(inner, str) and inner.lstrip()[:1] in ("{", "["):
                return inner
        return args
    return dumps(args)


def to_datetime(value: Any) -> datetime | None:
    """Parse the timestamp shapes seen in traces: ISO-8601, epoch s/ms/us/ns, OTel `[sec, nanos]`."""
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) and len(value) == 2:
        return datetime.fromtimestamp(float(value[0]) + float(value[1]) / 1e9, tz=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        v = float(value)
        for scale in (1.0, 1e3, 1e6, 1e9):
            if v / scale < 1e11:
                return datetime.fromtimestamp(v / scale, tz=UTC)
    if isinstance(value, str):
        s = value.strip()
        if s.isdigit():
            return to_datetime(int(s))
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError("schema_error", f"timestamp {value!r} is not ISO-8601 or epoch") from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)
    raise RecordError("schema_error", f"timestamp {value!r} has an unknown type")


def latency_ms(start: Any, end: Any) -> float | None:
    a, b = to_datetime(start), to_datetime(end)
    if a is None or b is None or b < a:
        return None
    return (b - a).total_seconds() * 1000.0


def as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def openai_tool_calls(calls: Any, where: str) -> list[dict[str, Any]] | None:
    """Normalize OpenAI `tool_calls` (`{id, type, function: {name, arguments}}`) to canonical calls."""
    if not calls:
        return None
    if not isinstance(calls, list):
        raise RecordError("schema_error", f"{where}: tool_calls must be a list")
    out = []
    for i, c in enumerate(calls):
        if not isinstance(c, dict):
            raise RecordError("schema_error", f"{where}[{i}]: tool call must be an object")
        fn = c.get("function") if isinstance(c.get("function"), dict) else c
        out.append({"id": c.get("id"), "name": fn.get("name"), "arguments": arguments_text(fn.get("arguments"))})
    return out


def openai_message(m: Any, where: str) -> dict[str, Any]:
    """One OpenAI chat message (any role, incl. legacy `function` and `function_call`) to canonical form."""
    if type(m) is dict and len(m) == 2 and type(m.get("content")) is str and m.get("role") in _CANONICAL:
        return {"role": m["role"], "content": m["content"]}  # the common case: a plain text turn
    if not isinstance(m, dict):
        raise RecordError("schema_error", f"{where}: message must be an object (got {type(m).__name__})")
    role = norm_role(m.get("role"))
    msg: dict[str, Any] = {"role": role, "content": text_of(m.get("content"), f"{where}.content")}
    if not msg["content"] and isinstance(m.get("refusal"), str):
        msg["content"] = m["refusal"]
    calls = openai_tool_calls(m.get("tool_calls"), f"{where}.tool_calls")
    fc = m.get("function_call")
    if isinstance(fc, dict):
        legacy = {"id": None, "name": fc.get("name"), "arguments": arguments_text(fc.get("arguments"))}
        calls = (calls or []) + [legacy]
    if calls:
        msg["tool_calls"] = calls
    if m.get("tool_call_id") is not None:
        msg["tool_call_id"] = m["tool_call_id"]
    if m.get("name") is not None:
        msg["name"] = m["name"]
    if "weight" in m:
        msg["weight"] = m["weight"]
    return msg


def openai_messages(msgs: Any, where: str) -> list[dict[str, Any]]:
    if msgs is None:
        return []
    if not isinstance(msgs, list):
        raise RecordError("schema_error", f"{where}: must be a list of messages (got {type(msgs).__name__})")
    return [openai_message(m, f"{where}[{i}]") for i, m in enumerate(msgs)]


def openai_tools(tools: Any, functions: Any = None) -> list[dict[str, Any]] | None:
    """Tool definitions in OpenAI's `{type: function, function: {...}}` shape (legacy `functions` too)."""
    tools = maybe_json(tools)
    out = [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
    if isinstance(functions, list):
        out += [{"type": "function", "function": f} for f in functions if isinstance(f, dict)]
    return out or None


_INPUT_KEYS = ("prompt_tokens", "input_tokens", "input", "promptTokens")
_OUTPUT_KEYS = ("completion_tokens", "output_tokens", "output", "completionTokens")


def usage_from(u: Any) -> dict[str, int | None]:
    """Input/output token counts from any of the usage dialects (OpenAI, Anthropic, Langfuse, LangChain)."""
    if not isinstance(u, dict):
        return {}
    out: dict[str, int | None] = {"input_tokens": None, "output_tokens": None}
    for name, keys in (("input_tokens", _INPUT_KEYS), ("output_tokens", _OUTPUT_KEYS)):
        for k in keys:
            if k in u:
                out[name] = as_int(u[k])
                break
    return out


def openai_response_messages(resp: dict[str, Any], where: str) -> tuple[list[dict[str, Any]], str | None]:
    """The assistant message and finish reason of choice 0 of an OpenAI ChatCompletion."""
    choices = resp.get("choices")
    if not isinstance(choices, list) or not choices:
        return [], None
    c0 = choices[0]
    if not isinstance(c0, dict):
        raise RecordError("schema_error", f"{where}.choices[0]: must be an object")
    msg = c0.get("message") or c0.get("delta") or {}
    return [openai_message({"role": "assistant", **msg}, f"{where}.choices[0].message")], c0.get("finish_reason")


def otel_message(m: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """An OTel GenAI `{role, parts[]}` message; `tool_call_response` parts become `tool` messages."""
    parts = m.get("parts")
    if not isinstance(parts, list):
        raise RecordError("schema_error", f"{where}.parts: must be a list")
    role = norm_role(m.get("role"))
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for j, p in enumerate(parts):
        if not isinstance(p, dict):
            raise RecordError("schema_error", f"{where}.parts[{j}]: must be an object")
        kind = p.get("type")
        if kind == "text":
            texts.append(text_of(p.get("content"), f"{where}.parts[{j}].content"))
        elif kind == "tool_call":
            calls.append(
                {"id": _strip(p.get("id")), "name": p.get("name"), "arguments": arguments_text(p.get("arguments"))}
            )
        elif kind == "tool_call_response":
            resp = p.get("response", p.get("result"))
            content = resp if isinstance(resp, str) else dumps(resp)
            out.append({"role": "tool", "tool_call_id": _strip(p.get("id")), "content": content})
        elif kind == "reasoning":
            continue
        else:
            texts.append(f"[{kind}]")
    return turn(role, texts, calls, out, m.get("name"))


def turn(
    role: Any, texts: list[str], calls: list[dict[str, Any]], results: list[dict[str, Any]], name: Any = None
) -> list[dict[str, Any]]:
    """The canonical messages of one source turn whose parts were split into text, tool calls and
    tool results: the results first (they answer the previous assistant turn), then the turn."""
    if not (texts or calls or not results):
        return results
    msg: dict[str, Any] = {"role": role, "content": "\n".join(texts)}
    if calls:
        msg["tool_calls"] = calls
    if name is not None:
        msg["name"] = name
    return [*results, msg]


def _strip(v: Any) -> Any:
    return v.strip() if isinstance(v, str) else v


def _responses_item(item: dict[str, Any], where: str) -> dict[str, Any] | None:
    """An OpenAI Responses API item (message, function_call, function_call_output)."""
    kind = item.get("type")
    if kind == "function_call":
        call = {"id": item.get("call_id"), "name": item.get("name"), "arguments": arguments_text(item.get("arguments"))}
        return {"role": "assistant", "content": "", "tool_calls": [call]}
    if kind == "function_call_output":
        out = item.get("output")
        return {
            "role": "tool",
            "tool_call_id": item.get("call_id"),
            "content": out if isinstance(out, str) else dumps(out),
        }
    if kind == "reasoning":
        return None
    return openai_message(item, where)


def messages_from_any(value: Any, default_role: str, where: str) -> tuple[list[dict[str, Any]], str | None]:
    """Messages from the many shapes observability tools store as a generation's input or output.

    Handles OpenAI message lists and ChatCompletions, `{messages: [...]}`, OTel `parts` messages,
    Responses API items, Gemini `contents`/`candidates`, single messages and plain text. Returns the
    messages and a finish reason when the value carries one."""
    value = maybe_json(value)
    if value is None:
        return [], None
    if isinstance(value, str):
        return [{"role": default_role, "content": value}], None
    if isinstance(value, dict):
        if "choices" in value:
            return openai_response_messages(value, where)
        if "output" in value and value.get("object") == "response":
            return messages_from_any(value["output"], default_role, f"{where}.output")[0], value.get("status")
        for key in ("messages", "contents", "candidates"):
            if isinstance(value.get(key), list):
                return messages_from_any(value[key], default_role, f"{where}.{key}")
        if "content" in value and isinstance(value.get("content"), dict) and "parts" in value["content"]:
            return messages_from_any([value["content"]], default_role, where)
        if "role" in value or "content" in value or "parts" in value or "type" in value:
            value = [value]
        elif "text" in value or "prompt" in value:
            return [{"role": default_role, "content": text_of(value.get("text", value.get("prompt")), where)}], None
        else:
            raise RecordError("schema_error", f"{where}: no messages found (keys: {', '.join(list(value)[:8])})")
    if not isinstance(value, list):
        raise RecordError("schema_error", f"{where}: expected messages, got {type(value).__name__}")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(value):
        w = f"{where}[{i}]"
        if isinstance(m, str):
            out.append({"role": default_role, "content": m})
        elif not isinstance(m, dict):
            raise RecordError("schema_error", f"{w}: message must be an object")
        elif (
            "parts" in m
            and isinstance(m["parts"], list)
            and all("type" in p for p in m["parts"] if isinstance(p, dict))
        ):
            out += otel_message({**m, "role": m.get("role", default_role)}, w)
        elif "parts" in m:
            texts = [p.get("text", "") for p in m["parts"] if isinstance(p, dict)]
            out.append({"role": norm_role(m.get("role", default_role)), "content": "\n".join(texts)})
        elif "content" in m and isinstance(m["content"], dict) and "parts" in m["content"]:
            out += messages_from_any([m["content"]], default_role, w)[0]
        elif m.get("type") in ("function_call", "function_call_output", "reasoning"):
            item = _responses_item(m, w)
            if item:
                out.append(item)
        else:
            if "role" not in m:
                m = {**m, "role": default_role}
            kwargs = m.get("additional_kwargs")
            if isinstance(kwargs, dict) and kwargs.get("tool_calls") and not m.get("tool_calls"):
                m = {**m, "tool_calls": kwargs["tool_calls"]}
            out.append(openai_message(m, w))
    return out, None


def each(items: list[tuple[str, Any]], fn: Any) -> list[dict[str, Any] | RecordError]:
    """Parse several records found in one source record, isolating each one's failure."""
    out: list[dict[str, Any] | RecordError] = []
    for where, item in items:
        try:
            out.append(fn(where, item))
        except RecordError as exc:
            out.append(exc)
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            out.append(RecordError("schema_error", f"{where}: {type(exc).__name__}: {exc}"))
    return out
