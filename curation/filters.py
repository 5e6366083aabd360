"""Quality rules: each rule is a small function that returns None (keep) or a reason code.

Rules run in the order of `RULES` (selection, structure, outcome, content, task); the first reason
a trace gets is recorded in `decisions`. `tracetune rules` prints this table with each rule's config
keys and defaults. Rules see the redacted messages, never the originals."""

from __future__ import annotations

import fnmatch
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from curation import tokens
from curation.stats import StageStats
from schemas.config import FilterConfig
from schemas.trace import ROLES

PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")
_WORD = re.compile(r"\w+", re.UNICODE)
TRUNCATED = ("length", "max_tokens", "max_output_tokens")
NEGATIVE = ("down", "bad", "negative", "thumbs_down", "thumbsdown", "no")


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


# ------------------------------------------------------------------------------------ selection


def select_model(t: Candidate, ctx: Context) -> str | None:
    model = t.model or ""
    if ctx.cfg.models and not any(fnmatch.fnmatch(model, p) for p in ctx.cfg.models):
        return "model_not_selected"
    if any(fnmatch.fnmatch(model, p) for p in ctx.cfg.exclude_models):
        return "model_excluded"
    return None


def select_tags(t: Candidate, ctx: Context) -> str | None:
    if ctx.cfg.tags and not set(ctx.cfg.tags) & set(t.tags):
        return "tag_not_selected"
    if set(ctx.cfg.exclude_tags) & set(t.tags):
        return "tag_excluded"
    return None


def select_app_version(t: Candidate, ctx: Context) -> str | None:
    if not ctx.cfg.app_versions:
        return None
    version = str(t.metadata.get("app_version", ""))
    return None if any(fnmatch.fnmatch(version, p) for p in ctx.cfg.app_versions) else "app_version_not_selected"


def select_dates(t: Candidate, ctx: Context) -> str | None:
    lo, hi = ctx.cfg.date_from, ctx.cfg.date_to
    if lo is None and hi is None:
        return None
    if t.created_at is None or (lo and t.created_at < lo) or (hi and t.created_at >= hi):
        return "outside_date_range"
    return None


def select_metadata(t: Candidate, ctx: Context) -> str | None:
    for key, want in ctx.cfg.metadata.items():
        if t.metadata.get(key) != want:
            return "metadata_mismatch"
    return None


# ------------------------------------------------------------------------------------ structure


def unknown_role(t: Candidate, ctx: Context) -> str | None:
    return "unknown_role" if any(m.get("role") not in ROLES for m in t.messages) else None


def no_assistant(t: Candidate, ctx: Context) -> str | None:
    return None if any(m.get("role") == "assistant" for m in t.messages) else "no_assistant_turn"


def empty_turn(t: Candidate, ctx: Context) -> str | None:
    for m in t.messages:
        if m.get("role") in ("user", "assistant") and not (m.get("content") or "").strip() and not m.get("tool_calls"):
            return "empty_turn"
    return None


def ends_on_user(t: Candidate, ctx: Context) -> str | None:
    return "ends_on_user" if t.messages and t.messages[-1].get("role") != "assistant" else None


def too_many_turns(t: Candidate, ctx: Context) -> str | None:
    return "too_many_turns" if len(t.messages) > ctx.cfg.max_turns else None


# ------------------------------------------------------------------------------------ outcome


def error_trace(t: Candidate, ctx: Context) -> str | None:
    return "error_trace" if t.error else None


def truncated(t: Candidate, ctx: Context) -> str | None:
    return "truncated" if (t.finish_reason or "").lower() in TRUNCATED else None


def refusal(t: Candidate, ctx: Context) -> str | None:
    answer = t.final_answer()
    return "refusal" if ctx.refusal and answer and ctx.refusal.search(answer) else None


def is_negative(f: dict[str, Any], min_score: float) -> bool:
    """Thumbs down (false, "down", -1, or 0 on a thumbs/binary feedback) or a score below `min_score`."""
    v = f.get("value")
    if isinstance(v, bool):
        return not v
    if isinstance(v, int | float):
        return v < min_score
    return isinstance(v, str) and v.strip().lower() in NEGATIVE


def negative_feedback(t: Candidate, ctx: Context) -> str | None:
    return "negative_feedback" if any(is_negative(f, ctx.cfg.min_feedback_score) for f in t.feedback) else None


def tool_calls(t: Candidate, ctx: Context) -> str | None:
    answered = {m.get("tool_call_id") for m in t.messages if m.get("role") == "tool"}
    last = len(t.messages) - 1
    for i, m in enumerate(t.messages):
        for call in m.get("tool_calls") or []:
            try:
                json.loads(call.get("arguments") or "{}")
            except json.JSONDecodeError:
                return "invalid_tool_arguments"
            if i < last and call.get("id") and call["id"] not in answered:
                return "tool_call_without_result"
    return None


# ------------------------------------------------------------------------------------ content


def token_length(t: Candidate, ctx: Context) -> str | None:
    if t.tokens < ctx.cfg.min_tokens:
        return "too_short"
    if t.tokens > ctx.cfg.max_tokens:
        return "too_long"
    return None


def repetition_ratio(text: str, n: int) -> float:
    """Share of word n-grams that repeat an earlier n-gram of the same text (0 = no loop)."""
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 10:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def repetitive(t: Candidate, ctx: Context) -> str | None:
    for text in t.texts(("assistant",)):
        if repetition_ratio(text, ctx.cfg.repetition_ngram) > ctx.cfg.max_repetition:
            return "repetitive"
    return None


def language(t: Candidate, ctx: Context) -> str | None:
    if not ctx.cfg.languages:
        return None
    text = PLACEHOLDER.sub(" ", " ".join(t.texts()))
    if len(text.strip()) < ctx.cfg.language_min_chars:
        return None
    return None if ctx.language(text) in ctx.cfg.languages else "wrong_language"


def redacted_share(t: Candidate, ctx: Context) -> str | None:
    text = " ".join(t.texts())
    placeholders = len(PLACEHOLDER.findall(text))
    words = len(_WORD.findall(PLACEHOLDER.sub(" ", text))) + placeholders
    return "mostly_redacted" if words and placeholders / words > ctx.cfg.max_redacted_share else None


# ------------------------------------------------------------------------------------ task


def json_answer(t: Candidate, ctx: Context) -> str | None:
    if ctx.validator is None:
        return None
    try:
        value = json.loads(t.final_answer() or "")
    except json.JSONDecodeError:
        return "invalid_json"
    return None if ctx.validator.is_valid(value) else "schema_mismatch"


@dataclass(frozen=True)
class Rule:
    """One rule: its name, group, the reason codes it can return, the config keys it reads."""

    name: str
    group: str
    check: Callable[[Candidate, Context], str | None]
    reasons: tuple[str, ...]
    keys: tuple[str, ...]
    description: str


RULES: tuple[Rule, ...] = (
    Rule(
        "model",
        "selection",
        select_model,
        ("model_not_selected", "model_excluded"),
        ("models", "exclude_models"),
        "keep only / drop traces of the given models",
    ),
    Rule(
        "tags",
        "selection",
        select_tags,
        ("tag_not_selected", "tag_excluded"),
        ("tags", "exclude_tags"),
        "keep only traces with one of the tags / drop traces with any excluded tag",
    ),
    Rule(
        "app_version",
        "selection",
        select_app_version,
        ("app_version_not_selected",),
        ("app_versions",),
        "keep only the given metadata.app_version values",
    ),
    Rule(
        "date_range",
        "selection",
        select_dates,
        ("outside_date_range",),
        ("date_from", "date_to"),
        "keep traces created in [date_from, date_to)",
    ),
    Rule(
        "metadata",
        "selection",
        select_metadata,
        ("metadata_mismatch",),
        ("metadata",),
        "keep traces whose metadata has the given values",
    ),
    Rule("error", "outcome", error_trace, ("error_trace",), (), "the call failed (the trace has an error)"),
    Rule(
        "unknown_role",
        "structure",
        unknown_role,
        ("unknown_role",),
        (),
        "a message role other than system, user, assistant, tool",
    ),
    Rule("no_assistant", "structure", no_assistant, ("no_assistant_turn",), (), "no assistant turn to learn from"),
    Rule(
        "empty_turn",
        "structure",
        empty_turn,
        ("empty_turn",),
        (),
        "a user or assistant turn that is empty or whitespace (and has no tool call)",
    ),
    Rule(
        "ends_on_user",
        "structure",
        ends_on_user,
        ("ends_on_user",),
        ("trailing_user",),
        "the conversation ends after the last assistant turn (trim: cut the tail; drop: drop the trace)",
    ),
    Rule(
        "too_many_turns",
        "structure",
        too_many_turns,
        ("too_many_turns",),
        ("max_turns",),
        "more messages than max_turns",
    ),
    Rule(
        "truncated",
        "outcome",
        truncated,
        ("truncated",),
        (),
        "finish_reason length / max_tokens: the answer was cut off",
    ),
    Rule(
        "refusal", "outcome", refusal, ("refusal",), ("refusal_patterns",), "the final answer matches a refusal pattern"
    ),
    Rule(
        "negative_feedback",
        "outcome",
        negative_feedback,
        ("negative_feedback",),
        ("min_feedback_score",),
        "thumbs down, or a numeric score below min_feedback_score",
    ),
    Rule(
        "tool_calls",
        "outcome",
        tool_calls,
        ("invalid_tool_arguments", "tool_call_without_result"),
        (),
        "tool-call arguments that are not JSON, or a call never answered by a tool message",
    ),
    Rule(
        "length",
        "content",
        token_length,
        ("too_short", "too_long"),
        ("tokenizer", "min_tokens", "max_tokens"),
        "conversation token count outside [min_tokens, max_tokens]",
    ),
    Rule(
        "repetition",
        "content",
        repetitive,
        ("repetitive",),
        ("max_repetition", "repetition_ngram"),
        "assistant text that loops: share of repeated word n-grams above max_repetition",
    ),
    Rule(
        "language",
        "content",
        language,
        ("wrong_language",),
        ("languages", "language_min_chars"),
        "user/assistant text not in one of the languages (py3langid)",
    ),
    Rule(
        "redacted_share",
        "content",
        redacted_share,
        ("mostly_redacted",),
        ("max_redacted_share",),
        "too much of the text is redaction placeholders to teach anything",
    ),
    Rule(
        "json_schema",
        "task",
        json_answer,
        ("invalid_json", "schema_mismatch"),
        ("expect_json_schema",),
        "with expect_json_schema set, the final answer must parse and validate",
    ),
)
BY_NAME = {r.name: r for r in RULES}


def active_rules(cfg: FilterConfig) -> list[Rule]:
    """The rules that run under `cfg` (unknown names in `disabled` are an error naming the known ones)."""
    unknown = sorted(set(cfg.disabled) - set(BY_NAME))
    if unknown:
        raise ValueError(f"filter.disabled: unknown rule(s) {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    rules = [r for r in RULES if r.name not in cfg.disabled]
    if cfg.trailing_user == "trim":
        rules = [r for r in rules if r.name != "ends_on_user"]
    return rules


def trim_tail(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Cut the messages after the last assistant turn; returns (messages, number cut)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "assistant":
            return messages[: i + 1], len(messages) - i - 1
    return messages, 0


@dataclass
class FilterStats(StageStats):
    """Counts of one filter run: traces = kept + dropped; `reasons` counts first reasons."""

    traces: int = 0
    kept: int = 0
    dropped: int = 0
    trimmed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def apply(candidates: list[Candidate], cfg: FilterConfig) -> tuple[list[tuple[Candidate, str | None]], FilterStats]:
    """Run the active rules over the candidates (trimming tails first when configured);
    returns each candidate with its first reason (None = kept) and the counts."""
    started = time.perf_counter()
    ctx = Context(cfg)
    rules = active_rules(cfg)
    stats = FilterStats(traces=len(candidates))
    if cfg.trailing_user == "trim":
        for c in candidates:
            c.messages, c.trimmed = trim_tail(c.messages)
            stats.trimmed += c.trimmed > 0
    if "length" not in cfg.disabled:
        count = tokens.counter(cfg.tokenizer)
        totals = count(["\n".join(m.get("content") or "" for m in c.messages) for c in candidates])
        for c, n in zip(candidates, totals, strict=True):
            c.tokens = n
    out: list[tuple[Candidate, str | None]] = []
    for c in candidates:
        reason = next((r for rule in rules if (r := rule.check(c, ctx))), None)
        out.append((c, reason))
        if reason:
            stats.reasons[reason] += 1
    stats.dropped = sum(stats.reasons.values())
    stats.kept = stats.traces - stats.dropped
    stats.seconds = time.perf_counter() - started
    return out, stats
