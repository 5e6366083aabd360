"""What quality rules are made of: the trace as a rule sees it (`Candidate`), what rules share in a run
(`Context`), and the registry: `@rule(...)` registers a check with the reason codes it may return, and
`Rule.reason` rejects any other. The shipped rules are in `curation.filters`, which fills `RULES`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from schemas.config import FilterConfig


@dataclass
class Candidate:
    """A trace as the rules see it: redacted messages plus the trace's context and outcome."""

    trace_id: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    model: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    finish_reason: str | None = None
    error: str | None = None
    feedback: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    trimmed: int = 0

    def final_answer(self) -> str | None:
        """Content of the last assistant message, or None when there is none."""
        for m in reversed(self.messages):
            if m.get("role") == "assistant":
                return m.get("content") or ""
        return None

    def texts(self, roles: tuple[str, ...] = ("user", "assistant")) -> list[str]:
        return [m.get("content") or "" for m in self.messages if m.get("role") in roles]


class Context:
    """What the rules share in one run: compiled patterns, the schema validator, the language model."""

    def __init__(self, cfg: FilterConfig) -> None:
        self.cfg = cfg
        self.refusal = (
            re.compile("|".join(f"(?:{p})" for p in cfg.refusal_patterns), re.I) if cfg.refusal_patterns else None
        )
        self.schema = load_schema(cfg.expect_json_schema)
        self.validator = None
        if self.schema is not None:
            import jsonschema

            cls = jsonschema.validators.validator_for(self.schema)
            cls.check_schema(self.schema)
            self.validator = cls(self.schema)
        self._langid: Any = None

    def language(self, text: str) -> str:
        if self._langid is None:
            import py3langid

            self._langid = py3langid
        return str(self._langid.classify(text)[0])


def load_schema(value: dict[str, Any] | str | None) -> dict[str, Any] | None:
    """The `expect_json_schema` setting as a schema: inline mapping, or read from a JSON file."""
    if value is None or isinstance(value, dict):
        return value
    path = Path(value)
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"filter.expect_json_schema: {path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"filter.expect_json_schema: {path}: not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise ValueError(f"filter.expect_json_schema: {path}: a JSON schema must be an object")
    return schema


Check = Callable[[Candidate, Context], str | None]


class RuleError(ValueError):
    """A rule returned a reason code it did not declare."""


@dataclass(frozen=True)
class Rule:
    """One rule: its name, group, the reason codes it can return, the config keys it reads."""

    name: str
    group: str
    check: Check
    reasons: tuple[str, ...]
    keys: tuple[str, ...]
    description: str

    def reason(self, t: Candidate, ctx: Context) -> str | None:
        """The rule's verdict on `t`: None (keep) or a declared reason code (else `RuleError`)."""
        code = self.check(t, ctx)
        if code is not None and code not in self.reasons:
            raise RuleError(
                f"rule {self.name!r} returned reason {code!r}, which it does not declare "
                f"(declared: {', '.join(self.reasons)})"
            )
        return code


RULES: list[Rule] = []


def rule(
    name: str, group: str, *, reasons: tuple[str, ...], keys: tuple[str, ...] = (), doc: str, into: list[Rule] = RULES
) -> Callable[[Check], Check]:
    """Register the decorated check as rule `name` at the end of `into` (the module's `RULES`)."""

    def register(check: Check) -> Check:
        if any(r.name == name for r in into):
            raise ValueError(f"rule {name!r} is registered twice")
        unknown = [k for k in keys if k not in FilterConfig.model_fields]
        if unknown:
            raise ValueError(f"rule {name!r}: unknown filter key(s) {', '.join(unknown)}")
        into.append(Rule(name, group, check, tuple(reasons), tuple(keys), doc))
        return check

    return register
