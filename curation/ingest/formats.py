"""The registry of source formats: how each is recognized and parsed into partial traces."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from curation.ingest.adapters import anthropic, langfuse, langsmith, openai, otel, responses, sharegpt
from curation.ingest.normalize import RecordError

Parsed = list["dict[str, Any] | RecordError"]


@dataclass(frozen=True)
class Format:
    name: str
    summary: str
    detect: Callable[[dict[str, Any]], bool]
    parse: Callable[[dict[str, Any]], Parsed]


# Detection order matters: specific shapes first, the bare `{"messages": [...]}` shape last.
FORMATS: tuple[Format, ...] = (
    Format(
        "openai_batch",
        "OpenAI Batch API input/output lines, joined on custom_id",
        lambda o: openai.detect_batch_input(o) or openai.detect_batch_output(o),
        lambda o: [],
    ),
    Format(
        "anthropic",
        "Anthropic Messages logs (request + response, content blocks, tool_use/tool_result)",
        anthropic.detect,
        anthropic.parse,
    ),
    Format(
        "openai_chat",
        "OpenAI chat-completions request/response logs (tool_calls, legacy function_call)",
        openai.detect_chat_log,
        openai.parse_chat_log,
    ),
    Format(
        "openai_responses",
        "OpenAI Responses API logs: request/response pairs, stored Response objects, input_items lists",
        responses.detect,
        responses.parse,
    ),
    Format(
        "langfuse",
        "Langfuse trace exports (each GENERATION observation is a record; scores -> feedback)",
        langfuse.detect,
        langfuse.parse,
    ),
    Format(
        "langsmith",
        "LangSmith run exports and post/patch payloads, merged by run id across lines and files (llm runs)",
        langsmith.detect,
        langsmith.parse,
    ),
    Format(
        "otel",
        "OpenTelemetry GenAI spans (gen_ai.input/output.messages, events, gen_ai.prompt.N) "
        "and OpenInference llm.input_messages.*",
        otel.detect,
        otel.parse,
    ),
    Format(
        "sharegpt",
        "ShareGPT conversations (from/value, function_call/observation turns)",
        sharegpt.detect,
        sharegpt.parse,
    ),
    Format(
        "openai_finetune",
        "OpenAI fine-tuning JSONL (messages with weight; legacy prompt/completion)",
        openai.detect_finetune,
        openai.parse_finetune,
    ),
)
BY_NAME = {f.name: f for f in FORMATS}
NAMES = tuple(BY_NAME)


def detect(obj: Any) -> Format | None:
    """The first format whose detector accepts this record, or None."""
    if not isinstance(obj, dict):
        return None
    for fmt in FORMATS:
        if fmt.detect(obj):
            return fmt
    return None


def help_text() -> str:
    return "\n".join(f"  {f.name:<16} {f.summary}" for f in FORMATS)
