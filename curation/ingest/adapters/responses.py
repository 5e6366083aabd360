"""OpenAI Responses API: logged request/response pairs, stored Response objects (`object: "response"`)
and `input_items` lists. Also the item decoder that the shared shape decoder uses when Responses
items or a Response object sit inside another source (Langfuse, LangSmith, OTel)."""

from __future__ import annotations

from typing import Any

from curation.ingest.adapters.openai import apply_envelope
from curation.ingest.normalize import (
    RecordError,
    arguments_text,
    dumps,
    openai_message,
    openai_tools,
    text_of,
    to_datetime,
    usage_from,
)

CALL_TYPES = frozenset(("function_call", "custom_tool_call"))
RESULT_TYPES = frozenset(("function_call_output", "custom_tool_call_output"))
# Items that carry no trainable text: reasoning, server-side tool calls, references to stored items.
SKIPPED_TYPES = frozenset(
    (
        "reasoning",
        "item_reference",
        "web_search_call",
        "file_search_call",
        "computer_call",
        "computer_call_output",
        "code_interpreter_call",
        "image_generation_call",
        "local_shell_call",
        "local_shell_call_output",
        "mcp_call",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
    )
)
ITEM_TYPES = CALL_TYPES | RESULT_TYPES | SKIPPED_TYPES | {"message"}
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def is_item(m: Any) -> bool:
    """A Responses API input/output item (anything with a known `type` other than a plain message)."""
    return isinstance(m, dict) and m.get("type") in ITEM_TYPES


def is_response(r: Any) -> bool:
    """A Response object (`object: "response"`, or an `output` list next to a `status`)."""
    return isinstance(r, dict) and (
        r.get("object") == "response" or (isinstance(r.get("output"), list) and "status" in r)
    )


def is_item_list(o: Any) -> bool:
    """`{"object": "list", "data": [items]}` as `GET /v1/responses/{id}/input_items` returns it."""
    if not isinstance(o, dict) or o.get("object") != "list" or not isinstance(o.get("data"), list):
        return False
    first = o["data"][0] if o["data"] else None
    return first is None or is_item(first) or (isinstance(first, dict) and "role" in first and "object" not in first)


def is_request(r: Any) -> bool:
    """A Responses create request: `input` (string or items), no chat `messages`."""
    return isinstance(r, dict) and isinstance(r.get("input"), str | list) and "messages" not in r


def add_item(out: list[dict[str, Any]], item: dict[str, Any], default_role: str, where: str) -> None:
    """Append one item to canonical messages: calls join the assistant turn before them, outputs become
    `tool` messages, messages keep their role; reasoning and server-side tool items are left out."""
    kind = item.get("type")
    if kind in CALL_TYPES:
        args = item.get("arguments") if kind == "function_call" else item.get("input")
        call = {
            "id": item.get("call_id") or item.get("id"),
            "name": item.get("name"),
            "arguments": arguments_text(args),
        }
        last = out[-1] if out else None
        if last is not None and last.get("role") == "assistant":
            last["tool_calls"] = [*(last.get("tool_calls") or []), call]
        else:
            out.append({"role": "assistant", "content": "", "tool_calls": [call]})
    elif kind in RESULT_TYPES:
        result = item.get("output")
        content = result if isinstance(result, str) else dumps(result)
        if isinstance(result, list):
            content = text_of(result, f"{where}.output")
        out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": content})
    elif kind not in SKIPPED_TYPES:
        out.append(openai_message({**item, "role": item.get("role") or default_role}, where))


def items_messages(items: Any, default_role: str, where: str) -> list[dict[str, Any]]:
    """Canonical messages of a Responses `input`/`output` (a string or a list of items / easy messages)."""
    if items is None:
        return []
    if isinstance(items, str):
        return [{"role": default_role, "content": items}]
    if not isinstance(items, list):
        raise RecordError("schema_error", f"{where}: must be a string or a list of items (got {type(items).__name__})")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append({"role": default_role, "content": item})
        elif not isinstance(item, dict):
            raise RecordError("schema_error", f"{where}[{i}]: item must be an object")
        else:
            add_item(out, item, default_role, f"{where}[{i}]")
    return out


def count_reasoning(items: Any) -> int:
    """How many `reasoning` items a list of Responses items holds."""
    if not isinstance(items, list):
        return 0
    return sum(1 for i in items if isinstance(i, dict) and i.get("type") == "reasoning")


def finish_reason(resp: dict[str, Any], messages: list[dict[str, Any]]) -> str | None:
    """Chat-style finish reason of a Response: incomplete for max_output_tokens -> `length`."""
    status = resp.get("status")
    if status == "incomplete":
        reason = (resp.get("incomplete_details") or {}).get("reason")
        return _INCOMPLETE.get(reason, reason or "incomplete")
    if status in ("completed", None) and messages:
        return "tool_calls" if messages[-1].get("tool_calls") else "stop"
    return None


def response_messages(resp: dict[str, Any], where: str) -> tuple[list[dict[str, Any]], str | None]:
    """The output messages and finish reason of a Response object."""
    out = items_messages(resp.get("output") or [], "assistant", f"{where}.output" if where else "output")
    return out, finish_reason(resp, out)


def request_messages(req: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """`instructions` as the system turn, then the request's `input`."""
    out = instructions_messages(req.get("instructions"), f"{where}.instructions")
    return out + items_messages(req.get("input"), "user", f"{where}.input")


def instructions_messages(instructions: Any, where: str) -> list[dict[str, Any]]:
    if not instructions:
        return []
    if isinstance(instructions, str):
        return [{"role": "system", "content": instructions}]
    return items_messages(instructions, "system", where)


def reasoning_tokens(usage: Any) -> int | None:
    """Reasoning-token count from OpenAI (Responses or chat), LangChain or Gemini usage objects."""
    if not isinstance(usage, dict):
        return None
    for details, key in (
        ("output_tokens_details", "reasoning_tokens"),
        ("completion_tokens_details", "reasoning_tokens"),
        ("output_token_details", "reasoning"),
    ):
        d = usage.get(details)
        if isinstance(d, dict) and isinstance(d.get(key), int):
            return d[key]
    for key in ("thoughtsTokenCount", "thoughts_token_count", "reasoning_tokens"):
        if isinstance(usage.get(key), int):
            return usage[key]
    return None


def error_text(resp: dict[str, Any]) -> str | None:
    """The error of a failed or cancelled Response."""
    err = resp.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err.get("code") or "error")
    if err:
        return str(err)
    if resp.get("status") in ("failed", "cancelled"):
        return f"status {resp['status']}"
    return None


def tool_defs(tools: Any) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """Function tools in the chat `{type: function, function: {...}}` shape, and the types of built-in
    tools (web_search, file_search, ...) that have no chat equivalent."""
    if not isinstance(tools, list):
        return None, []
    builtin = [str(t.get("type")) for t in tools if isinstance(t, dict) and t.get("type") not in ("function", None)]
    functions = [t for t in tools if isinstance(t, dict) and t.get("type") in ("function", None)]
    return openai_tools(functions), builtin


# ------------------------------------------------------------------------------------ format adapter


def detect(obj: dict[str, Any]) -> bool:
    if is_response(obj) or is_item_list(obj):
        return True
    resp, req = obj.get("response"), obj.get("request", obj)
    if "input_items" in obj:
        return is_response(resp) or is_item_list(obj["input_items"]) or isinstance(obj["input_items"], list)
    return is_request(req) and (is_response(resp) or (req is not obj and "error" in obj))


def _parts(obj: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, Any, str]:
    """(request, response, input items, field path of the input) of any accepted record shape."""
    if is_response(obj):
        return None, obj, None, ""
    if is_item_list(obj):
        return None, None, obj["data"], "data"
    resp = obj.get("response") if isinstance(obj.get("response"), dict) else None
    if "input_items" in obj:
        items = obj["input_items"]
        return None, resp, items.get("data") if isinstance(items, dict) else items, "input_items"
    req = obj["request"] if isinstance(obj.get("request"), dict) else obj
    return req, resp, None, "request" if req is not obj else ""


def parse(obj: dict[str, Any]) -> list[dict[str, Any]]:
    req, resp, items, path = _parts(obj)
    prefix = f"{path}." if path and req is not None else ""
    resp_path = "response" if resp is not obj else ""
    messages = instructions_messages(
        (req or {}).get("instructions") or (resp or {}).get("instructions"), f"{prefix}instructions"
    )
    if req is not None:
        inputs = items_messages(req.get("input"), "user", f"{prefix}input")
    else:
        inputs = items_messages(items, "user", path) if items is not None else []
    outputs, finish = response_messages(resp, resp_path) if resp is not None else ([], None)
    error = error_text(resp) if resp is not None else None
    if resp is None and req is None:
        raise RecordError(
            "responses_no_output",
            f"{path}: an input_items list holds only a request's input, no model output; store it with its "
            'Response object in one record ({"input_items": ..., "response": ...})',
        )
    if not outputs and not inputs:
        state = f"status {resp.get('status')}" + (f": {error}" if error and "status" not in error else "")
        where = "response.output" if resp_path else "output"
        raise RecordError(
            "responses_no_output",
            f"{where}: response {resp.get('id')} has no output items ({state}) and the record holds no input",
        )
    if req is not None and resp is None:
        err = obj.get("error")
        error = (err.get("message") or err.get("code")) if isinstance(err, dict) else (str(err) if err else None)
    tools, builtin = tool_defs((req or {}).get("tools") or (resp or {}).get("tools"))
    r = resp or {}
    usage = r.get("usage")
    meta = (req or {}).get("metadata") or r.get("metadata")
    conv = r.get("conversation") or (req or {}).get("conversation")
    rec: dict[str, Any] = {
        "source_id": r.get("id"),
        "model": r.get("model") or (req or {}).get("model"),
        "messages": messages + inputs + outputs,
        "tools": tools,
        "finish_reason": finish,
        "error": error,
        "usage": usage_from(usage),
        "created_at": to_datetime(r.get("created_at")),
        "user_id": (req or {}).get("user") or (req or {}).get("safety_identifier") or r.get("user"),
        "session_id": conv.get("id") if isinstance(conv, dict) else conv,
        "metadata": {
            "reasoning_items": count_reasoning(r.get("output")) + count_reasoning((req or {}).get("input") or items)
            or None,
            "reasoning_tokens": reasoning_tokens(usage),
            "previous_response_id": r.get("previous_response_id") or (req or {}).get("previous_response_id"),
            "status": r.get("status"),
            "builtin_tools": builtin or None,
            "request_metadata": meta if isinstance(meta, dict) and meta else None,
        },
    }
    if resp is not obj and not is_item_list(obj):
        apply_envelope(rec, obj)
    return [rec]
