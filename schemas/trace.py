"""The canonical trace: the one shape every ingest adapter produces."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ToolCall(_Strict):
    """One function call made by the assistant; `arguments` is JSON text as the model wrote it."""

    id: str | None = None
    name: str
    arguments: str = ""


class Message(_Strict):
    """One chat turn. `weight` 0 marks an assistant turn that is context, not a training target."""

    role: Role
    content: str = ""
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    weight: Literal[0, 1] | None = None


INT64_MAX = 2**63 - 1  # the `traces` token columns are BIGINT


class Usage(_Strict):
    input_tokens: int | None = Field(default=None, ge=0, le=INT64_MAX)
    output_tokens: int | None = Field(default=None, ge=0, le=INT64_MAX)


class Feedback(_Strict):
    """A thumbs up/down, score or label attached to the trace by a user or an evaluator."""

    name: str
    value: float | str | bool | None = None
    comment: str | None = None
    source: str | None = None


class Trace(BaseModel):
    """One logged LLM call (or conversation), normalized from any supported source format."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str = Field(min_length=1)
    source_format: str
    source_file: str
    source_line: int = Field(ge=0)
    content_hash: str
    session_id: str | None = None
    user_id: str | None = None
    created_at: AwareDatetime | None = None  # a naive timestamp is refused: traces store UTC instants
    model: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    error: str | None = None
    latency_ms: float | None = Field(default=None, ge=0)
    usage: Usage = Field(default_factory=Usage)
    feedback: list[Feedback] = Field(default_factory=list)


def field_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as `messages[2].tool_calls[0].name`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<record>"


_BOUNDARY = re.compile(r'[\s",{}\[\]]')


def cut(text: str, limit: int) -> str:
    """`text` shortened to at most `limit` characters at a word boundary: an identifier cut short (a partial
    e-mail address or key) would escape redaction, so a cut-off last word is left out."""
    if len(text) <= limit:
        return text
    ends = [m.start() for m in _BOUNDARY.finditer(text, 0, limit + 1)]
    return text[: ends[-1]] if ends else ""


def describe_errors(exc: ValidationError, limit: int = 3) -> str:
    """One line naming each failing field path and why, e.g. `messages[1].role: Input should be ...`."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        msg = err["msg"]
        if "input" in err and err["type"] not in ("missing",):
            shown = cut(repr(err["input"]), 60) or f"a {type(err['input']).__name__}"
            msg += f" (got {shown})"
        parts.append(f"{field_path(err['loc'])}: {msg}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)
