"""ShareGPT conversations (FastChat / LLaMA-Factory), including function_call/observation turns."""

from __future__ import annotations

from typing import Any

import orjson

from curation.ingest.normalize import RecordError, maybe_json, norm_role, openai_tools


def detect(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("conversations"), list)


def _function_call(value: str, where: str) -> dict[str, Any]:
    """LLaMA-Factory writes a function_call turn as JSON `{"name", "arguments"}` (or a list of them)."""
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise RecordError("schema_error", f"{where}: function_call turn is not JSON") from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    out = []
    for c in calls:
        if not isinstance(c, dict):
            raise RecordError("schema_error", f"{where}: function_call must be an object with a name")
        args = c.get("arguments")
        out.append(
            {
                "id": None,
                "name": c.get("name"),
                "arguments": args if isinstance(args, str) else orjson.dumps(args).decode(),
            }
        )
    return {"role": "assistant", "content": "", "tool_calls": out}


def parse(obj: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if isinstance(obj.get("system"), str) and obj["system"]:
        messages.append({"role": "system", "content": obj["system"]})
    for i, turn in enumerate(obj["conversations"]):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise RecordError("schema_error", f"{where}: turn must be an object with 'from' and 'value'")
        source_role = turn.get("from", turn.get("role"))
        value = turn.get("value", turn.get("content"))
        if not isinstance(value, str):
            raise RecordError("schema_error", f"{where}.value: must be a string (got {type(value).__name__})")
        if source_role == "function_call":
            messages.append(_function_call(value, f"{where}.value"))
            continue
        messages.append({"role": norm_role(source_role), "content": value})
    rec: dict[str, Any] = {"messages": messages, "tools": openai_tools(_as_openai_tools(obj.get("tools")))}
    meta = {k: maybe_json(v) for k, v in obj.items() if k not in ("conversations", "system", "tools")}
    if meta:
        rec["metadata"] = meta
    return [rec]


def _as_openai_tools(tools: Any) -> Any:
    tools = maybe_json(tools)
    if isinstance(tools, list):
        return [t if "function" in t else {"type": "function", "function": t} for t in tools if isinstance(t, dict)]
    return None
