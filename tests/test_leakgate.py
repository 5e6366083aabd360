"""The leak gate: high precision (checksums), blind to placeholders, and blocking."""

from __future__ import annotations

import orjson
import pytest

from curation import leakgate
from tests.conftest import FIXTURES


def types(text: str) -> set[str]:
    return {h[0] for h in leakgate.scan(text)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe@example.com", {"EMAIL_ADDRESS"}),
        ("card 4111 1111 1111 1111 please", {"CREDIT_CARD"}),
        ("IBAN GB82 WEST 1234 5698 7654 32", {"IBAN_CODE"}),
        ("ssn 123-45-6789", {"US_SSN"}),
        ("call (212) 555-0134 or 212-555-0199", {"PHONE_NUMBER"}),
        ("server at 203.0.113.7", {"IP_ADDRESS"}),
        ("服务器地址：8.8.4.4，子网掩码：255.255.255.0", {"IP_ADDRESS"}),
        ("my card 213176828496175", {"CREDIT_CARD"}),
        ("+33 6 12 34 56 78", {"PHONE_NUMBER"}),
        ("key sk-proj-abcdefghijklmnopqrstuvwx1234", {"SECRET"}),
        ("anthropic sk-ant-api03-abcdefghijklmnopqrstuvwx", {"SECRET"}),
        ("aws AKIAIOSFODNN7EXAMPLE", {"SECRET"}),
        ("token ghp_" + "a" * 36, {"SECRET"}),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", {"SECRET"}),
    ],
)
def test_finds_real_pii_and_secrets(text, expected):
    assert types(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "IBAN GB82 WEST 1234 5698 7654 33",  # fails mod 97
        "ssn 000-12-3456 and 666-12-3456",  # impossible areas
        "id 123e4567-e89b-12d3-a456-426614174000",  # UUID
        "at 2026-10-01T10:00:00Z, release v2.14.1, build 20261001",
        "order 1234567890123456",  # 16 digits, not Luhn-valid
        "signed 01100100 01100101 01101110 01101001 01110011 00100000",  # binary octets pass Luhn together
        "order 4111111111111111",  # Luhn-valid, but labelled as an order number
        "hello <EMAIL_ADDRESS_1>, your card <CREDIT_CARD_1> and key <SECRET_1>",
        "",
    ],
)
def test_ignores_lookalikes_and_placeholders(text):
    assert types(text) == set()


def test_false_positive_corpus_passes_the_gate():
    text = (FIXTURES / "pii_false_positives.txt").read_text(encoding="utf-8")
    assert [(e, text[a:b]) for e, a, b in leakgate.scan(text)] == []


def test_check_lists_the_leaking_traces_and_types():
    ok = ("t-ok", orjson.dumps([{"role": "user", "content": "<PERSON_1> wrote"}]).decode(), None)
    bad = (
        "t-bad",
        orjson.dumps(
            [
                {
                    "role": "assistant",
                    "content": "x",
                    "tool_calls": [{"name": "f", "arguments": '{"key": "sk-proj-abcdefghijklmnopqrstuvwx1234"}'}],
                }
            ]
        ).decode(),
        None,
    )
    leakgate.check([ok])
    with pytest.raises(leakgate.LeakError, match=r"t-bad: SECRET") as exc:
        leakgate.check([ok, bad])
    assert exc.value.leaks == {"t-bad": ["SECRET"]}
