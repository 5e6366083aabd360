"""Redaction: typed placeholders consistent within a trace, no original values stored, pinned
behaviour on awkward input, the leak gate stopping a run, and no planted PII left in the samples."""

from __future__ import annotations

import json
import re
import sys

import orjson
import pytest

from curation import curate, redact
from curation.fields import exported_fields
from curation.ingest.run import ingest
from curation.leakgate import LeakError
from schemas.config import Config, RedactConfig
from tests.conftest import FIXTURES, ROOT, rows
from tests.helpers import chat_log, convo, run_stages, write_jsonl

CFG = RedactConfig(custom_entities={"ORDER_ID": r"\bNW-\d{6}\b"}, allowlist=["support@northwind.example"], workers=1)


@pytest.fixture(scope="module")
def analyzed():
    """Findings for a few awkward texts, from one analyzer load."""
    texts = {
        "empty": "",
        "english": "Hi, I'm Maria Garcia, write to maria.garcia@example.com or call (303) 555-0147. "
        "Order NW-123456 went to 742 Evergreen Terrace, Springfield, OR 97477.",
        "iban": "Refund to ES91 2100 0418 4502 0005 1332 or GB82 WEST 1234 5698 7654 32, "
        "not GB82 WEST 1234 5698 7654 33.",
        "french": "Bonjour, je m'appelle Jean Dupont, mon adresse est jean.dupont@exemple.fr, merci.",
        "emoji": "📦 still missing!! 😡 call me 📞 (212) 555-0134 — 谢谢 — Привет",
        "code": "```python\nAPI_KEY = 'sk-proj-abcdefghijklmnopqrstuvwx1234'\nos.system('ls')\n```\n"
        "password: hunter2go",
        "lookalikes": "request 123e4567-e89b-12d3-a456-426614174000 at 2026-10-01T10:00:00Z on v2.14.1, "
        "ticket 1234567890123456",
        "allowed": "Write to support@northwind.example any time.",
        "big": ("Nothing personal here, just a long log line. " * 23000) + "Contact: big.log@example.com",
        "credits": "Directed By: Johannes Varvio",
        "verses": "We read verses from Faina D. Yefremova's Cautionary Tales.",
        "myname": "My name is Rubija and my card 213176828496175 was declined.",
        "phones": "Call 60-56-85-91 or, Tel. 699 956 915. Phone: (99) 645-791, mobile 467 3395.",
        "chinese_ip": "服务器地址：8.8.4.4，子网掩码：255.255.255.0，网关 192.168.1.1，备用 10.0.0.2",
    }
    found = redact.analyze_texts(list(texts.values()), CFG)
    return {
        k: {(f[0], t[f[1] : f[2]]) for raw in fs if (f := redact.clean(raw, t))}
        for (k, t), fs in zip(texts.items(), found, strict=True)
    }


def test_english_pii_is_found(analyzed):
    got = analyzed["english"]
    for item in [
        ("PERSON", "Maria Garcia"),
        ("EMAIL_ADDRESS", "maria.garcia@example.com"),
        ("PHONE_NUMBER", "(303) 555-0147"),
        ("ORDER_ID", "NW-123456"),
    ]:
        assert item in got
    assert any(e == "STREET_ADDRESS" and v.startswith("742 Evergreen Terrace") for e, v in got)


def test_awkward_inputs_are_pinned(analyzed):
    assert analyzed["empty"] == set()
    assert {v for e, v in analyzed["iban"] if e == "IBAN_CODE"} == {
        "ES91 2100 0418 4502 0005 1332",
        "GB82 WEST 1234 5698 7654 32",
    }
    assert ("EMAIL_ADDRESS", "jean.dupont@exemple.fr") in analyzed["french"]
    assert ("PHONE_NUMBER", "(212) 555-0134") in analyzed["emoji"]  # offsets stay right around emoji
    assert ("SECRET", "sk-proj-abcdefghijklmnopqrstuvwx1234") in analyzed["code"]
    assert ("SECRET", "hunter2go") in analyzed["code"]
    assert analyzed["lookalikes"] == set()  # UUIDs, ISO timestamps, versions, non-Luhn ids stay
    assert analyzed["allowed"] == set()
    assert ("EMAIL_ADDRESS", "big.log@example.com") in analyzed["big"]  # a 1 MB text is analyzed in pieces


def test_names_cards_and_phones_seen_missed_are_found(analyzed):
    assert ("PERSON", "Johannes Varvio") in analyzed["credits"]  # "By: " label no longer drops it
    assert ("PERSON", "Faina D. Yefremova") in analyzed["verses"]  # the NER calls it ORG
    assert {("PERSON", "Rubija"), ("CREDIT_CARD", "213176828496175")} <= analyzed["myname"]
    phones = {v for e, v in analyzed["phones"] if e == "PHONE_NUMBER"}
    assert phones == {"60-56-85-91", "699 956 915", "(99) 645-791", "467 3395"}


def test_ips_after_full_width_punctuation_are_redacted(analyzed):
    ips = {v for e, v in analyzed["chinese_ip"] if e == "IP_ADDRESS"}
    assert ips == {"8.8.4.4", "255.255.255.0", "192.168.1.1", "10.0.0.2"}
    text = "服务器地址：8.8.4.4，子网掩码：255.255.255.0。"
    messages = [{"role": "user", "content": text}]
    fields = exported_fields(messages, None)
    out, _, _ = redact.redact_trace(messages, None, fields, redact.analyze_texts([text], CFG), CFG)
    assert out[0]["content"] == "服务器地址：<IP_ADDRESS_1>，子网掩码：<IP_ADDRESS_2>。"


def test_false_positive_corpus_is_left_untouched():
    lines = [
        line
        for line in (FIXTURES / "pii_false_positives.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    messages = [{"role": "user", "content": line} for line in lines]
    fields = exported_fields(messages, None)
    findings = redact.analyze_texts([t for _, _, t in fields], CFG)
    out, _, rows = redact.redact_trace(messages, None, fields, findings, CFG)
    assert rows == [] and out == messages


def test_placeholders_are_consistent_within_a_trace():
    messages = [
        {"role": "user", "content": "I am Maria Garcia (maria@example.com). Maria Garcia again."},
        {
            "role": "assistant",
            "content": "Thanks Maria Garcia, we wrote to maria@example.com.",
            "tool_calls": [
                {"name": "notify", "arguments": '{"to": "maria@example.com"}'},
                {"name": "mail_maria@example.com", "arguments": "{}"},
            ],
        },
    ]
    fields = exported_fields(messages, None)
    assert [f[1] for f in fields] == [
        "content",
        "content",
        "tool_calls[0].name",
        "tool_calls[0].arguments",
        "tool_calls[1].name",
        "tool_calls[1].arguments",
    ]
    findings = [[("PERSON", 5, 17, 0.85, "SpacyRecognizer"), ("EMAIL_ADDRESS", 19, 36, 1.0, "EmailRecognizer")]]
    out, _, found = redact.redact_trace(messages, None, fields, findings + [[]] * (len(fields) - 1), CFG)
    assert out[0]["content"] == "I am <PERSON_1> (<EMAIL_ADDRESS_1>). <PERSON_1> again."
    assert out[1]["content"] == "Thanks <PERSON_1>, we wrote to <EMAIL_ADDRESS_1>."
    assert out[1]["tool_calls"][0] == {"name": "notify", "arguments": '{"to": "<EMAIL_ADDRESS_1>"}'}
    assert out[1]["tool_calls"][1] == {"name": "mail_<EMAIL_ADDRESS_1>", "arguments": "{}"}  # function names too
    assert {r[2] for r in found} == {"PERSON", "EMAIL_ADDRESS"}


def test_ner_noise_is_cleaned():
    text = "Cheers,\nMaria Dubois\nmaria.dubois20@gmail.com"
    assert redact.clean(("PERSON", 8, 45, 0.85, "SpacyRecognizer"), text) == ("PERSON", 8, 20, 0.85, "SpacyRecognizer")
    assert redact.clean(("PERSON", 0, 6, 0.85, "SpacyRecognizer"), text) is None  # "Cheers"
    assert redact.clean(("PERSON", 0, 8, 0.85, "SpacyRecognizer"), '"order_id": 1') is None
    credits = "Directed By: Johannes Varvio"
    assert redact.clean(("PERSON", 9, 28, 0.85, "SpacyRecognizer"), credits)[1:3] == (13, 28)  # label cut
    chat = "hi, i'm john smith and Paweł Nowak  98594 00922, we moved to Rio de Janeiro, Brazil"
    spans = {k: chat.index(k) for k in ("john smith", "Paweł Nowak  98594", "Rio de Janeiro, Brazil")}
    assert redact.clean(("PERSON", spans["john smith"], spans["john smith"] + 10, 0.85, "SpacyRecognizer"), chat)
    nowak = redact.clean(("PERSON", spans["Paweł Nowak  98594"], spans["Paweł Nowak  98594"] + 18, 0.85, "Spacy"), chat)
    assert chat[nowak[1] : nowak[2]] == "Paweł Nowak"  # the number after the name is cut, not the name dropped
    rio = spans["Rio de Janeiro, Brazil"]
    assert redact.clean(("LOCATION", rio, rio + 22, 0.85, "SpacyRecognizer"), chat)[1:3] == (rio, rio + 22)
    assert redact.clean(("LOCATION", 4, 7, 0.85, "SpacyRecognizer"), chat) is None  # lower case: not a place
    clinic = "See you at the clinic in Kraków."
    assert redact.clean(("PERSON", 25, 31, 0.85, "SpacyRecognizer"), clinic)[0] == "LOCATION"  # "in" + a "person"


def test_redact_stage_writes_tables_without_original_values(store, tmp_path):
    email = "Hi, this is Maria Garcia, my card 4111 1111 1111 1111 was charged twice. maria.g@example.com"
    recs = [chat_log("a", convo(email), '{"priority": "urgent", "summary": "Maria Garcia double charged"}')]
    ingest(store, [write_jsonl(tmp_path / "r.jsonl", recs)])
    stats = run_stages(store, Config(redact=CFG), "dedupe", "redact")["redact"]
    assert stats["kept"] == 1 and {"PERSON", "CREDIT_CARD", "EMAIL_ADDRESS"} <= set(stats["detail"]["entities"])
    (messages,) = rows(store, "SELECT messages FROM redacted_messages")[0]
    assert "4111" not in messages and "Maria" not in messages and "<CREDIT_CARD_1>" in messages
    dump = json.dumps(rows(store, "SELECT * FROM redactions"))
    assert "4111" not in dump and "Maria" not in dump and "example.com" not in dump
    again = run_stages(store, Config(redact=CFG), "dedupe", "redact")["redact"]
    assert (again["processed"], again["kept"]) == (0, 1)  # incremental: nothing to redo
    n_found = rows(store, "SELECT count(*) FROM pii_findings")[0][0]
    store.con.execute("DELETE FROM redacted_messages")
    redone = run_stages(store, Config(redact=CFG), "redact")["redact"]
    assert redone["processed"] == 1 and redone["detail"]["analyzed"] == 0  # findings come from the text cache
    assert rows(store, "SELECT count(*) FROM pii_findings")[0][0] == n_found
    assert "4111" not in json.dumps(rows(store, "SELECT * FROM pii_findings"))  # offsets and types, never values


def test_leak_gate_stops_curation_on_a_secret_the_redactor_missed(store, tmp_path):
    key = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ123456"
    ingest(store, [write_jsonl(tmp_path / "k.jsonl", [chat_log("k", convo(f"my key is {key}"), '{"ok": true}')])])
    cfg = Config(redact=CFG.model_copy(update={"entities": ["PERSON"], "leak_gate": "fail"}))  # secrets kept
    with pytest.raises(LeakError, match=r"openai_chat:k: SECRET"):
        curate.run(store, cfg)
    summary = curate.run(store, Config(redact=CFG))  # with SECRET redaction on, it passes
    gate = summary["stages"]["leak_gate"]
    assert (gate["in"], gate["kept"], gate["detail"]) == (1, 1, {"mode": "quarantine", "leaks": 0, "listed": []})


def test_no_planted_pii_survives_in_the_sample_data(curated_samples):
    store, summary, _ = curated_samples
    sys.path.insert(0, str(ROOT / "data"))
    import generate_samples as g

    names = re.compile(r"\b(?:" + "|".join(f"{a} {b}" for a in g.FIRST for b in g.LAST) + r")\b")
    planted = {
        "email": re.compile(r"[\w.]+@(?:" + "|".join(map(re.escape, g.DOMAINS)) + ")"),
        "phone": re.compile(r"\(\d{3}\) \d{3}-\d{4}"),
        "card": re.compile(r"\b4\d{3} \d{4} \d{4} \d{4}\b"),
        "street": re.compile(r"\b\d+ (?:" + "|".join(g.STREETS) + r")\b"),
        "order": re.compile(r"\bNW-\d{6}\b"),
        "secret": re.compile(r"sk-proj-\w+"),
        "name": names,
    }
    survivors = {}
    for trace_id, messages in rows(store, "SELECT trace_id, messages FROM redacted_messages"):
        text = " ".join(m.get("content", "") for m in orjson.loads(messages))
        for kind, pattern in planted.items():
            if pattern.search(text):
                survivors.setdefault(kind, trace_id)
    assert survivors == {}
    stages = summary["stages"]
    assert stages["redact"]["dropped"] == {} and stages["leak_gate"]["detail"]["leaks"] == 0
    assert stages["redact"]["kept"] == stages["dedupe"]["kept"]
