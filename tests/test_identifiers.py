"""The shared identifier definitions: what looks like a card/phone/IP is found (beside CJK text too),
what only resembles one is not, the redactor finds everything the leak gate would flag, and on text
not made by the sample generator the redactor's recall is at least presidio's, per entity."""

from __future__ import annotations

import pytest

from curation import identifiers, leakgate, redact
from curation.fields import exported_fields
from schemas.config import RedactConfig
from tests.conftest import FIXTURES

CFG = RedactConfig(workers=1)
FALSE_POSITIVES = [
    line
    for line in (FIXTURES / "pii_false_positives.txt").read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
]


def found(text: str) -> set[tuple[str, str]]:
    return {(e, text[a:b]) for e, a, b, _ in identifiers.find(text)}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("my card 213176828496175", "213176828496175"),  # JCB, 15 digits, contiguous
        ("Visa 4111111111111111.", "4111111111111111"),
        ("mc 5555-5555-5555-4444 ok", "5555-5555-5555-4444"),
        ("mastercard 2221 0000 0000 0009", "2221 0000 0000 0009"),
        ("amex 3782 822463 10005", "3782 822463 10005"),
        ("diners 3056 930902 5904", "3056 930902 5904"),
        ("unionpay 6200000000000005", "6200000000000005"),
        ("visa 19 digits 4000 0000 0000 0000 006", "4000 0000 0000 0000 006"),
        ("卡号：4111 1111 1111 1111。", "4111 1111 1111 1111"),
    ],
)
def test_cards_of_every_issuer_and_format(text, value):
    assert ("CREDIT_CARD", value) in found(text)


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "4111 1111-1111 1111",  # mixed separators
        "9111111111111111",  # no issuer starts with 9
        "1728679103298773",  # epoch microseconds
        "01100100 01100101 01101110 01101001 01110011",  # binary octets
        "4111 1111 1111 1111 2222 3333",  # part of a longer run of groups
    ],
)
def test_what_is_not_a_card(text):
    assert not any(e == "CREDIT_CARD" for e, _ in found(text))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("call 60-56-85-91", "60-56-85-91"),
        ("Tel: 699 956 915", "699 956 915"),
        ("(99) 645-791", "(99) 645-791"),
        ("call me on 467 3395", "467 3395"),
        ("+33 6 12 34 56 78", "+33 6 12 34 56 78"),
        ("06 12 34 56 78", "06 12 34 56 78"),
        ("020 7946 0958", "020 7946 0958"),
        ("Handy 0151 23456789", "0151 23456789"),
        ("(11) 98765-4321", "(11) 98765-4321"),
        ("+91 98765 43210", "+91 98765 43210"),
        ("電話：03-1234-5678", "03-1234-5678"),
        ("0412 345 678", "0412 345 678"),
        ("(212) 555-0134", "(212) 555-0134"),
        ("Guests: Ana 98765 43210", "98765 43210"),  # grouped as India writes it, no context word
    ],
)
def test_phones_in_international_formats(text, value):
    assert ("PHONE_NUMBER", value) in found(text)


@pytest.mark.parametrize("text", ["467 3395", "60-56-85-91", "version 10 20 30 40", "order no. 699 956 915"])
def test_short_or_labelled_numbers_need_phone_context(text):
    assert not any(e == "PHONE_NUMBER" for e, _ in found(text))


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("服务器地址：8.8.4.4，子网掩码：255.255.255.0", {"8.8.4.4", "255.255.255.0"}),
        ("地址8.8.4.4和网关10.0.0.1", {"8.8.4.4", "10.0.0.1"}),  # right beside CJK letters
        ("サーバー（203.0.113.7）に接続", {"203.0.113.7"}),
        ("ipv6 2001:db8::8a2e:370:7334.", {"2001:db8::8a2e:370:7334"}),
    ],
)
def test_ips_beside_cjk_text(text, values):
    assert {v for e, v in found(text) if e == "IP_ADDRESS"} == values


def test_email_beside_cjk_text():
    assert found("联系邮箱abc.def@example.cn。") == {("EMAIL_ADDRESS", "abc.def@example.cn")}


@pytest.mark.parametrize("line", FALSE_POSITIVES)
def test_false_positive_corpus_has_no_identifier(line):
    assert identifiers.find(line) == []


@pytest.fixture(scope="module")
def independent():
    """A slice of the independent benchmark corpus with the redactor's findings."""
    from benchmarks.pii_corpus import make_texts

    texts, gold = make_texts(150, seed=3)
    findings = redact.analyze_texts(texts, CFG)
    return texts, gold, findings


def test_redactor_finds_everything_the_gate_flags(independent):
    texts, _, findings = independent
    for text, fs in zip(texts, findings, strict=True):
        ours = [f for raw in fs if (f := redact.clean(raw, text))]
        for entity, a, b in leakgate.scan(text):
            assert any(e == entity and s <= a and b <= t for e, s, t, *_ in ours), (text, text[a:b])
        messages = [{"role": "user", "content": text}]
        out, _, _ = redact.redact_trace(messages, None, exported_fields(messages, None), [fs], CFG)
        assert leakgate.scan_messages(out) == []


def test_the_redactor_uses_the_shared_definitions_not_presidios():
    from curation import pii

    names = {r.name for r in pii.build_analyzer(CFG).registry.recognizers}
    assert "IdentifierRecognizer" in names and not names & set(pii.REPLACED)


def test_recall_at_least_presidios_on_independent_text(independent):
    from benchmarks.redact import ENTITIES, evaluate, run_peer

    texts, gold, findings = independent
    ours = evaluate(
        gold, [[f[:3] for raw in fs if (f := redact.clean(raw, t))] for t, fs in zip(texts, findings, strict=True)]
    )
    peer = evaluate(gold, run_peer(texts))
    for entity in ENTITIES:
        if ours[entity][2]:  # gold spans of this type in the slice
            assert ours[entity][0] >= peer[entity][0], (entity, ours[entity], peer[entity])
