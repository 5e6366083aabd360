"""Builders for small trace files used across tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SYSTEM = "You are the triage assistant of an outdoor gear shop. Answer with one JSON ticket."


def chat_log(
    rid: str,
    messages: list[dict[str, Any]],
    answer: str | None,
    *,
    session: str | None = None,
    created: int = 1790000000,
    feedback: int | None = None,
    tool_calls: list | None = None,
) -> dict:
    """One OpenAI request/response log line."""
    msg: dict[str, Any] = {"role": "assistant", "content": answer}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    rec: dict[str, Any] = {
        "request": {"model": "gpt-4.1", "messages": messages},
        "response": {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": "gpt-4.1",
            "choices": [{"index": 0, "finish_reason": "tool_calls" if tool_calls else "stop", "message": msg}],
        },
    }
    if session:
        rec["session_id"] = session
    if feedback is not None:
        rec["feedback"] = [{"name": "thumbs", "value": feedback}]
    return rec


def convo(user: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
