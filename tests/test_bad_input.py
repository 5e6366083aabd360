"""The bad-input corpus: every record ends in `traces` or in `quarantine` with a code, a line and a
message that names the field, and the counts reconcile."""

from __future__ import annotations

import gzip
import json

import pytest

from curation.ingest.run import ingest
from schemas.config import IngestConfig
from tests.conftest import FIXTURES, rows

GOOD = json.loads((FIXTURES / "formats" / "openai_chat.jsonl").read_text().splitlines()[0])


def good(i: int) -> dict:
    rec = json.loads(json.dumps(GOOD))
    rec["response"]["id"] = f"chatcmpl-{i}"
    return rec


def line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def quarantine(store) -> list[tuple]:
    return rows(
        store, "SELECT source_file, source_line, code, message FROM quarantine ORDER BY source_file, source_line"
    )


def reconciled(stats) -> bool:
    return stats.records == stats.accepted + stats.already_present + stats.quarantined


@pytest.fixture
def corpus(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    wrong_type = good(3)
    wrong_type["request"]["messages"][1]["content"] = {"unexpected": True}
    wrong_tokens = good(4)
    wrong_tokens["response"]["usage"]["prompt_tokens"] = "many"
    unknown_role = good(5)
    unknown_role["request"]["messages"][0]["role"] = "narrator"
    no_messages = good(6)
    no_messages["request"]["messages"] = []
    no_messages["response"]["choices"] = []
    bad_call = good(7)
    bad_call["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"] = 12
    (d / "mixed.jsonl").write_bytes(
        line(good(1))
        + line(good(2))[:80]
        + b"\n"  # 2 truncated JSON
        + line(good(8)).replace(b"never arrived", b"never \xff\xfe arrived")  # 3 invalid UTF-8
        + line(wrong_type)  # 4 wrong type for content
        + b"\n   \n"  # blank lines are not records
        + line(unknown_role)  # 7
        + line(no_messages)  # 8
        + line({"hello": "world"})  # 9 unknown format
        + line(bad_call)  # 10 tool call name not a string
        + line(wrong_tokens)  # 11 usage is not a number -> dropped, kept
    )
    (d / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + line(good(20)) + line(good(21)))
    (d / "empty.jsonl").write_bytes(b"")
    (d / "huge.jsonl").write_bytes(line(good(30)) + b'{"pad": "' + b"x" * (50 * 1024 * 1024) + b'"}\n' + line(good(31)))
    gz = gzip.compress(b"".join(line(good(40 + i)) for i in range(200)))
    (d / "corrupt.jsonl.gz").write_bytes(gz[: len(gz) // 2] + b"\x00" * 64 + gz[len(gz) // 2 + 64 :])
    return d


def test_every_quarantine_code_on_the_bad_input_corpus(store, corpus):
    stats = ingest(store, [corpus])
    assert reconciled(stats)
    q = {(f.split("/")[-1], n, code) for f, n, code, _ in quarantine(store)}
    assert ("mixed.jsonl", 2, "invalid_json") in q
    assert ("mixed.jsonl", 3, "encoding_error") in q
    assert ("mixed.jsonl", 4, "schema_error") in q
    assert ("mixed.jsonl", 7, "unknown_role") in q
    assert ("mixed.jsonl", 8, "no_messages") in q
    assert ("mixed.jsonl", 9, "unknown_format") in q
    assert ("mixed.jsonl", 10, "schema_error") in q
    assert ("empty.jsonl", 0, "empty_file") in q
    assert ("huge.jsonl", 2, "too_large") in q
    assert any(f == "corrupt.jsonl.gz" and code == "corrupt_file" for f, _, code in q)
    accepted = {r[0] for r in rows(store, "SELECT trace_id FROM traces")}
    # good records around the bad ones survive: the BOM file, both sides of the 50 MB line,
    # and the records of the corrupt gzip read before the break
    assert {
        "openai_chat:chatcmpl-1",
        "openai_chat:chatcmpl-20",
        "openai_chat:chatcmpl-21",
        "openai_chat:chatcmpl-30",
        "openai_chat:chatcmpl-31",
        "openai_chat:chatcmpl-40",
    } <= accepted
    assert "openai_chat:chatcmpl-11" not in accepted
    assert stats.quarantine_reasons["corrupt_file"] == 1
    assert stats.accepted == len(accepted)
    assert stats.quarantined == store.count("quarantine")


def test_quarantine_messages_name_the_field(store, corpus):
    ingest(store, [corpus / "mixed.jsonl"])
    msgs = {n: m for _, n, _, m in quarantine(store)}
    assert "request.messages[1].content" in msgs[4]
    assert "messages[0].role" in msgs[7] and "'narrator'" in msgs[7]
    assert "tool_calls[0].name" in msgs[10]
    assert "prompt_tokens" not in msgs.get(11, "")  # a non-numeric usage count is dropped, not fatal
    assert "character" in msgs[2] and "UTF-8" in msgs[3]


def test_too_large_limit_comes_from_config(store, tmp_path):
    f = tmp_path / "t.jsonl"
    big = good(2)
    big["metadata"] = {"notes": "n" * 2000}
    f.write_bytes(line(good(1)) + line(big))
    stats = ingest(store, [f], config=IngestConfig(max_record_bytes=1024))
    assert stats.accepted == 1 and stats.quarantine_reasons == {"too_large": 1}
    assert "limit is 1,024" in quarantine(store)[0][3]


def test_json_array_with_a_broken_item_keeps_the_items_before_it(store, tmp_path):
    f = tmp_path / "a.json"
    f.write_text("[" + json.dumps(good(1)) + "," + json.dumps(good(2)) + ', {"request": ')
    stats = ingest(store, [f])
    assert stats.accepted == 2 and stats.quarantine_reasons == {"invalid_json": 1}
    assert reconciled(stats)


def test_missing_path_is_an_error(store, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no_such\.jsonl"):
        ingest(store, [tmp_path / "no_such.jsonl"])


@pytest.mark.parametrize("body", [b"PAR1", b"PAR1 not a parquet file at all\n"], ids=["magic-only", "text"])
def test_a_file_that_starts_like_parquet_but_is_not_is_quarantined(tmp_path, store, body):
    """Found by the nothing-lost property test: a file with Parquet's magic bytes but no footer stopped ingest."""
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(body)
    other = tmp_path / "ok.jsonl"
    other.write_bytes(line(good(1)))
    stats = ingest(store, [bad, other])
    assert reconciled(stats) and stats.accepted == 1 and stats.quarantine_reasons == {"corrupt_file": 1}
    ((file, _, code, message),) = quarantine(store)
    assert file == str(bad) and code == "corrupt_file" and "Parquet" in message
