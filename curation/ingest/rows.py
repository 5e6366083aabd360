"""A fast path for laying out a trace row without pydantic: plain type checks that accept only
values `schemas.trace.Trace` would accept unchanged, and the messages serialized with orjson in
the byte-identical form `TypeAdapter(list[Message]).dump_json(..., exclude_none=True)` writes
(same field order, None fields left out, same string escaping), so content hashes don't change.

Anything the checks don't accept returns None and the caller validates with pydantic, so every
error (and every coercion pydantic does in lax mode) stays exactly pydantic's. Measured on the
benchmark's OpenAI logs: pydantic validation and dumping were about half of the parse time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import xxhash

from schemas.trace import ROLES

_ROLES = frozenset(ROLES)
_MESSAGE_KEYS = frozenset(("role", "content", "name", "tool_calls", "tool_call_id", "weight"))
_CALL_KEYS = frozenset(("id", "name", "arguments"))
_MAX_EXACT_FLOAT = 2**53


def _calls(calls: Any) -> list[dict[str, Any]] | None:
    if type(calls) is not list:
        return None
    out = []
    for c in calls:
        if type(c) is not dict or not _CALL_KEYS.issuperset(c):
            return None
        cid, name, args = c.get("id"), c.get("name"), c.get("arguments", "")
        if type(name) is not str or type(args) is not str or (cid is not None and type(cid) is not str):
            return None
        out.append({"name": name, "arguments": args} if cid is None else {"id": cid, "name": name, "arguments": args})
    return out


def _message(m: Any) -> dict[str, Any] | None:
    if type(m) is not dict:
        return None
    role, content = m.get("role"), m.get("content", "")
    if type(role) is not str or role not in _ROLES or type(content) is not str:
        return None
    d = {"role": role, "content": content}
    if len(m) == 2 and "content" in m:
        return d  # the common case: a plain text turn
    if not _MESSAGE_KEYS.issuperset(m):
        return None
    name, calls, call_id, weight = m.get("name"), m.get("tool_calls"), m.get("tool_call_id"), m.get("weight")
    if name is not None:
        if type(name) is not str:
            return None
        d["name"] = name
    if calls is not None:
        if (calls := _calls(calls)) is None:
            return None
        d["tool_calls"] = calls
    if call_id is not None:
        if type(call_id) is not str:
            return None
        d["tool_call_id"] = call_id
    if weight is not None:
        if type(weight) is not int or weight not in (0, 1):
            return None
        d["weight"] = weight
    return d


def _str_keys(d: Any) -> bool:
    return type(d) is dict and all(type(k) is str for k in d)


def _latency(v: Any) -> tuple[bool, float | None]:
    if v is None:
        return True, None
    if type(v) is float and v >= 0:  # NaN fails the comparison and goes to pydantic
        return True, v
    if type(v) is int and 0 <= v <= _MAX_EXACT_FLOAT:
        return True, float(v)
    return False, None


def opt_str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


def fast_row(rec: dict[str, Any], fmt: str, file: str, line: int, raw_key: str) -> tuple[Any, ...] | None:
    """The `traces` row `parse.build_row` makes of this partial trace, or None where pydantic must decide.

    Only messages that are all dicts with a canonical role qualify, so `shapes.tool_roles` would
    return them unchanged; the other fields get the same defaults and None-filtering as `build_row`."""
    msgs = rec["messages"]
    if type(msgs) is not list:
        return None
    out = []
    for m in msgs:
        if (d := _message(m)) is None:
            return None
        out.append(d)
    source_id = opt_str(rec.get("source_id"))
    meta, usage = rec.get("metadata") or {}, rec.get("usage") or {}
    if type(meta) is not dict or type(usage) is not dict or rec.get("feedback"):
        return None
    if meta:
        meta = {k: v for k, v in meta.items() if v is not None}
        if not all(type(k) is str for k in meta):
            return None
    tokens = {"input_tokens": None, "output_tokens": None}
    for k, v in usage.items():
        if v is not None:
            if k not in tokens or type(v) is not int or v < 0:
                return None
            tokens[k] = v
    created, tags, tools = rec.get("created_at"), rec.get("tags") or [], rec.get("tools")
    if created is not None and (type(created) is not datetime or created.utcoffset() is None):
        return None
    if type(tags) is not list or (tags and not all(type(t) is str for t in tags)):
        return None
    if tools is not None and (type(tools) is not list or not all(_str_keys(t) for t in tools)):
        return None
    if type(line) is not int or line < 0 or type(file) is not str or type(fmt) is not str:
        return None
    ok, latency = _latency(rec.get("latency_ms"))
    if not ok:
        return None
    try:
        dumped = orjson.dumps(out)
    except TypeError:  # e.g. a lone surrogate: pydantic's error is the one to raise
        return None
    return (
        f"{fmt}:{source_id}" if source_id else f"{fmt}:sha:{raw_key}",
        fmt,
        file,
        line,
        xxhash.xxh3_128_hexdigest(dumped),
        opt_str(rec.get("session_id")),
        opt_str(rec.get("user_id")),
        created,
        opt_str(rec.get("model")),
        tags,
        orjson.dumps(meta, default=str).decode(),
        dumped.decode(),
        orjson.dumps(tools).decode() if tools is not None else None,
        opt_str(rec.get("finish_reason")),
        opt_str(rec.get("error")),
        latency,
        tokens["input_tokens"],
        tokens["output_tokens"],
        "[]",
        len(out),
    )
