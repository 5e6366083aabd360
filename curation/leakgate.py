"""The leak gate: a second, high-precision scan of everything that will be exported.

It checks the redacted output with the identifier definitions the redactor finds with
(curation/identifiers.py: e-mail, phone, card with issuer prefix and Luhn, IBAN mod 97, US SSN rules,
IP, keys and tokens), so a hit is something that slipped through, not a different definition. It
shares nothing of the presidio/NER path: names and places are not checked. Any hit stops the export
with the trace ids and entity types."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from curation import identifiers
from curation.fields import exported_fields

Hit = tuple[str, int, int]  # (entity type, start, end)


def scan(text: str) -> list[Hit]:
    """High-precision findings in one text."""
    return [(entity, start, end) for entity, start, end, _ in identifiers.find(text)]


def scan_messages(messages: list[dict[str, Any]], tools: Any = None) -> list[Hit]:
    """Findings in everything of a trace that an export writes: contents, names, tool calls, tools."""
    return [h for _, _, text in exported_fields(messages, tools) if text for h in scan(text)]


class LeakError(RuntimeError):
    """Redacted output that still contains PII or a secret; the export must not happen."""

    def __init__(self, leaks: dict[str, list[str]]) -> None:
        self.leaks = leaks
        shown = "; ".join(f"{tid}: {', '.join(types)}" for tid, types in list(leaks.items())[:10])
        more = f" (and {len(leaks) - 10} more traces)" if len(leaks) > 10 else ""
        super().__init__(f"leak gate: {len(leaks)} redacted trace(s) still contain PII or secrets: {shown}{more}")


def check(rows: Iterable[tuple[str, str, str | None]]) -> None:
    """Raise LeakError if any (trace_id, messages JSON, tools JSON) row has a finding."""
    leaks: dict[str, list[str]] = {}
    for trace_id, messages, tools in rows:
        hits = scan_messages(orjson.loads(messages), orjson.loads(tools) if tools else None)
        if hits:
            leaks[trace_id] = sorted({h[0] for h in hits})
    if leaks:
        raise LeakError(leaks)
