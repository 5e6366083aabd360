"""The canonical Trace and the YAML config: validation errors name the field path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.config import Config, ConfigError, config_hash, load_config
from schemas.trace import Trace, describe_errors
from tests.helpers import DEMO_CONFIG


def trace(**over) -> dict:
    base = {
        "trace_id": "t1",
        "source_format": "openai_chat",
        "source_file": "f.jsonl",
        "source_line": 1,
        "content_hash": "h",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
    }
    return {**base, **over}


def errors_of(data: dict) -> str:
    with pytest.raises(ValidationError) as exc:
        Trace.model_validate(data)
    return describe_errors(exc.value)


def test_valid_trace_with_tool_calls_and_feedback():
    t = Trace.model_validate(
        trace(
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            messages=[
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "w", "arguments": "{}"}]},
                {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
                {"role": "assistant", "content": "Sunny.", "weight": 1},
            ],
            feedback=[{"name": "thumbs", "value": True}],
            usage={"input_tokens": 3, "output_tokens": 1},
        )
    )
    assert t.messages[1].tool_calls[0].name == "w" and t.feedback[0].value is True


def test_errors_name_the_field_path():
    assert "messages[1].role: Input should be 'system', 'user', 'assistant' or 'tool' (got 'bot')" in errors_of(
        trace(messages=[{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}])
    )
    assert "messages[0].content: Input should be a valid string (got 5)" in errors_of(
        trace(messages=[{"role": "user", "content": 5}])
    )
    assert "messages[0].tool_calls[0].name: Field required" in errors_of(
        trace(messages=[{"role": "assistant", "tool_calls": [{"id": "x"}]}])
    )
    assert "messages[0].weight" in errors_of(trace(messages=[{"role": "assistant", "content": "a", "weight": 2}]))
    assert "usage.input_tokens" in errors_of(trace(usage={"input_tokens": -1}))
    assert "messages[0].colour: Extra inputs are not permitted" in errors_of(
        trace(messages=[{"role": "user", "content": "x", "colour": "red"}])
    )


def test_naive_timestamps_are_refused():
    assert "created_at" in errors_of(trace(created_at=datetime(2026, 1, 1)))


def test_config_defaults_and_errors(tmp_path):
    cfg = load_config()
    assert cfg == Config() and cfg.ingest.max_record_bytes == 10 * 1024 * 1024
    demo = load_config(DEMO_CONFIG)
    assert config_hash(cfg) == config_hash(Config()) != config_hash(demo)
    bad = tmp_path / "c.yaml"
    bad.write_text("ingest:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: ingest\.batch_size: Input should be greater than or equal to 1"):
        load_config(bad)
    bad.write_text("ingset:\n  batch_size: 10\n")
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'ingset' \(allowed here: ingest, curate, dedupe, redact, filter, split, export, train",
    ):
        load_config(bad)
    bad.write_text("ingest:\n  memory_limit: lots\n")
    with pytest.raises(ConfigError, match=r"ingest\.memory_limit"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
