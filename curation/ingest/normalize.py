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


def to_json(value: Any, where: str, sort_keys: bool = False) -> bytes:
    """orjson's JSON of a decoded value; RecordError (`schema_error` naming `where`) for what orjson cannot
    write: nesting deeper than 255 levels, an integer beyond 64 bits (a JSON array item can hold both)."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError as exc:
        raise RecordError("schema_error", f"{where}: cannot be stored as JSON ({exc})") from None


_CANONICAL = frozenset(("system", "user", "assistant", "tool"))


def norm_role(role: Any) -> Any:
    """Map a source role name to the canonical vocabulary; unknown roles pass through for validation."""
    if role in _CANONICAL:
        return role
    if isinstance(role, str):
        r = role.strip().lower()
        return ROLE_ALIASES.get(r, r if r in _CANONICAL else role.strip())
    return role


_TEXT_PART_KEYS = ("text", "content", "value", "refusal")
_REASONING_PARTS = frozenset(("reasoning", "thinking", "redacted_thinking"))


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
            if part.get("type") in _REASONING_PARTS or part.get("kind") in _REASONING_PARTS:
                continue  # model reasoning is not trained text
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
    try:
        return _to_datetime(value)
    except (OverflowError, OSError, ValueError) as exc:  # out of datetime's range, `[sec, nanos]` not numbers
        raise RecordError("schema_error", f"timestamp {value!r:.60} is not a valid time ({exc})") from None


def _to_datetime(value: Any) -> datetime | None:
    if type(value) is int and 0 <= value < 100_000_000_000:  # the common case: epoch seconds
        return datetime.fromtimestamp(value, tz=UTC)
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
            return _to_datetime(int(s))
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
    out = []
    for i, m in enumerate(msgs):
        if type(m) is dict and len(m) == 2 and type(m.get("content")) is str and m.get("role") in _CANONICAL:
            out.append({"role": m["role"], "content": m["content"]})  # openai_message's common case, inlined
        else:
            out.append(openai_message(m, f"{where}[{i}]"))
    return out


def openai_tools(tools: Any, functions: Any = None) -> list[dict[str, Any]] | None:
    """Tool definitions in OpenAI's `{type: function, function: {...}}` shape (legacy `functions` too)."""
    tools = maybe_json(tools)
    out = [_chat_tool(t) for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
    if isinstance(functions, list):
        out += [{"type": "function", "function": f} for f in functions if isinstance(f, dict)]
    return out or None


def _chat_tool(t: dict[str, Any]) -> dict[str, Any]:
    """A Responses-style flat function tool (`{type, name, parameters}`) in the chat `{type, function}` shape."""
    if t.get("type") != "function" or "function" in t or "name" not in t:
        return t
    keys = ("name", "description", "parameters", "strict")
    return {"type": "function", "function": {k: t[k] for k in keys if t.get(k) is not None}}


_INPUT_KEYS = ("prompt_tokens", "input_tokens", "input", "promptTokens", "promptTokenCount", "prompt_token_count")
_OUTPUT_KEYS = (
    "completion_tokens",
    "output_tokens",
    "output",
    "completionTokens",
    "candidatesTokenCount",
    "candidates_token_count",
)


def usage_from(u: Any) -> dict[str, int | None]:
    """Input/output token counts from any of the usage dialects (OpenAI, Anthropic, Langfuse, LangChain, Gemini)."""
    if type(u) is dict and "prompt_tokens" in u and "completion_tokens" in u:  # OpenAI's, first in both lists
        return {"input_tokens": as_int(u["prompt_tokens"]), "output_tokens": as_int(u["completion_tokens"])}
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
