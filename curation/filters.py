"""Quality rules: each rule is a small function, registered with `@rule(...)` right above it, that
returns None (keep) or one of the reason codes it declares.

Rules run in definition order (selection, the failed-call check, structure, outcome, content,
task); `RULES` holds them in that order and `BY_NAME` by name. `judge` gives each trace the first
reason it gets (recorded in `decisions`); a reason a rule did not declare is a `RuleError`. The
registry and the trace a rule sees are in `curation.rule_base`.
`tracetune rules` prints the registry with each rule's config keys and defaults. Rules see the
redacted messages, never the originals."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

from curation import tokens
from curation.rule_base import RULES, Candidate, Context, Rule, rule
from schemas.config import FilterConfig
from schemas.trace import ROLES

PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")
_WORD = re.compile(r"\w+", re.UNICODE)
TRUNCATED = ("length", "max_tokens", "max_output_tokens")
NEGATIVE = ("down", "bad", "negative", "thumbs_down", "thumbsdown", "no")


@rule(
    "model",
    "selection",
    reasons=("model_not_selected", "model_excluded"),
    keys=("models", "exclude_models"),
    doc="keep only / drop traces of the given models",
)
def select_model(t: Candidate, ctx: Context) -> str | None:
    model = t.model or ""
    if ctx.cfg.models and not any(fnmatch.fnmatch(model, p) for p in ctx.cfg.models):
        return "model_not_selected"
    if any(fnmatch.fnmatch(model, p) for p in ctx.cfg.exclude_models):
        return "model_excluded"
    return None


@rule(
    "tags",
    "selection",
    reasons=("tag_not_selected", "tag_excluded"),
    keys=("tags", "exclude_tags"),
    doc="keep only traces with one of the tags / drop traces with any excluded tag",
)
def select_tags(t: Candidate, ctx: Context) -> str | None:
    if ctx.cfg.tags and not set(ctx.cfg.tags) & set(t.tags):
        return "tag_not_selected"
    if set(ctx.cfg.exclude_tags) & set(t.tags):
        return "tag_excluded"
    return None


@rule(
    "app_version",
    "selection",
    reasons=("app_version_not_selected",),
    keys=("app_versions",),
    doc="keep only the given metadata.app_version values",
)
def select_app_version(t: Candidate, ctx: Context) -> str | None:
    if not ctx.cfg.app_versions:
        return None
    version = str(t.metadata.get("app_version", ""))
    return None if any(fnmatch.fnmatch(version, p) for p in ctx.cfg.app_versions) else "app_version_not_selected"


@rule(
    "date_range",
    "selection",
    reasons=("outside_date_range",),
    keys=("date_from", "date_to"),
    doc="keep traces created in [date_from, date_to)",
)
def select_dates(t: Candidate, ctx: Context) -> str | None:
    lo, hi = ctx.cfg.date_from, ctx.cfg.date_to
    if lo is None and hi is None:
        return None
    if t.created_at is None or (lo and t.created_at < lo) or (hi and t.created_at >= hi):
        return "outside_date_range"
    return None


@rule(
    "metadata",
    "selection",
    reasons=("metadata_mismatch",),
    keys=("metadata",),
    doc="keep traces whose metadata has the given values",
)
def select_metadata(t: Candidate, ctx: Context) -> str | None:
    for key, want in ctx.cfg.metadata.items():
        if t.metadata.get(key) != want:
            return "metadata_mismatch"
    return None


# A failed call is reported as such, before any structural complaint about what it left behind.
@rule("error", "outcome", reasons=("error_trace",), doc="the call failed (the trace has an error)")
def error_trace(t: Candidate, ctx: Context) -> str | None:
    return "error_trace" if t.error else None


@rule(
    "unknown_role",
    "structure",
    reasons=("unknown_role",),
    doc="a message role other than system, user, assistant, tool",
)
def unknown_role(t: Candidate, ctx: Context) -> str | None:
    return "unknown_role" if any(m.get("role") not in ROLES for m in t.messages) else None


@rule("no_assistant", "structure", reasons=("no_assistant_turn",), doc="no assistant turn to learn from")
def no_assistant(t: Candidate, ctx: Context) -> str | None:
    return None if any(m.get("role") == "assistant" for m in t.messages) else "no_assistant_turn"


@rule(
    "empty_turn",
    "structure",
    reasons=("empty_turn",),
    doc="a user or assistant turn that is empty or whitespace (and has no tool call)",
)
def empty_turn(t: Candidate, ctx: Context) -> str | None:
    for m in t.messages:
        if m.get("role") in ("user", "assistant") and not (m.get("content") or "").strip() and not m.get("tool_calls"):
            return "empty_turn"
    return None


@rule(
    "ends_on_user",
    "structure",
    reasons=("ends_on_user",),
    keys=("trailing_user",),
    doc="the conversation ends after the last assistant turn (trim: cut the tail; drop: drop the trace)",
)
def ends_on_user(t: Candidate, ctx: Context) -> str | None:
    return "ends_on_user" if t.messages and t.messages[-1].get("role") != "assistant" else None


@rule(
    "too_many_turns", "structure", reasons=("too_many_turns",), keys=("max_turns",), doc="more messages than max_turns"
)
def too_many_turns(t: Candidate, ctx: Context) -> str | None:
    return "too_many_turns" if len(t.messages) > ctx.cfg.max_turns else None


@rule("truncated", "outcome", reasons=("truncated",), doc="finish_reason length / max_tokens: the answer was cut off")
def truncated(t: Candidate, ctx: Context) -> str | None:
    return "truncated" if (t.finish_reason or "").lower() in TRUNCATED else None


@rule(
    "refusal",
    "outcome",
    reasons=("refusal",),
    keys=("refusal_patterns",),
    doc="the final answer matches a refusal pattern",
)
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


@rule(
    "negative_feedback",
    "outcome",
    reasons=("negative_feedback",),
    keys=("min_feedback_score",),
    doc="thumbs down, or a numeric score below min_feedback_score",
)
def negative_feedback(t: Candidate, ctx: Context) -> str | None:
    return "negative_feedback" if any(is_negative(f, ctx.cfg.min_feedback_score) for f in t.feedback) else None


@rule(
    "tool_calls",
    "outcome",
    reasons=("invalid_tool_arguments", "tool_call_without_result"),
    doc="tool-call arguments that are not JSON, or a call never answered by a tool message",
)
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


@rule(
    "length",
    "content",
    reasons=("too_short", "too_long"),
    keys=("tokenizer", "min_tokens", "max_tokens"),
    doc="conversation token count outside [min_tokens, max_tokens]",
)
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


@rule(
    "repetition",
    "content",
    reasons=("repetitive",),
    keys=("max_repetition", "repetition_ngram"),
    doc="assistant text that loops: share of repeated word n-grams above max_repetition",
)
def repetitive(t: Candidate, ctx: Context) -> str | None:
    for text in t.texts(("assistant",)):
        if repetition_ratio(text, ctx.cfg.repetition_ngram) > ctx.cfg.max_repetition:
            return "repetitive"
    return None


@rule(
    "language",
    "content",
    reasons=("wrong_language",),
    keys=("languages", "language_min_chars"),
    doc="user/assistant text not in one of the languages (py3langid)",
)
def language(t: Candidate, ctx: Context) -> str | None:
    if not ctx.cfg.languages:
        return None
    text = PLACEHOLDER.sub(" ", " ".join(t.texts()))
    if len(text.strip()) < ctx.cfg.language_min_chars:
        return None
    return None if ctx.language(text) in ctx.cfg.languages else "wrong_language"


@rule(
    "redacted_share",
    "content",
    reasons=("mostly_redacted",),
    keys=("max_redacted_share",),
    doc="too much of the text is redaction placeholders to teach anything",
)
def redacted_share(t: Candidate, ctx: Context) -> str | None:
    text = " ".join(t.texts())
    placeholders = len(PLACEHOLDER.findall(text))
    words = len(_WORD.findall(PLACEHOLDER.sub(" ", text))) + placeholders
    return "mostly_redacted" if words and placeholders / words > ctx.cfg.max_redacted_share else None


@rule(
    "json_schema",
    "task",
    reasons=("invalid_json", "schema_mismatch"),
    keys=("expect_json_schema",),
    doc="with expect_json_schema set, the final answer must parse and validate",
)
def json_answer(t: Candidate, ctx: Context) -> str | None:
    if ctx.validator is None:
        return None
    try:
        value = json.loads(t.final_answer() or "")
    except json.JSONDecodeError:
        return "invalid_json"
    return None if ctx.validator.is_valid(value) else "schema_mismatch"


# ------------------------------------------------------------------------------------ running

BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}


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


def judge(candidates: list[Candidate], cfg: FilterConfig) -> list[str | None]:
    """First reason of each candidate (None = kept), trimming tails first when configured.

    Sets `c.trimmed` (under `trailing_user: trim`) and `c.tokens` (when the length rule runs)."""
    ctx = Context(cfg)
    rules = active_rules(cfg)
    if cfg.trailing_user == "trim":
        for c in candidates:
            c.messages, c.trimmed = trim_tail(c.messages)
    if any(r.name == "length" for r in rules):
        count = tokens.joined_counter(cfg.tokenizer)
        totals = count([[m.get("content") or "" for m in c.messages] for c in candidates])
        for c, n in zip(candidates, totals, strict=True):
            c.tokens = n
    return [next((code for r in rules if (code := r.reason(c, ctx))), None) for c in candidates]
