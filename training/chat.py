"""Chat rendering and loss masks that work with any chat template.

A row is rendered with the tokenizer's own template. The trainable tokens are found from character spans:
rendering the messages before assistant turn i with the generation prompt gives the text where turn i starts,
rendering up to and including turn i gives where it ends (templates must keep earlier turns unchanged, which is
checked). The span is the assistant content plus the template's end-of-turn marker (so the model learns to stop),
without trailing whitespace; tokens are mapped to spans with the fast tokenizer's offsets. Turns with `weight: 0`
get no span. Templates that do not render tool calls, tool results or tool definitions get them as text.
Evaluation reuses `prepare_messages`, `encode_row` and `prompt_text` so teacher-forced loss uses the same masks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


class RowError(ValueError):
    """A dataset row that cannot be rendered for training; the message names the file, row and key."""


@dataclass
class Encoded:
    """One tokenized row: ids, labels (-100 where no loss) and what happened to it."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def trainable(self) -> int:
        return sum(1 for x in self.labels if x != -100)


@dataclass
class EncodeStats:
    """Counts for one split: nothing is dropped without being counted here."""

    rows: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_truncated: int = 0
    no_trainable: int = 0
    tokens: int = 0
    trainable_tokens: int = 0
    max_row_tokens: int = 0
    dropped_rows: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "dropped_rows"}
        d["dropped_rows"] = self.dropped_rows[:50]
        return d


def _template(tokenizer: Any) -> str:
    t = tokenizer.chat_template
    return t if isinstance(t, str) else json.dumps(t)


def template_features(tokenizer: Any) -> dict[str, bool]:
    """Which tool features the chat template renders itself."""
    t = _template(tokenizer)
    return {"tool_calls": "tool_calls" in t, "tools": "tools" in t.replace("tool_calls", "")}


def _tool_call_text(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    args = fn.get("arguments", "{}")
    try:
        args_obj = json.loads(args) if isinstance(args, str) else args
    except json.JSONDecodeError:
        args_obj = args
    return (
        "<tool_call>\n"
        + json.dumps({"name": fn.get("name"), "arguments": args_obj}, ensure_ascii=False)
        + ("\n</tool_call>")
    )


def prepare_messages(
    row: dict[str, Any], tokenizer: Any, where: str = "row"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, list[bool]]:
    """Validate one dataset row and turn it into messages the template can render.

    Returns (messages, tools-for-the-template, trainable flag per message). Legacy `{prompt, completion}` rows
    become one user and one assistant turn. Raises `RowError` naming `where` and the key."""
    if not isinstance(row, dict):
        raise RowError(f"{where}: not a JSON object")
    if "messages" not in row:
        if "prompt" in row and "completion" in row:
            row = {
                "messages": [
                    {"role": "user", "content": row["prompt"]},
                    {"role": "assistant", "content": row["completion"]},
                ]
            }
        else:
            raise RowError(f"{where}: no 'messages' key (nor legacy 'prompt'/'completion')")
    msgs = row["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise RowError(f"{where}: 'messages' must be a non-empty list")
    feats = template_features(tokenizer)
    tools = row.get("tools")
    out: list[dict[str, Any]] = []
    flags: list[bool] = []
    for i, m in enumerate(msgs):
        key = f"{where}: messages[{i}]"
        if not isinstance(m, dict):
            raise RowError(f"{key}: not an object")
        role = m.get("role")
        if role not in ROLES:
            raise RowError(f"{key}.role: {role!r} is not one of {', '.join(ROLES)}")
        content = m.get("content")
        if content is None:
            content = ""
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise RowError(f"{key}.content: must be a string")
        weight = m.get("weight", 1)
        if weight not in (0, 1):
            raise RowError(f"{key}.weight: must be 0 or 1, got {weight!r}")
        if weight == 0 and role != "assistant":
            raise RowError(f"{key}.weight: only assistant messages carry a weight")
        calls = m.get("tool_calls") or []
        new: dict[str, Any] = {"role": role, "content": content}
        if calls:
            if role != "assistant":
                raise RowError(f"{key}.tool_calls: only assistant messages make tool calls")
            if feats["tool_calls"]:
                new["tool_calls"] = calls
            else:
                text = "\n".join(_tool_call_text(c) for c in calls)
                new["content"] = f"{content}\n{text}" if content else text
        if role == "tool":
            if feats["tool_calls"]:
                if m.get("tool_call_id"):
                    new["tool_call_id"] = m["tool_call_id"]
            else:
                new["content"] = f"<tool_response>\n{content}\n</tool_response>"
        if m.get("name") and role != "tool":
            new["name"] = m["name"]
        out.append(new)
        flags.append(role == "assistant" and weight != 0)
    if not any(m["role"] == "assistant" for m in out):
        raise RowError(f"{where}: no assistant message (nothing to learn from)")
    if tools and not feats["tools"]:
        listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        text = f"You may call these tools:\n<tools>\n{listing}\n</tools>"
        if out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{text}"}
        else:
            out.insert(0, {"role": "system", "content": text})
            flags.insert(0, False)
        tools = None
    return out, tools, flags


def _render(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, gen: bool, where: str) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=gen)
    except Exception as exc:
        roles = sorted({m["role"] for m in messages})
        raise RowError(
            f"{where}: the chat template cannot render this conversation (roles {', '.join(roles)}): "
            f"{str(exc).splitlines()[0][:200]}"
        ) from None


def char_spans(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Any, flags: list[bool], where: str = "row"
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text of a conversation and the character spans that carry loss."""
    full = _render(tokenizer, messages, tools, False, where)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or not flags[i]:
            continue
        before = _render(tokenizer, messages[:i], tools, True, where) if i else ""
        upto = _render(tokenizer, messages[: i + 1], tools, False, where)
        if not full.startswith(upto) or not upto.startswith(before):
            raise RowError(
                f"{where}: messages[{i}]: the chat template rewrites earlier turns when later ones are added, "
                "so assistant spans cannot be located"
            )
        start, end = len(before), len(upto.rstrip())
        content = m["content"]
        at = upto.find(content, start) if content else start
        if content and at < 0:
            raise RowError(f"{where}: messages[{i}]: assistant content not found in the rendered template")
        if end > start:
            spans.append((start, end))
    return full, spans


def encode_row(tokenizer: Any, row: dict[str, Any], max_length: int | None = None, where: str = "row") -> Encoded:
    """Tokenize one row with labels only on trainable assistant spans; truncates to `max_length` (keep start)."""
    messages, tools, flags = prepare_messages(row, tokenizer, where)
    text, spans = char_spans(tokenizer, messages, tools, flags, where)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [-100] * len(ids)
    j = 0
    for k, (s, e) in enumerate(enc["offset_mapping"]):
        while j < len(spans) and spans[j][1] <= s:
            j += 1
        if j < len(spans) and e > spans[j][0] and s < spans[j][1] and e > s:
            labels[k] = ids[k]
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        ids, labels = ids[:max_length], labels[:max_length]
    return Encoded(ids, labels, truncated)


def encode_rows(
    tokenizer: Any, rows: list[dict[str, Any]], max_length: int | None, name: str = "train.jsonl"
) -> tuple[list[Encoded], EncodeStats]:
    """Encode every row of a split; rows left without trainable tokens are dropped and counted."""
    stats = EncodeStats(rows=len(rows))
    out: list[Encoded] = []
    for i, row in enumerate(rows):
        e = encode_row(tokenizer, row, max_length, where=f"{name} row {i + 1}")
        stats.truncated += e.truncated
        if e.trainable == 0:
            stats.dropped_rows.append(i + 1)
            if e.truncated and _has_trainable(tokenizer, row):
                stats.dropped_truncated += 1
            else:
                stats.no_trainable += 1
            continue
        stats.kept += 1
        stats.tokens += len(e.input_ids)
        stats.trainable_tokens += e.trainable
        stats.max_row_tokens = max(stats.max_row_tokens, len(e.input_ids))
        out.append(e)
    return out, stats


def _has_trainable(tokenizer: Any, row: dict[str, Any]) -> bool:
    return encode_row(tokenizer, row, None).trainable > 0


def prompt_text(tokenizer: Any, row: dict[str, Any], where: str = "row") -> tuple[str, str]:
    """For generation: the rendered prompt up to the last assistant turn (with the generation prompt) and that
    turn's reference content."""
    messages, tools, _ = prepare_messages(row, tokenizer, where)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return _render(tokenizer, messages[:last], tools, True, where), messages[last]["content"]
