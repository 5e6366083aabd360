"""Dedupe: exact copies, prefix chains and near-duplicates collapse as specified, the survivor
follows the policy over the whole store, and a cluster keeps its name when a better copy arrives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curation import dedupe, minhash, stage
from curation.ingest.run import ingest
from schemas.config import Config, DedupeConfig
from tests.conftest import ROOT, rows
from tests.helpers import chat_log, convo, write_jsonl

EMAIL = (
    "Hello, my order NW-100200 with a two-person tent has not arrived after twelve days and the tracking page "
    "has not changed since Monday. We leave for the Rockies on Friday, so I really need it this week. Thanks"
)
OTHER = (
    "Hi there, could you tell me whether the fleece hoodie also comes in forest green or navy? I am buying it "
    "as a present for my sister and her birthday is at the end of the month. Best, Sam"
)
ANSWER = '{"priority": "high", "category": "shipping", "summary": "Order not delivered after 12 days."}'


def run(store, cfg: DedupeConfig | None = None) -> dict:
    """The dedupe stage over the store; its stats as a dict ("in", "kept", "dropped", "detail"...)."""
    return stage.run(dedupe.DedupeStage(Config(dedupe=cfg or DedupeConfig())), store).as_dict()


def kept_ids(store) -> list[str]:
    return [r[0] for r in rows(store, f"SELECT trace_id FROM ({dedupe.DedupeStage(Config()).output()}) ORDER BY 1")]


def clusters(store) -> dict[str, tuple]:
    return {
        r[0]: r[1:] for r in rows(store, "SELECT trace_id, kind, representative, reason, similarity FROM dup_clusters")
    }


def test_exact_retries_collapse_to_one_survivor_by_policy(store, tmp_path):
    recs = [
        chat_log("r1", convo(EMAIL), ANSWER, created=100),
        chat_log("r2", convo(EMAIL), ANSWER, created=300),
        chat_log("r3", convo(EMAIL.upper()), ANSWER, created=200, feedback=1),  # case-insensitive by default
        chat_log("r4", convo(OTHER), ANSWER, created=50),
    ]
    ingest(store, [write_jsonl(tmp_path / "a.jsonl", recs)])
    stats = run(store, DedupeConfig())
    c = clusters(store)
    assert stats["dropped"] == {"exact_duplicate": 2} and stats["kept"] == 2
    # feedback first: r3 has a thumbs up, so it survives although r2 is newer
    assert c["openai_chat:r1"] == ("exact_duplicate", "openai_chat:r3", "exact_duplicate", 1.0)
    assert c["openai_chat:r2"][1:3] == ("openai_chat:r3", "exact_duplicate")
    assert c["openai_chat:r3"][2] is None and "openai_chat:r4" not in c
    # a later run with another policy keeps another copy; the cluster keeps the name of its earliest member
    assert run(store, DedupeConfig(survivor=["newest"]))["kept"] == 2
    assert clusters(store)["openai_chat:r3"][1] == "openai_chat:r2"
    names = rows(store, "SELECT DISTINCT cluster_id FROM dup_clusters")
    assert names == [("dup:openai_chat:r1",)]


def test_newest_policy_on_a_fresh_store(tmp_path):
    from curation.store import Store

    recs = [chat_log("a", convo(EMAIL), ANSWER, created=100), chat_log("b", convo(EMAIL), ANSWER, created=300)]
    with Store(tmp_path / "fresh.duckdb") as store:
        ingest(store, [write_jsonl(tmp_path / "b.jsonl", recs)])
        run(store, DedupeConfig(survivor=["newest"]))
        assert clusters(store)["openai_chat:a"][1] == "openai_chat:b"


def test_prefix_chain_keeps_the_longest_call(store, tmp_path):
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "lookup_order", "arguments": '{"order_id": "NW-100200"}'},
    }
    step1 = convo(EMAIL)
    step2 = [
        *step1,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "in_transit"}'},
    ]
    step3 = [*step2, {"role": "assistant", "content": ANSWER}, {"role": "user", "content": "Escalate, they called."}]
    recs = [
        chat_log("p1", step1, None, session="s", tool_calls=[call]),
        chat_log("p2", step2, ANSWER, session="s"),
        chat_log("p3", step3, ANSWER.replace("high", "urgent"), session="s"),
    ]
    ingest(store, [write_jsonl(tmp_path / "p.jsonl", recs)])
    stats = run(store, DedupeConfig())
    c = clusters(store)
    assert stats["dropped"] == {"prefix_of": 2} and stats["kept"] == 1
    assert c["openai_chat:p1"][1:3] == ("openai_chat:p3", "prefix_of")
    assert c["openai_chat:p2"][1:3] == ("openai_chat:p3", "prefix_of")
    assert kept_ids(store) == ["openai_chat:p3"]


def test_near_duplicates_cluster_and_unrelated_texts_do_not(store, tmp_path):
    edited = EMAIL.replace("Hello,", "Hi,").replace("Thanks", "Thanks a lot")
    recs = [
        chat_log("n1", convo(EMAIL), ANSWER, created=1),
        chat_log("n2", convo(edited), ANSWER, created=2),
        chat_log("n3", convo(OTHER), ANSWER, created=3),
    ]
    ingest(store, [write_jsonl(tmp_path / "n.jsonl", recs)])
    stats = run(store, DedupeConfig(verify="exact"))
    c = clusters(store)
    assert stats["dropped"] == {"near_duplicate": 1}
    kind, rep, reason, sim = c["openai_chat:n1"]
    assert (kind, rep, reason) == ("near_duplicate", "openai_chat:n2", "near_duplicate") and 0.8 <= sim < 1
    assert "openai_chat:n3" not in c


def test_system_prompt_is_left_out_of_the_shingles_by_default(store, tmp_path):
    long_system = " ".join(f"rule{i} applies" for i in range(300))  # long and shared by both traces
    recs = [
        chat_log(f"s{i}", [{"role": "system", "content": long_system}, {"role": "user", "content": q}], a)
        for i, (q, a) in enumerate([(EMAIL, ANSWER), (OTHER, '{"priority": "low"}')])
    ]
    ingest(store, [write_jsonl(tmp_path / "s.jsonl", recs)])
    assert run(store, DedupeConfig())["dropped"] == {}
    assert run(store, DedupeConfig(include_system=True))["dropped"] == {"near_duplicate": 1}


def test_incremental_run_reuses_signatures_and_decides_as_from_scratch(store, tmp_path):
    ingest(store, [write_jsonl(tmp_path / "day1.jsonl", [chat_log("old", convo(EMAIL), ANSWER, created=1)])])
    first = run(store, DedupeConfig())
    assert first["processed"] == 1 and first["kept"] == 1
    nightly = EMAIL.replace("Hello,", "Good morning,")
    ingest(store, [write_jsonl(tmp_path / "day2.jsonl", [chat_log("new", convo(nightly), ANSWER, created=99)])])
    second = run(store, DedupeConfig(survivor=["newest"]))
    assert second["processed"] == 1  # only the new trace is hashed
    # newest wins, as it would from scratch; the cluster is still named after "old" (the split's group)
    assert clusters(store)["openai_chat:old"][1:3] == ("openai_chat:new", "near_duplicate")
    assert rows(store, "SELECT DISTINCT cluster_id FROM dup_clusters") == [("dup:openai_chat:old",)]
    before = rows(store, "SELECT * FROM dup_clusters ORDER BY trace_id")
    run(store, DedupeConfig(survivor=["newest"]))
    assert rows(store, "SELECT * FROM dup_clusters ORDER BY trace_id") == before  # idempotent


def test_a_trace_the_stage_cannot_read_is_quarantined_not_kept(store, tmp_path):
    ingest(store, [write_jsonl(tmp_path / "q.jsonl", [chat_log("ok", convo(EMAIL), ANSWER)])])
    store.con.execute("UPDATE traces SET messages = '[{\"content\": \"no role\"}]' WHERE trace_id = 'openai_chat:ok'")
    stats = run(store, DedupeConfig())
    assert stats["dropped"] == {"dedupe_error": 1} and stats["kept"] == 0
    assert rows(store, "SELECT stage, code, trace_id FROM quarantine") == [("dedupe", "dedupe_error", "openai_chat:ok")]
    assert kept_ids(store) == []


def test_minhash_estimates_jaccard_and_lsh_finds_close_pairs():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(3000)]
    base = [" ".join(rng.choice(words, 120)) for _ in range(300)]
    copies = []
    for text in base[:100]:
        toks = text.split()
        toks[rng.integers(0, 120)] = "changed"
        copies.append(" ".join(toks))
    shingles = minhash.shingle(base + copies, 3)
    sig = minhash.MinHasher(128).signatures(shingles)
    bands, rows_ = minhash.optimal_bands(0.8, 128)
    pairs = minhash.candidate_pairs(sig, bands, rows_)
    found = {tuple(p) for p in pairs.tolist()}
    assert all((i, 300 + i) in found for i in range(100))  # every planted copy (Jaccard ~0.95) is a candidate
    est, exact = minhash.estimated_jaccard(sig, pairs), minhash.exact_jaccard(shingles, pairs)
    assert np.abs(est - exact).mean() < 0.05
    assert minhash.shingle(["", "one two"], 3).ends.tolist() == [1, 2]  # short and empty texts get one shingle


def test_bands_times_rows_must_fit_the_permutations(store):
    with pytest.raises(ValueError, match=r"exceeds dedupe\.num_perm"):
        dedupe.near_duplicate_clusters(["a b c", "a b d"], DedupeConfig(bands=20, rows=10, num_perm=128))
    with pytest.raises(ValueError, match=r"exceeds dedupe\.num_perm"):
        dedupe.DedupeStage(Config(dedupe=DedupeConfig(bands=20, rows=10, num_perm=128)))


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    from curation.store import Store

    with Store(tmp_path_factory.mktemp("d") / "s.duckdb") as store:
        ingest(store, [ROOT / "data" / "samples"])
        stats = run(store, DedupeConfig())
        yield store, stats


def test_sample_data_planted_retries_and_prefix_chains_collapse(samples):
    store, stats = samples
    truth = json.loads((ROOT / "data" / "samples_truth.json").read_text())
    planted = {(r["file"], r["line"]): r["planted"] for r in truth["records"]}
    kinds = {}
    for f, line, kind, reason in rows(
        store,
        "SELECT t.source_file, t.source_line, c.kind, c.reason FROM traces t LEFT JOIN dup_clusters c USING (trace_id)",
    ):
        kinds.setdefault((f.rsplit("/", 1)[-1], line), []).append((kind, reason))
    retries = [k for k, p in planted.items() if "exact_retry" in p]
    assert retries and all(any(kind is not None for kind, _ in kinds[k]) for k in retries)
    assert stats["dropped"]["exact_duplicate"] >= len(retries)
    first_tool_calls = [
        k for k, p in planted.items() if "tool_call" in p and "tool_result" not in p and not k[0].startswith("langfuse")
    ]
    assert first_tool_calls and all(("prefix_of", "prefix_of") in kinds[k] for k in first_tool_calls)
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values())
    assert set(stats["dropped"]) == set(dedupe.KINDS)
