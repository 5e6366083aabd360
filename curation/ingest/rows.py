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
_USAGE_KEYS = frozenset(("input_tokens", "output_tokens"))
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


def fast_row(fields: dict[str, Any], messages: Any) -> tuple[Any, ...] | None:
    """The `traces` row `build_row` would make of these `Trace` fields, or None where pydantic must decide."""
    out = []
    for m in messages if type(messages) is list else ():
        if (d := _message(m)) is None:
            return None
        out.append(d)
    if not out:
        return None
    created, tags, tools, usage = fields["created_at"], fields["tags"], fields["tools"], fields["usage"]
    line = fields["source_line"]
    if created is not None and (type(created) is not datetime or created.utcoffset() is None):
        return None
    if type(tags) is not list or not all(type(t) is str for t in tags):
        return None
    if tools is not None and (type(tools) is not list or not all(_str_keys(t) for t in tools)):
        return None
    if not _str_keys(fields["metadata"]) or fields["feedback"] or type(line) is not int or line < 0:
        return None
    if not _USAGE_KEYS.issuperset(usage) or not all(type(v) is int and v >= 0 for v in usage.values()):
        return None
    ok, latency = _latency(fields["latency_ms"])
    if not ok or type(fields["source_file"]) is not str or type(fields["source_format"]) is not str:
        return None
    try:
        dumped = orjson.dumps(out)
    except TypeError:  # e.g. a lone surrogate: pydantic's error is the one to raise
        return None
    return (
        fields["trace_id"],
        fields["source_format"],
        fields["source_file"],
        line,
        xxhash.xxh3_128_hexdigest(dumped),
        fields["session_id"],
        fields["user_id"],
        created,
        fields["model"],
        tags,
        orjson.dumps(fields["metadata"], default=str).decode(),
        dumped.decode(),
        orjson.dumps(tools).decode() if tools is not None else None,
        fields["finish_reason"],
        fields["error"],
        latency,
        usage.get("input_tokens"),
        usage.get("output_tokens"),
        "[]",
        len(out),
    )
