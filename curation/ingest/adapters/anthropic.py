"""Anthropic Messages API logs: top-level `system`, content blocks, tool_use / tool_result."""

from __future__ import annotations

from typing import Any

from curation.ingest.normalize import RecordError, dumps, norm_role, text_of, to_datetime, turn, usage_from


def _is_response(r: Any) -> bool:
    return isinstance(r, dict) and (r.get("type") == "message" or "stop_reason" in r) and "content" in r


def detect(obj: dict[str, Any]) -> bool:
    req = obj.get("request", obj)
    return isinstance(req, dict) and isinstance(req.get("messages"), list) and _is_response(obj.get("response"))


def _blocks(content: Any, role: str, where: str) -> list[dict[str, Any]]:
    """One Anthropic message to canonical messages: tool_result blocks become `tool` messages."""
    if isinstance(content, str) or content is None:
        return [{"role": role, "content": content or ""}]
    if not isinstance(content, list):
        raise RecordError("schema_error", f"{where}: content must be a string or a list of blocks")
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, b in enumerate(content):
        if not isinstance(b, dict):
            raise RecordError("schema_error", f"{where}[{j}]: block must be an object")
        kind = b.get("type")
        if kind == "text":
            texts.append(b.get("text", ""))
        elif kind == "tool_use":
            calls.append({"id": b.get("id"), "name": b.get("name"), "arguments": dumps(b.get("input", {}))})
        elif kind == "tool_result":
            result = {
                "role": "tool",
                "tool_call_id": b.get("tool_use_id"),
                "content": text_of(b.get("content"), f"{where}[{j}].content"),
            }
            out.append(result)
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            texts.append(f"[{kind}]")
    return turn(role, texts, calls, out)


def parse(obj: dict[str, Any]) -> list[dict[str, Any]]:
    nested = "request" in obj
    req, resp = (obj["request"] if nested else obj), obj["response"]
    prefix = "request." if nested else ""
    messages: list[dict[str, Any]] = []
    system = req.get("system")
    if system:
        messages.append({"role": "system", "content": text_of(system, f"{prefix}system")})
    for i, m in enumerate(req["messages"]):
        where = f"{prefix}messages[{i}]"
        if not isinstance(m, dict):
            raise RecordError("schema_error", f"{where}: message must be an object")
        messages += _blocks(m.get("content"), norm_role(m.get("role")), f"{where}.content")
    messages += _blocks(resp.get("content"), "assistant", "response.content")
    tools = [
        {
            "type": "function",
            "function": {
                "name": t.get("name"),
                "description": t.get("description", ""),
                "parameters": t.get("input_schema", {}),
            },
        }
        for t in req.get("tools") or []
        if isinstance(t, dict)
    ]
    rec: dict[str, Any] = {
        "source_id": resp.get("id"),
        "model": resp.get("model") or req.get("model"),
        "messages": messages,
        "tools": tools or None,
        "finish_reason": {"max_tokens": "length", "end_turn": "stop", "tool_use": "tool_calls"}.get(
            resp.get("stop_reason"), resp.get("stop_reason")
        ),
        "usage": usage_from(resp.get("usage")),
        "created_at": to_datetime(obj.get("timestamp") or obj.get("created_at")),
    }
    meta = req.get("metadata")
    if isinstance(meta, dict):
        rec["user_id"] = meta.get("user_id")
        rec["metadata"] = {"request_metadata": meta}
    if obj.get("error"):
        rec["error"] = str(obj["error"])
    return [rec]
