"""The leak gate: a second, independent, high-precision scan of everything that will be exported.

It shares no code with the presidio-based redactor: plain regexes, with checksums where they exist
(Luhn for card numbers, ISO 7064 mod 97 for IBANs, area/group rules for US SSNs), so a hit is
almost surely real. Any hit stops the export with the trace ids and entity types."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from curation.fields import exported_fields

Hit = tuple[str, int, int]  # (entity type, start, end)


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ssn_ok(ssn: str) -> bool:
    area, group, serial = ssn.split("-")
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _ipv4_ok(s: str) -> bool:
    try:
        ip = ipaddress.IPv4Address(s)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or s.startswith("0."))


_CHECKS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool] | None], ...] = (
    ("EMAIL_ADDRESS", re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b"), None),
    (
        "CREDIT_CARD",
        re.compile(r"(?<!\d)(?:\d[ \-]?){12,18}\d(?!\d)"),
        lambda s: luhn_ok(re.sub(r"\D", "", s)) and len(set(re.sub(r"\D", "", s))) > 1,
    ),
    ("IBAN_CODE", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), iban_ok),
    ("US_SSN", re.compile(r"(?<![\d\-])\d{3}-\d{2}-\d{4}(?![\d\-])"), ssn_ok),
    (
        "PHONE_NUMBER",
        re.compile(
            r"(?<![\w+])(?:\+?1[ .\-]?)?\(\d{3}\)[ .\-]?\d{3}[ .\-]\d{4}(?!\d)"
            r"|(?<![\w+\-.])\d{3}[.\-]\d{3}[.\-]\d{4}(?![\d\-.])"
        ),
        None,
    ),
    ("IP_ADDRESS", re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"), _ipv4_ok),
    ("SECRET", re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{20,}"), None),
    ("SECRET", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), None),
    ("SECRET", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}"), None),
    ("SECRET", re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"), None),
    ("SECRET", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"), None),
    ("SECRET", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"), None),
)


def scan(text: str) -> list[Hit]:
    """High-precision findings in one text."""
    hits = []
    for entity, pattern, check in _CHECKS:
        for m in pattern.finditer(text):
            if check is None or check(m.group(0)):
                hits.append((entity, m.start(), m.end()))
    return hits


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
