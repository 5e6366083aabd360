"""Which texts of a trace end up in an export: what redaction scans and the leak gate checks."""

from __future__ import annotations

from typing import Any

import orjson


def exported_fields(messages: list[dict[str, Any]], tools: Any) -> list[tuple[int, str, str]]:
    """(message index, field name, text) of every exported text of a trace: message contents,
    names, tool-call function names and arguments, and the tool definitions (message index -1)."""
    out = []
    for i, m in enumerate(messages):
        out.append((i, "content", m.get("content", "")))
        if m.get("name"):
            out.append((i, "name", m["name"]))
        for j, c in enumerate(m.get("tool_calls") or []):
            if c.get("name"):
                out.append((i, f"tool_calls[{j}].name", c["name"]))
            out.append((i, f"tool_calls[{j}].arguments", c.get("arguments", "")))
    if tools:
        out.append((-1, "tools", orjson.dumps(tools).decode()))
    return out
