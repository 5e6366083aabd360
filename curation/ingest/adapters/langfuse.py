"""Langfuse exports: `{trace, observations}` downloads, `{observations, scores}` server downloads,
traces with inline observations, and observation rows from table exports. Each GENERATION
observation becomes one record, linked to its trace and session; scores become feedback."""

from __future__ import annotations

from typing import Any

from curation.ingest.normalize import (
    RecordError,
    each,
    latency_ms,
    maybe_json,
    openai_tools,
    to_datetime,
    usage_from,
)
from curation.ingest.shapes import exchange


def _is_observation(o: Any) -> bool:
    return isinstance(o, dict) and "traceId" in o and "type" in o and ("startTime" in o or "input" in o)


def detect(obj: dict[str, Any]) -> bool:
    if isinstance(obj.get("observations"), list):
        return isinstance(obj.get("trace"), dict) or "scores" in obj or "sessionId" in obj or "projectId" in obj
    return _is_observation(obj)


def split(obj: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], list[Any]]:
    """(trace, observations, scores) of any Langfuse export shape."""
    if _is_observation(obj):
        return {}, [obj], []
    trace = obj.get("trace") if isinstance(obj.get("trace"), dict) else obj
    scores = list(obj.get("scores") or []) + list(trace.get("scores") or [] if trace is not obj else [])
    return trace, list(obj.get("observations") or []), scores


def generations(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The GENERATION observations of an export, with their field path in the record."""
    _, observations, _ = split(obj)
    prefix = "" if _is_observation(obj) else "observations"
    return [
        (f"{prefix}[{i}]" if prefix else "<record>", o)
        for i, o in enumerate(observations)
        if isinstance(o, dict) and o.get("type") == "GENERATION"
    ]


def _feedback(scores: list[Any], trace_id: Any, obs_id: Any) -> list[dict[str, Any]]:
    out = []
    for s in scores:
        if not isinstance(s, dict) or s.get("observationId") not in (None, obs_id):
            continue
        if s.get("traceId") not in (None, trace_id):
            continue
        value = s.get("value") if s.get("stringValue") is None else s.get("stringValue")
        if s.get("dataType") == "BOOLEAN" and isinstance(value, int | float):
            value = bool(value)
        out.append(
            {
                "name": str(s.get("name", "score")),
                "value": value,
                "comment": s.get("comment"),
                "source": s.get("source"),
            }
        )
    return out


def parse_generation(obj: dict[str, Any], where: str, o: dict[str, Any]) -> dict[str, Any]:
    trace, _, scores = split(obj)
    messages, finish, info = exchange(o.get("input"), o.get("output"), f"{where}.input", f"{where}.output")
    meta = maybe_json(o.get("metadata"))
    params = maybe_json(o.get("modelParameters"))
    metadata: dict[str, Any] = {
        "langfuse_trace_id": o.get("traceId") or trace.get("id"),
        "observation_name": o.get("name"),
        "trace_name": trace.get("name") or o.get("traceName"),
        "release": trace.get("release") or o.get("release"),
        "environment": o.get("environment") or trace.get("environment"),
    }
    if isinstance(meta, dict):
        metadata["observation_metadata"] = meta
    if isinstance(trace.get("metadata"), dict):
        metadata["trace_metadata"] = trace["metadata"]
    if isinstance(params, dict):
        metadata["model_parameters"] = params
    metadata["reasoning_items"] = info.get("reasoning_items")
    metadata["reasoning_tokens"] = info.get("reasoning_tokens")
    if o.get("level") == "ERROR" and not o.get("statusMessage"):
        error = "level ERROR"
    else:
        error = o.get("statusMessage") if o.get("level") in ("ERROR", "WARNING") else None
    if isinstance(params, dict) and finish is None:
        finish = params.get("finish_reason")
    fin = (meta or {}).get("finish_reason") if isinstance(meta, dict) else None
    usage = usage_from(
        o.get("usageDetails") or o.get("usage") or {"input": o.get("inputUsage"), "output": o.get("outputUsage")}
    )
    if not any(usage.values()):
        usage = info.get("usage") or usage
    return {
        "where": where,
        "source_id": o.get("id"),
        "session_id": trace.get("sessionId") or o.get("sessionId"),
        "user_id": trace.get("userId") or o.get("userId"),
        "created_at": to_datetime(o.get("startTime") or trace.get("timestamp")),
        "model": o.get("model") or o.get("providedModelName") or info.get("model"),
        "tags": [str(t) for t in (trace.get("tags") or o.get("tags") or [])],
        "metadata": {k: v for k, v in metadata.items() if v is not None},
        "messages": messages,
        "tools": openai_tools(o.get("toolDefinitions")) or info.get("tools"),
        "finish_reason": finish or fin,
        "error": error or info.get("error"),
        "latency_ms": latency_ms(o.get("startTime"), o.get("endTime")),
        "usage": usage,
        "feedback": _feedback(scores, o.get("traceId") or trace.get("id"), o.get("id")),
    }


def parse(obj: dict[str, Any]) -> list[dict[str, Any] | RecordError]:
    gens = generations(obj)
    if not gens:
        kinds = sorted({str(o.get("type")) for o in split(obj)[1] if isinstance(o, dict)})
        raise RecordError(
            "no_messages", f"observations: no GENERATION observation (types: {', '.join(kinds) or 'none'})"
        )
    return each(gens, lambda where, o: parse_generation(obj, where, o))
