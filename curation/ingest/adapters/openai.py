"""OpenAI sources: chat-completions request/response logs, Batch API input/output lines, and
fine-tuning JSONL (chat with per-message `weight`, legacy prompt/completion)."""

from __future__ import annotations

from typing import Any

from curation.ingest.normalize import (
    RecordError,
    maybe_json,
    openai_messages,
    openai_response_messages,
    openai_tools,
    to_datetime,
    usage_from,
)


def _is_chat_request(r: Any) -> bool:
    return isinstance(r, dict) and "messages" in r


def _is_chat_response(r: Any) -> bool:
    return isinstance(r, dict) and ("choices" in r or r.get("object") == "chat.completion")


def detect_chat_log(obj: dict[str, Any]) -> bool:
    req, resp = obj.get("request"), obj.get("response")
    if _is_chat_request(req) and (resp is None or _is_chat_response(resp) or "error" in obj):
        return True
    return _is_chat_request(obj) and _is_chat_response(obj.get("response"))


def chat_exchange(
    req: dict[str, Any], resp: dict[str, Any] | None, paths: tuple[str, str], error: Any = None
) -> dict[str, Any]:
    """A request/response pair to a partial trace (shared by logs, batch files, LangSmith runs).

    `paths` are the field paths of the request and the response in the source record."""
    messages = openai_messages(req.get("messages"), f"{paths[0]}messages")
    rec: dict[str, Any] = {
        "model": req.get("model"),
        "tools": openai_tools(req.get("tools"), req.get("functions")),
        "user_id": req.get("user") or req.get("safety_identifier"),
        "metadata": {"request_metadata": req["metadata"]} if isinstance(req.get("metadata"), dict) else {},
    }
    if isinstance(resp, dict):
        out, finish = openai_response_messages(resp, paths[1].rstrip("."))
        messages += out
        rec.update(
            source_id=resp.get("id"),
            model=resp.get("model") or rec["model"],
            finish_reason=finish,
            created_at=to_datetime(resp.get("created")),
            usage=usage_from(resp.get("usage")),
        )
        if isinstance(resp.get("error"), dict):
            error = resp["error"]
    if error:
        rec["error"] = error.get("message") or error.get("code") if isinstance(error, dict) else str(error)
    rec["messages"] = messages
    return rec


def parse_chat_log(obj: dict[str, Any]) -> list[dict[str, Any]]:
    nested = "request" in obj
    req = obj["request"] if nested else obj
    rec = chat_exchange(req, obj.get("response"), ("request." if nested else "", "response"), obj.get("error"))
    return [apply_envelope(rec, obj)]


def apply_envelope(rec: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """Copy what a request/response log line carries around the pair (session, user, latency, timestamp,
    metadata, tags, feedback) onto the partial trace `rec`."""
    for key in ("session_id", "user_id", "latency_ms"):
        if obj.get(key) is not None:
            rec[key] = obj[key]
    if obj.get("timestamp") is not None and rec.get("created_at") is None:
        rec["created_at"] = to_datetime(obj["timestamp"])
    if isinstance(obj.get("metadata"), dict):
        rec["metadata"] = {**rec.get("metadata", {}), **obj["metadata"]}
    if isinstance(obj.get("tags"), list):
        rec["tags"] = [str(t) for t in obj["tags"]]
    if isinstance(obj.get("feedback"), list):
        rec["feedback"] = obj["feedback"]
    return rec


def detect_batch_input(obj: dict[str, Any]) -> bool:
    return "custom_id" in obj and isinstance(obj.get("body"), dict) and "url" in obj


def detect_batch_output(obj: dict[str, Any]) -> bool:
    return "custom_id" in obj and ("response" in obj or "error" in obj) and "body" not in obj


def join_batch(inp: dict[str, Any], out: dict[str, Any]) -> list[dict[str, Any]]:
    """One Batch API request line and its output line (same `custom_id`) to a partial trace."""
    response = out.get("response") or {}
    body = response.get("body") if isinstance(response, dict) else None
    status = response.get("status_code") if isinstance(response, dict) else None
    error = out.get("error")
    if error is None and status is not None and status != 200:
        error = f"HTTP {status}"
    resp_body = body if isinstance(body, dict) else None
    rec = chat_exchange(inp["body"], resp_body, ("body.", "response.body"), error)
    rec["source_id"] = rec.get("source_id") or out.get("id")
    rec["metadata"] = {**rec.get("metadata", {}), "custom_id": out["custom_id"], "batch_request_id": out.get("id")}
    return [rec]


def detect_finetune(obj: dict[str, Any]) -> bool:
    if "prompt" in obj and "completion" in obj:
        return True
    msgs = obj.get("messages")
    return isinstance(msgs, list) and "request" not in obj and "response" not in obj


def parse_finetune(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if "messages" not in obj:
        prompt, completion = obj.get("prompt"), obj.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str):
            bad = "prompt" if not isinstance(prompt, str) else "completion"
            raise RecordError("schema_error", f"{bad}: must be a string (legacy prompt/completion row)")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        return [{"messages": messages, "metadata": {"legacy_completion": True}}]
    rec: dict[str, Any] = {
        "messages": openai_messages(obj["messages"], "messages"),
        "tools": openai_tools(obj.get("tools"), obj.get("functions")),
    }
    extra = {k: v for k, v in obj.items() if k not in ("messages", "tools", "functions")}
    if extra:
        rec["metadata"] = {k: maybe_json(v) for k, v in extra.items()}
    return [rec]
