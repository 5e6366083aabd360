"""Each quality rule on crafted traces: one that it keeps and one that it drops with its reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from curation import filters, rule_base, tokens
from schemas.config import FilterConfig
from tracetune.cli import app

TICKET = {
    "priority": "high",
    "category": "shipping",
    "sentiment": "negative",
    "order_id": None,
    "needs_human": True,
    "summary": "Parcel not delivered after two weeks.",
}
SCHEMA = {
    "type": "object",
    "required": ["priority", "summary"],
    "properties": {"priority": {"enum": ["urgent", "high", "normal", "low"]}, "summary": {"type": "string"}},
}
USER = "My parcel has not arrived after two weeks and tracking shows nothing at all, please help me find it."
ANSWER = "I am sorry to hear that. I have opened an investigation with the carrier and will update you tomorrow."


def cand(messages: list[dict[str, Any]] | None = None, **kw: Any) -> filters.Candidate:
    msgs = (
        messages
        if messages is not None
        else [
            {"role": "system", "content": "You are a support assistant."},
            {"role": "user", "content": USER},
            {"role": "assistant", "content": ANSWER},
        ]
    )
    return filters.Candidate(trace_id=kw.pop("trace_id", "t1"), messages=msgs, **kw)


def verdict(c: filters.Candidate, **cfg: Any) -> str | None:
    settings = {"tokenizer": "approx", **cfg}
    (reason,) = filters.judge([c], FilterConfig(**settings))
    return reason


def test_a_good_trace_is_kept() -> None:
    assert verdict(cand()) is None


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([{"role": "user", "content": USER}], "no_assistant_turn"),
        ([{"role": "user", "content": "   \n"}, {"role": "assistant", "content": ANSWER}], "empty_turn"),
        ([{"role": "user", "content": USER}, {"role": "assistant", "content": ""}], "empty_turn"),
        (
            [
                {"role": "developer", "content": "x"},
                {"role": "user", "content": USER},
                {"role": "assistant", "content": ANSWER},
            ],
            "unknown_role",
        ),
    ],
)
def test_structure_rules_drop(messages: list[dict[str, Any]], reason: str) -> None:
    assert verdict(cand(messages)) == reason


def test_trailing_user_turn_is_trimmed_or_dropped() -> None:
    tail = [
        {"role": "user", "content": USER},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "Thanks! One more thing?"},
    ]
    c = cand([dict(m) for m in tail])
    assert verdict(c) is None
    assert c.messages[-1]["role"] == "assistant" and c.trimmed == 1
    assert verdict(cand([dict(m) for m in tail]), trailing_user="drop") == "ends_on_user"


def test_too_many_turns() -> None:
    turns = [{"role": r, "content": f"{USER} {i}"} for i in range(5) for r in ("user", "assistant")]
    assert verdict(cand(turns), max_turns=10) is None
    assert verdict(cand(turns), max_turns=9) == "too_many_turns"


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"error": "Rate limit reached"}, "error_trace"),
        ({"finish_reason": "length"}, "truncated"),
        ({"finish_reason": "max_tokens"}, "truncated"),
        ({"feedback": [{"name": "thumbs", "value": 0}]}, "negative_feedback"),
        ({"feedback": [{"name": "thumbs", "value": False}]}, "negative_feedback"),
        ({"feedback": [{"name": "rating", "value": "thumbs_down"}]}, "negative_feedback"),
        ({"feedback": [{"name": "quality", "value": 0.2}]}, "negative_feedback"),
    ],
)
def test_outcome_rules_drop(kw: dict[str, Any], reason: str) -> None:
    assert verdict(cand(**kw)) == reason


@pytest.mark.parametrize(
    "kw",
    [
        {"finish_reason": "stop"},
        {"feedback": [{"name": "thumbs", "value": 1}]},
        {"feedback": [{"name": "quality", "value": 0.9}]},
        {"feedback": [{"name": "comment", "value": None, "comment": "ok"}]},
    ],
)
def test_outcome_rules_keep(kw: dict[str, Any]) -> None:
    assert verdict(cand(**kw)) is None


def test_refusal_patterns_are_configurable() -> None:
    refusal = [
        {"role": "user", "content": USER},
        {"role": "assistant", "content": "I'm sorry, but I can't help with that request."},
    ]
    assert verdict(cand(refusal)) == "refusal"
    assert verdict(cand(refusal), refusal_patterns=[]) is None
    custom = [{"role": "user", "content": USER}, {"role": "assistant", "content": "POLICY_BLOCK: not allowed here"}]
    assert verdict(cand(custom), refusal_patterns=["^POLICY_BLOCK"]) == "refusal"


def test_a_bad_refusal_regex_names_the_key() -> None:
    with pytest.raises(ValueError, match="refusal_patterns"):
        FilterConfig(refusal_patterns=["(unclosed"])


def _tool_trace(arguments: str, answered: bool) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": USER},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "lookup", "arguments": arguments}]},
    ]
    if answered:
        msgs.append({"role": "tool", "tool_call_id": "c1", "content": '{"status": "in_transit"}'})
    msgs.append({"role": "assistant", "content": ANSWER})
    return msgs


def test_tool_call_rules() -> None:
    assert verdict(cand(_tool_trace('{"order": 1}', answered=True))) is None
    assert verdict(cand(_tool_trace('{"order": 1', answered=True))) == "invalid_tool_arguments"
    assert verdict(cand(_tool_trace('{"order": 1}', answered=False))) == "tool_call_without_result"
    final_call = _tool_trace('{"order": 1}', answered=False)[:2]
    assert verdict(cand(final_call)) is None  # the call itself is the answer being taught


def test_token_length_bounds() -> None:
    assert verdict(cand(), min_tokens=5, max_tokens=200) is None
    assert verdict(cand(), min_tokens=500) == "too_short"
    assert verdict(cand(), max_tokens=20) == "too_long"


def test_token_length_with_the_base_models_tokenizer() -> None:
    c = cand()
    assert verdict(c, tokenizer="base") is None
    assert 30 < c.tokens < 80  # SmolLM2's BPE on ~50 words


def test_messages_counted_once_each_give_the_counts_of_the_joined_text(tmp_path) -> None:
    from benchmarks.pii_corpus import make_texts

    texts = make_texts(200)[0]
    prompt = "You are a careful assistant. " * 40  # the long system prompt most traces repeat
    items = [[prompt, texts[k], texts[(7 * k + 3) % len(texts)]] for k in range(len(texts))]
    items += [
        ["a", "", "b"],
        ["a", "", "", "b"],
        ["x  ", "  y"],
        ["ends with a space ", "x"],
        ["\tstarts with a tab", "x"],
        ["東京", "123", "'s"],
        [""],
    ]
    for spec in ("base", "approx"):
        whole = tokens.counter(spec)(["\n".join(parts) for parts in items])
        assert tokens.joined_counter(spec)(items) == whole
    conf = json.loads(tokens._tokenizer_file("base").read_text())
    conf["normalizer"] = {"type": "Lowercase"}  # a tokenizer the sum is not proven for: whole texts are counted
    (tmp_path / "tokenizer.json").write_text(json.dumps(conf))
    assert not tokens._newline_splits(str(tmp_path))
    other = str(tmp_path / "tokenizer.json")
    assert tokens.joined_counter(other)(items) == tokens.counter(other)(["\n".join(parts) for parts in items])


def test_repetitive_assistant_text() -> None:
    loop = [{"role": "user", "content": USER}, {"role": "assistant", "content": "Let me check that for you. " * 12}]
    assert verdict(cand(loop)) == "repetitive"
    assert filters.repetition_ratio(ANSWER, 3) == 0.0


def test_language_rule() -> None:
    french = [
        {"role": "user", "content": "Bonjour, mon colis n'est jamais arrivé et le suivi ne montre rien."},
        {"role": "assistant", "content": "Je suis désolé, j'ouvre une enquête auprès du transporteur."},
    ]
    assert verdict(cand(french)) is None  # the default: any language
    assert verdict(cand(french), languages=["en"]) == "wrong_language"
    assert verdict(cand(french), languages=["en", "fr"]) is None


def test_mostly_redacted_trace() -> None:
    pii = [
        {"role": "user", "content": "<PERSON_1> <EMAIL_ADDRESS_1> <PHONE_NUMBER_1> <PERSON_2> call me"},
        {"role": "assistant", "content": "Noted <PERSON_1>."},
    ]
    assert verdict(cand(pii)) == "mostly_redacted"
    assert verdict(cand()) is None


def test_json_schema_task_rule() -> None:
    good = [{"role": "user", "content": USER}, {"role": "assistant", "content": json.dumps(TICKET)}]
    fenced = [{"role": "user", "content": USER}, {"role": "assistant", "content": "```json\n{}\n```"}]
    wrong = [
        {"role": "user", "content": USER},
        {"role": "assistant", "content": json.dumps({**TICKET, "priority": "whenever"})},
    ]
    assert verdict(cand(good), expect_json_schema=SCHEMA) is None
    assert verdict(cand(fenced), expect_json_schema=SCHEMA) == "invalid_json"
    assert verdict(cand(wrong), expect_json_schema=SCHEMA) == "schema_mismatch"
    assert verdict(cand(fenced)) is None  # no schema configured: free text is fine


def test_json_schema_from_a_file(tmp_path) -> None:
    path = tmp_path / "ticket.schema.json"
    path.write_text(json.dumps(SCHEMA))
    good = [{"role": "user", "content": USER}, {"role": "assistant", "content": json.dumps(TICKET)}]
    assert verdict(cand(good), expect_json_schema=str(path)) is None
    with pytest.raises(ValueError, match="file not found"):
        verdict(cand(good), expect_json_schema=str(tmp_path / "missing.json"))


def test_selection_rules() -> None:
    c = dict(
        model="gpt-4.1-mini",
        tags=["triage", "prod"],
        metadata={"app_version": "2.4.1", "channel": "email"},
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert (
        verdict(cand(**c), models=["gpt-4.1*"], tags=["prod"], app_versions=["2.4.*"], metadata={"channel": "email"})
        is None
    )
    assert verdict(cand(**c), models=["claude-*"]) == "model_not_selected"
    assert verdict(cand(**c), exclude_models=["*mini"]) == "model_excluded"
    assert verdict(cand(**c), tags=["beta"]) == "tag_not_selected"
    assert verdict(cand(**c), exclude_tags=["prod"]) == "tag_excluded"
    assert verdict(cand(**c), app_versions=["2.3.*"]) == "app_version_not_selected"
    assert verdict(cand(**c), metadata={"channel": "chat"}) == "metadata_mismatch"
    assert verdict(cand(**c), date_from=datetime(2026, 11, 2, tzinfo=UTC)) == "outside_date_range"
    assert verdict(cand(**c), date_to=datetime(2026, 11, 1, tzinfo=UTC)) == "outside_date_range"
    assert (
        verdict(cand(**{**c, "created_at": None}), date_from=datetime(2026, 1, 1, tzinfo=UTC)) == "outside_date_range"
    )


def test_first_reason_wins_and_rules_can_be_disabled() -> None:
    c = dict(error="boom", finish_reason="length")
    assert verdict(cand(**c)) == "error_trace"
    assert verdict(cand(**c), disabled=["error"]) == "truncated"
    with pytest.raises(ValueError, match="unknown rule"):
        verdict(cand(), disabled=["nope"])


def test_judge_gives_one_first_reason_per_candidate() -> None:
    cands = [cand(trace_id="a"), cand(trace_id="b", error="x"), cand(trace_id="c", finish_reason="length")]
    assert filters.judge(cands, FilterConfig(tokenizer="approx")) == [None, "error_trace", "truncated"]
    assert all(c.tokens > 0 for c in cands)
    assert filters.judge([], FilterConfig(tokenizer="approx")) == []


def test_rules_run_in_the_documented_order() -> None:
    assert [r.name for r in filters.RULES] == [
        *("model", "tags", "app_version", "date_range", "metadata"),
        "error",
        *("unknown_role", "no_assistant", "empty_turn", "ends_on_user", "too_many_turns"),
        *("truncated", "refusal", "negative_feedback", "tool_calls"),
        *("length", "repetition", "language", "redacted_share"),
        "json_schema",
    ]
    assert list(filters.BY_NAME) == [r.name for r in filters.RULES]


def _local_rule(code: str) -> tuple[list[rule_base.Rule], rule_base.Rule]:
    registry: list[rule_base.Rule] = []

    @rule_base.rule("odd", "task", reasons=("odd_one",), doc="a rule for this test only", into=registry)
    def odd(t: filters.Candidate, ctx: filters.Context) -> str | None:
        return code

    return registry, registry[0]


def test_an_undeclared_reason_is_a_rule_error(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [r.name for r in filters.RULES]
    ctx = filters.Context(FilterConfig(tokenizer="approx"))
    _, declared = _local_rule("odd_one")
    assert declared.reason(cand(), ctx) == "odd_one"
    registry, undeclared = _local_rule("surprise")
    assert [r.name for r in filters.RULES] == names  # registering into a local list leaves the global one alone
    with pytest.raises(rule_base.RuleError, match=r"'odd' returned reason 'surprise'.*declared: odd_one"):
        undeclared.reason(cand(), ctx)
    assert issubclass(rule_base.RuleError, ValueError)
    monkeypatch.setattr(filters, "RULES", registry)
    monkeypatch.setattr(filters, "BY_NAME", {undeclared.name: undeclared})
    with pytest.raises(rule_base.RuleError, match="surprise"):
        filters.judge([cand()], FilterConfig(tokenizer="approx"))


def test_registration_errors() -> None:
    registry, _ = _local_rule("odd_one")
    with pytest.raises(ValueError, match="registered twice"):
        rule_base.rule("odd", "task", reasons=("x",), doc="again", into=registry)(lambda t, ctx: None)
    with pytest.raises(ValueError, match="unknown filter key"):
        rule_base.rule("other", "task", reasons=("x",), keys=("no_such_key",), doc="typo", into=registry)(
            lambda t, ctx: None
        )


def test_rules_command_lists_every_rule_with_keys_and_defaults() -> None:
    result = CliRunner().invoke(app, ["rules", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["rules"]
    assert [r["rule"] for r in listed] == [r.name for r in filters.RULES]
    rules = {r["rule"]: r for r in listed}
    for r in filters.RULES:
        assert set(rules[r.name]["keys"]) == set(r.keys)
        assert rules[r.name]["reasons"] == list(r.reasons) and rules[r.name]["description"] == r.description
    assert rules["length"]["keys"] == {"tokenizer": "base", "min_tokens": 8, "max_tokens": 16384}
    assert "negative_feedback" in rules["negative_feedback"]["reasons"]
    human = CliRunner().invoke(app, ["rules"])
    assert human.exit_code == 0 and "max_repetition" in human.stdout
