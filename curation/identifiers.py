"""Structured identifiers, defined once: e-mail addresses, phone numbers, card numbers, IBANs, US
SSNs, IP addresses and secrets, each a candidate regex plus a validator (checksums, issuer prefixes,
digit counts, context words). The redactor finds them with these definitions (as one presidio
recognizer, curation/pii.py) and the leak gate checks the redacted output with the same ones
(curation/leakgate.py), so the gate only catches what slipped through.

Boundaries are explicit ASCII classes, never `\\b` or `\\w`: in Python `re` CJK letters are `\\w`,
so `\\b` fails between "地址" and "8.8.4.4"; full-width punctuation (：，。) is no boundary problem."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

Match = tuple[str, int, int, str]  # (entity type, start, end, definition name)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a digit string (card numbers, IMEIs)."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 7064 mod-97 checksum of an IBAN (spaces ignored), 15-34 characters."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ssn_ok(ssn: str) -> bool:
    """US SSN area/group/serial rules (no 000, 666 or 9xx area, no 00 group, no 0000 serial)."""
    digits = re.sub(r"\D", "", ssn)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


# Card issuers: (lowest prefix, highest prefix, allowed lengths); prefixes compared at their own length.
_ISSUERS: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset((13, 16, 19))),  # Visa
    ("51", "55", frozenset((16,))),  # Mastercard
    ("2221", "2720", frozenset((16,))),  # Mastercard 2-series
    ("2200", "2204", frozenset(range(16, 20))),  # Mir
    ("34", "34", frozenset((15,))),  # American Express
    ("37", "37", frozenset((15,))),
    ("300", "305", frozenset(range(14, 20))),  # Diners Club
    ("36", "36", frozenset(range(14, 20))),
    ("38", "39", frozenset(range(16, 20))),
    ("3528", "3589", frozenset(range(16, 20))),  # JCB
    ("2131", "2131", frozenset((15,))),  # JCB, 15 digits
    ("1800", "1800", frozenset((15,))),
    ("50", "50", frozenset(range(13, 20))),  # Maestro
    ("56", "69", frozenset(range(13, 20))),  # Maestro, Discover 6011/644-649/65, UnionPay 62, RuPay 60
)


def card_issuer_ok(digits: str) -> bool:
    """A known issuer prefix with a length that issuer uses."""
    n = len(digits)
    return any(lo <= digits[: len(lo)] <= hi and n in lengths for lo, hi, lengths in _ISSUERS)


def card_ok(digits: str) -> bool:
    """13-19 digits, a known issuer prefix, Luhn, not one repeated digit."""
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and card_issuer_ok(digits) and luhn_ok(digits)


def ip_ok(s: str) -> bool:
    """An IPv4/IPv6 address other than localhost, unspecified, broadcast, or 0.x."""
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return False
    return not (ip.is_unspecified or s in ("127.0.0.1", "::1", "255.255.255.255") or s.startswith("0."))


# Before a number: no ASCII letter/digit/underscore, no "+" (phone prefix), and no digit followed by a
# separator (the middle of a longer number, a version, a date).
_NUM_START = r"(?<![0-9A-Za-z_+])(?<![0-9][.,:/\-])(?<![A-Za-z][\-_])"
_NUM_END = r"(?![0-9A-Za-z_]|[.,:/\-][0-9])"
_NEGATIVE = re.compile(
    r"(?i)(?:(?<![A-Za-z])(?:order|tracking|invoice|ref|reference|imei|serial|isbn|issn|ean|upc|sku|awb|parcel"
    r"|shipment|txn|transaction|ticket|case|build|version|po|policy|patent|id)"
    r"|注文|订单|訂單|单号|單號|追跡|追踪|快递|发票|發票|请求|編號|编号|序列号|流水号|工单|伝票|주문|송장)"
    r"(?:\s*(?:id|no\.?|nr\.?|num|number|#|番号|号|號))?\s*[:#=\-：＃]?\s*$"
)
_PHONE_CONTEXT = re.compile(  # Latin words start a word ("ring", not "during"; "tel", not "hotel")
    r"(?i)(?<![A-Za-z])(?:phone|tel|tél|telef|telep|mobil|móvil|movil|cell|celular|portable|handy|call|ring\b"
    r"|text me|sms|whats\s?app|viber|fax|contact|reach|dial|number|numéro|número|nummer|nr\b|ph\b|mob\b"
    r"|cel\b|tlf)|電話|电话|手机|手機|携帯|전화|☎|📞|📱"
)
_CURRENCY = re.compile(r"[$€£¥₹₽₩]\s?$|^\s?(?:[$€£¥₹₽₩%]|(?:usd|eur|gbp|jpy|inr|brl|aud|chf)\b)", re.I)
_DATE = re.compile(r"\d{4}([.\-/ ])\d{1,2}\1\d{1,2}|\d{1,2}([.\-/ ])\d{1,2}\2(?:\d{2}|\d{4})")
_NANP = re.compile(r"(?:1[ .\-]?)?(?:\([2-9]\d{2}\) ?-?|[2-9]\d{2}(?P<s>[ .\-]))\d{3}(?(s)(?P=s)|[ .\-])\d{4}")
_HEX_GROUP_BEFORE = re.compile(r"[0-9A-Fa-f]{2,}[ \-:]$")
_HEX_GROUP_AFTER = re.compile(r"^[ \-:][0-9A-Fa-f]{2,}")


def _before(text: str, start: int, n: int = 40) -> str:
    return text[max(0, start - n) : start]


def _negative_context(text: str, start: int) -> bool:
    return bool(_NEGATIVE.search(_before(text, start, 32)))


def _in_group_run(text: str, start: int, end: int) -> bool:
    """Part of a longer run of digit/hex groups (a hex dump, binary octets, a serial in blocks)."""
    return bool(_HEX_GROUP_BEFORE.search(_before(text, start, 12)) or _HEX_GROUP_AFTER.match(text[end : end + 12]))


def _card(text: str, start: int, end: int) -> bool:
    digits = re.sub(r"\D", "", text[start:end])
    return card_ok(digits) and not _in_group_run(text, start, end) and not _negative_context(text, start)


PHONE_REGIONS = (
    *("US", "CA", "MX", "BR", "AR", "GB", "IE", "DE", "AT", "CH", "FR", "BE", "NL", "ES", "PT", "IT", "PL", "SE"),
    *("RU", "TR", "IL", "IN", "CN", "JP", "KR", "AU", "ZA", "NG"),
)
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")
_THOUSANDS = re.compile(r"\d{1,3}(?:([ .])\d{3})(?:\1\d{3})*")


def _valid_national(s: str) -> bool:
    """A valid number of one of PHONE_REGIONS, grouped as that region writes its numbers
    (python-phonenumbers, exact grouping)."""
    import phonenumbers

    for region in PHONE_REGIONS:
        matcher = phonenumbers.PhoneNumberMatcher(s, region, leniency=phonenumbers.Leniency.EXACT_GROUPING)
        if any(m.start == 0 and m.end == len(s) for m in matcher):
            return True
    return False


def phone_ok(text: str, start: int, end: int) -> bool:
    """Phone number rules: 6-15 digits (E.164 has at most 15); international (+CC) and North American
    formats and a parenthesized area code stand alone, national formats with a trunk 0 need 9-12
    digits in groups; other groupings need a phone context word in the 40 characters before, or
    8-12 digits in groups that are a valid number in one of PHONE_REGIONS. Dates, IPs, versions,
    prices, thousands and numbers labelled as order/ticket/... ids are not phones."""
    s = text[start:end]
    digits = re.sub(r"\D", "", s)
    groups = re.findall(r"\d+", s)
    seps = set(re.findall(r"[ ./\-]", s))
    if not 6 <= len(digits) <= 15 or ("." in seps and seps != {"."}) or _DATE.fullmatch(s):
        return False
    if seps == {"."} and len(groups) == 4 and all(len(g) <= 3 for g in groups):
        return False  # an IPv4 address
    if _CURRENCY.search(_before(text, start, 2)) or _CURRENCY.search(text[end : end + 5]):
        return False
    if s.startswith("+") or re.match(r"00[1-9]", s):
        return 8 <= len(digits) <= 15 and sum(len(g) == 1 for g in groups[1:]) <= 1
    if _in_group_run(text, start, end) or _negative_context(text, start) or _SSN_SHAPE.fullmatch(s):
        return False
    if _NANP.fullmatch(s) and len(digits) in (10, 11):
        return True
    if sum(len(g) == 1 for g in groups) > 1:
        return False
    grouped = len(groups) >= 2 and len(groups[0]) >= 2
    if grouped and 8 <= len(digits) <= 12 and re.match(r"\(\d{2,4}\)", s):
        return True
    if grouped and re.match(r"\(?0[1-9]", s) and 9 <= len(digits) <= 12:
        return True
    if len(digits) > 12 or (len(groups) == 1 and len(digits) < 7):
        return False
    if _PHONE_CONTEXT.search(_before(text, start)):
        return True
    return grouped and 8 <= len(digits) <= 12 and not _THOUSANDS.fullmatch(s) and _valid_national(s)


_SSN_CONTEXT = re.compile(r"(?i)(?:ssn|social security|social sec|\bss#|\bsocial\b)")


def _ssn(text: str, start: int, end: int) -> bool:
    s = text[start:end]
    if not ssn_ok(s):
        return False
    return "-" in s or bool(_SSN_CONTEXT.search(_before(text, start)))


_ASSIGNED_VALUE_OK = re.compile(r"^(?!<[A-Z_]+_\d+>)(?![*xX.•]+$)")


@dataclass(frozen=True)
class Identifier:
    """One definition: a candidate regex, the group holding the value, and a validator
    `check(text, start, end)` of the value's span."""

    entity: str
    name: str
    pattern: re.Pattern[str]
    check: Callable[[str, int, int], bool] | None = None
    group: int = 0
    score: float = 1.0


_PHONE_GROUP = r"(?:\(\d{1,5}\)|\d{1,15})"
_PHONE_SEP = r"(?:[ .\-/]|(?<=\))|(?=\())"

IDENTIFIERS: tuple[Identifier, ...] = (
    Identifier(
        "EMAIL_ADDRESS",
        "email",
        re.compile(
            r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+"
            r"[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
        ),
    ),
    Identifier(
        "CREDIT_CARD",
        "card",
        re.compile(
            _NUM_START + r"(?:\d{13,19}|\d{4}(?P<s>[ \-])(?:\d{4}(?P=s)\d{4}(?P=s)\d{4}(?:(?P=s)\d{3})?"
            r"|\d{6}(?P=s)\d{4,5}|\d{4}(?P=s)\d{5}))" + _NUM_END
        ),
        _card,
    ),
    Identifier(
        "IBAN_CODE",
        "iban",
        re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])"),
        lambda t, a, b: iban_ok(t[a:b]),
    ),
    Identifier(
        "US_SSN",
        "ssn",
        re.compile(_NUM_START + r"\d{3}(?P<s>[ \-.]?)\d{2}(?P=s)\d{4}" + _NUM_END),
        _ssn,
    ),
    Identifier(
        "IP_ADDRESS",
        "ipv4",
        re.compile(r"(?<![0-9A-Za-z_.\-])(?:\d{1,3}\.){3}\d{1,3}(?![0-9A-Za-z_\-]|\.[0-9])"),
        lambda t, a, b: ip_ok(t[a:b]),
    ),
    Identifier(
        "IP_ADDRESS",
        "ipv6",
        re.compile(
            r"(?<![0-9A-Za-z_:.\-])(?=[0-9A-Fa-f:]*\d)(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{1,4}(?![0-9A-Za-z_:])"
        ),
        lambda t, a, b: ip_ok(t[a:b]) and (t.count(":", a, b) >= 4 or "::" in t[a:b]),
    ),
    Identifier(
        "PHONE_NUMBER",
        "phone",
        re.compile(
            r"(?<![0-9A-Za-z_+])(?<![0-9][.,:/\-])(?:\+ ?|00(?=[1-9]))?"
            + _PHONE_GROUP
            + rf"(?:{_PHONE_SEP}{_PHONE_GROUP}){{0,7}}"
            + _NUM_END
        ),
        phone_ok,
        score=0.9,
    ),
    Identifier("SECRET", "anthropic_key", re.compile(r"(?<![A-Za-z0-9_\-])sk-ant-[A-Za-z0-9_\-]{20,}")),
    Identifier(
        "SECRET",
        "openai_key",
        re.compile(r"(?<![A-Za-z0-9_\-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    ),
    Identifier(
        "SECRET",
        "aws_access_key",
        re.compile(r"(?<![A-Za-z0-9])(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    ),
    Identifier(
        "SECRET",
        "github_token",
        re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})(?![A-Za-z0-9_])"),
    ),
    Identifier("SECRET", "slack_token", re.compile(r"(?<![A-Za-z0-9])xox[abprs]-[A-Za-z0-9\-]{10,}")),
    Identifier(
        "SECRET",
        "jwt",
        re.compile(r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ),
    Identifier(
        "SECRET",
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?", re.DOTALL
        ),
    ),
    Identifier(
        "SECRET",
        "assigned_secret",
        re.compile(
            r"(?i)(?<![A-Za-z0-9])(?:password|passwd|pwd|passphrase|api[_\- ]?key|secret(?:[_\- ]?key)?"
            r"|access[_\- ]?token|auth[_\- ]?token|token|client[_\- ]?secret)(?![A-Za-z0-9])"
            r"\s*(?:is\s*)?[:=]\s*[\"']?([^\s\"',;]{6,})"
        ),
        lambda t, a, b: bool(_ASSIGNED_VALUE_OK.match(t[a:b])),
        group=1,
    ),
)


# Checksum-validated identifiers: a phone or SSN candidate inside one of them is part of it.
_VALIDATED = frozenset(("EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS"))


def find(text: str, entities: frozenset[str] | None = None) -> list[Match]:
    """Every identifier in `text` (optionally only those of `entities`), as (entity, start, end, name)."""
    out: list[Match] = []
    for ident in IDENTIFIERS:
        for m in ident.pattern.finditer(text):
            start, end = m.span(ident.group)
            if ident.check is None or ident.check(text, start, end):
                out.append((ident.entity, start, end, ident.name))
    strong = [(a, b) for e, a, b, _ in out if e in _VALIDATED]
    return [
        f
        for f in out
        if (entities is None or f[0] in entities)
        and (f[0] not in ("PHONE_NUMBER", "US_SSN") or not any(a < f[2] and f[1] < b for a, b in strong))
    ]


def score(name: str) -> float:
    """The confidence the redactor gives a match of the definition `name`."""
    return _SCORES[name]


_SCORES = {ident.name: ident.score for ident in IDENTIFIERS}
