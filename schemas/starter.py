"""The commented starter config that `tracetune init` writes: generated from the pydantic schema
(every key, its default and its description), so it cannot drift from the defaults that run."""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel

from schemas.config import Config

HEADER = """\
# tracetune configuration. Every key below is at its default: this file loads to exactly the
# configuration that runs without --config. Edit what your app needs; unknown keys and bad values
# are errors that name the key. `tracetune config show --config FILE` prints the effective config
# and its hash; `tracetune rules` lists the quality rules (section filter:).
"""

RECIPES = """\
# ---------------------------------------------------------------------------------------------
# Recipes for the usual fine-tuning goals. Fine-tuning teaches how to respond (format, tone, task
# behaviour), not what to know. Uncomment and merge into the sections above.
#
# Structured JSON output with a schema: keep only traces whose final answer parses and validates,
# and require the adapter to beat the base model on it.
#   filter:
#     expect_json_schema: schemas/answer.schema.json   # or the schema inline as a mapping
#   evaluate:
#     required_gains: {json_parse: 0.05, field_accuracy: 0.05}
#
# Replacing a long production prompt: train on a short prompt so the behaviour moves into the weights.
#   export:
#     system_prompt: replace
#     system_prompt_text: "Answer as the support assistant of ACME."
#
# Tool use: keep traces whose tool calls have valid JSON arguments and an answer (rule tool_calls, on by
# default); tool definitions go into each row's `tools`. Agent prompts are long: give training room.
#   filter:
#     max_turns: 128
#   train:
#     max_length: 4096
#
# One language: drop conversations in other languages (ISO 639-1 codes).
#   filter:
#     languages: [fr]
#
# Your own identifiers and names: redact customer ids, never redact your company's own names.
#   redact:
#     custom_entities: {ORDER_ID: '\\bORD-\\d{8}\\b'}
#     allowlist: [ACME, support@acme.example]
#
# Only production traffic of one model and release:
#   filter:
#     models: ["gpt-4.1*"]
#     app_versions: ["2.*"]
#     exclude_tags: [test, internal]
#
# Production, unattended (the pipeline-nightly deployment): a reviewer approves each new dataset
# version before it is trained (Prefect UI form or `tracetune review approve N`), and a version is
# trained only with enough rows, and enough new ones since the last trained version.
#   pipeline:
#     inbox: data/inbox
#     require_approval: true
#     min_train_rows: 200
#     min_new_rows: 50
"""


def _yaml_value(value: Any) -> str:
    """One YAML value on one line (flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _section(name: str, model: BaseModel) -> list[str]:
    lines = [f"# {type(model).__doc__ or name}".rstrip(), f"{name}:"]
    dumped = model.model_dump(mode="json")
    for key, field in type(model).model_fields.items():
        value = dumped[key]
        choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else ()
        comment = [field.description] if field.description else []
        if choices:
            comment.append(f"(one of: {' | '.join(map(str, choices))})")
        if comment:
            lines.append(f"  # {' '.join(comment)}")
        if isinstance(value, list) and value and len(_yaml_value(value)) > 100:
            lines.append(f"  {key}:")
            lines += [f"    - {_yaml_value(item)}" for item in value]
        else:
            lines.append(f"  {key}: {_yaml_value(value)}")
    return lines


def starter_yaml() -> str:
    """The whole starter config: the header, every section at its defaults, the recipes."""
    config = Config()
    lines = [HEADER]
    for name in type(config).model_fields:
        lines += [*_section(name, getattr(config, name)), ""]
    return "\n".join(lines) + RECIPES
