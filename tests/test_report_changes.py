"""The curation report of version N opens with what changed since N-1: rows added and removed per
split (by trace id), drop-reason, PII and duplicate-cluster deltas and new rows; a trace a reviewer
excluded is removed, counted under `review:excluded_by_review`, and the funnel still reconciles."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from curation import changes, curate
from curation.ingest.run import ingest
from curation.store import Store
from schemas.config import Config, load_config
from tests.helpers import DEMO_CONFIG, chat_log, convo, write_jsonl

WORDS = [
    *("parcel", "tent", "jacket", "boots", "refund", "invoice", "tracking", "zipper", "stove", "lantern"),
    *("backpack", "sleeping", "bag", "warranty", "exchange", "colour", "size", "courier", "damaged", "missing"),
    *("charged", "twice", "promo", "code", "account", "password", "login", "app", "checkout", "crash"),
]


def batch(seed: int, n: int, prefix: str) -> list[dict[str, Any]]:
    """n distinct calls (no duplicates among them) and one exact copy of the first."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = "Hello, " + " ".join(rng.choice(WORDS) for _ in range(40)) + ". Thanks."
        answer = json.dumps({"priority": rng.choice(["low", "high"]), "summary": " ".join(rng.sample(WORDS, 6))})
        out.append(chat_log(f"{prefix}-{i:03d}", convo(text), answer, created=1790000000 + i))
    out.append({**out[0], "response": {**out[0]["response"], "id": f"{prefix}-copy"}})
    return out


def config() -> Config:
    cfg = load_config(DEMO_CONFIG)
    cfg.redact.workers = 1
    cfg.filter.expect_json_schema = None
    cfg.split.min_holdout = 2
    return cfg


def read(folder: Path) -> dict[str, Any]:
    return {
        "ids": json.loads((folder / "trace_ids.json").read_text()),
        "report": json.loads((folder / "report.json").read_text()),
        "manifest": json.loads((folder / "manifest.json").read_text()),
        "html": (folder / "report.html").read_text(),
        "card": (folder / "README.md").read_text(),
        "lines": {s: len((folder / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "holdout")},
    }


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> dict[str, Any]:
    """v1 from one file; a reviewer excludes a v1 train trace; more traces arrive; v2."""
    tmp = tmp_path_factory.mktemp("changes")
    out = tmp / "dataset"
    cfg = config()
    with Store(tmp / "t.duckdb") as store:
        ingest(store, [write_jsonl(tmp / "one.jsonl", batch(1, 24, "a"))])
        curate.run(store, cfg, out)
        v1 = read(out / "v0001")
        excluded = v1["ids"]["train"][0]
        store.con.execute(
            "INSERT INTO review_exclusions (trace_id, version, reviewer, note) VALUES (?, 1, 'rita', 'wrong ticket')",
            [excluded],
        )
        ingest(store, [write_jsonl(tmp / "two.jsonl", batch(2, 12, "b"))])
        summary = curate.run(store, cfg, out)
        decided = dict(store.con.execute("SELECT verdict, count(*) FROM decisions GROUP BY ALL").fetchall())
        n_traces = store.count("traces")
    v2 = read(out / "v0002")
    return dict(
        out=out, v1=v1, v2=v2, excluded=excluded, summary=summary, decided=decided, n_traces=n_traces, tmp=tmp, cfg=cfg
    )


def test_first_version_says_so(versions) -> None:
    v1 = versions["v1"]
    c = v1["report"]["changes"]
    n, m = v1["lines"]["train"], v1["lines"]["holdout"]
    assert c["first_version"] is True and c["parent_version"] is None
    assert c["summary"] == f"first version: {n} train and {m} holdout rows"
    assert c["reasons"] == [] and c["pii"] == [] and c["sample"] == []
    assert f"first version: {n} train and {m} holdout rows" in changes.markdown(c)
    html = v1["html"]
    assert html.index('<section id="changes">') < html.index('<section id="funnel">')
    assert "Changes since" not in v1["card"]
    assert "review" not in {f["stage"] for f in v1["report"]["funnel"]}


def test_rows_added_and_removed_are_the_trace_id_differences(versions) -> None:
    v1, v2 = versions["v1"], versions["v2"]
    c = v2["report"]["changes"]
    assert c["first_version"] is False and c["parent_version"] == 1 and c["problems"] == []
    for s in ("train", "holdout"):
        before, now = set(v1["ids"][s]), set(v2["ids"][s])
        d = c["splits"][s]
        assert d["added_ids"] == sorted(now - before) and d["removed_ids"] == sorted(before - now)
        assert d["before"] == len(v1["ids"][s]) == v1["lines"][s]
        assert d["now"] == len(v2["ids"][s]) == v2["lines"][s]
        assert d["now"] == d["before"] + d["added"] - d["removed"]
    assert c["splits"]["train"]["added"] > 0
    assert versions["excluded"] in c["splits"]["train"]["removed_ids"]
    assert c["splits"]["train"]["removed_by_reason"]["review:excluded_by_review"] == 1
    assert {"trace_id": versions["excluded"], "split": "train", "reason": "review:excluded_by_review"} in c[
        "removed_sample"
    ]
    added = set(c["splits"]["train"]["added_ids"]) | set(c["splits"]["holdout"]["added_ids"])
    assert c["sample"] and len(c["sample"]) <= 5
    assert all(r["trace_id"] in added and r["user"].startswith("Hello,") and r["assistant"] for r in c["sample"])


def test_reason_and_cluster_deltas(versions) -> None:
    v1, v2 = versions["v1"], versions["v2"]
    c = v2["report"]["changes"]
    deltas = {r["reason"]: r for r in c["reasons"]}
    review = {"reason": "review:excluded_by_review", "before": 0, "now": 1, "delta": 1}
    assert deltas["review:excluded_by_review"] == review
    assert deltas["dedupe:exact_duplicate"]["delta"] == 1  # the copy in the second file
    assert all(r["delta"] == r["now"] - r["before"] != 0 for r in c["reasons"])
    before, now = set(v1["report"]["duplicates"]["cluster_ids"]), set(v2["report"]["duplicates"]["cluster_ids"])
    assert c["clusters"]["new"] == len(now - before) == 1 and c["clusters"]["ids"] == sorted(now - before)
    assert c["pii"] is not None and all(p["delta"] == p["now"] - p["before"] != 0 for p in c["pii"])


def test_the_review_drop_is_in_the_funnel_and_the_counts_reconcile(versions) -> None:
    v2 = versions["v2"]
    p, m = v2["report"], v2["manifest"]
    review = next(f for f in p["funnel"] if f["stage"] == "review")
    stages = [f["stage"] for f in p["funnel"]]
    assert stages.index("leak gate") < stages.index("review") < stages.index("filter")
    assert review["in"] - review["out"] == 1
    filt = next(f for f in p["funnel"] if f["stage"] == "filter")
    assert filt["in"] == review["out"] == versions["summary"]["stages"]["filter"]["in"]
    assert p["reconciled"] is True
    assert m["reasons"]["review"] == {"excluded_by_review": 1} == p["reasons"]["review"]
    assert m["counts"]["after_review"] == review["out"]
    assert m["counts"]["kept"] + m["counts"]["dropped"] == versions["n_traces"]
    assert versions["decided"] == {"keep": m["counts"]["kept"], "drop": m["counts"]["dropped"]}
    assert m["counts"]["kept"] == v2["lines"]["train"] + v2["lines"]["holdout"]
    row = (
        f'<td>review</td><td class="num">{review["in"]}</td><td class="num">{review["out"]}</td><td class="num">1</td>'
    )
    assert row in v2["html"]


def test_the_page_opens_with_the_changes(versions) -> None:
    v2 = versions["v2"]
    c, html = v2["report"]["changes"], v2["html"]
    start, end = html.index('<section id="changes">'), html.index('<section id="funnel">')
    assert start < end
    section = html[start:end]
    assert "Changes since version 1" in section
    for s, d in c["splits"].items():
        cells = "".join(f'<td class="num">{d[k]}</td>' for k in ("before", "added", "removed", "now"))
        assert f"<td>{s}</td>{cells}" in section
    assert "review:excluded_by_review" in section and "+1" in section
    assert c["clusters"]["ids"][0] in section
    text = re.sub(r"<[^>]+>", " ", section)
    assert all(r["trace_id"] in text for r in c["sample"])
    assert "## Changes since v1" in v2["card"]
    tr = c["splits"]["train"]
    assert f"| train | {tr['before']} | {tr['added']} | {tr['removed']} | {tr['now']} |" in v2["card"]


def test_markdown_holds_the_counts(versions) -> None:
    c = versions["v2"]["report"]["changes"]
    md = changes.markdown(c)
    assert md.startswith("## Changes since v1\n")
    for s, d in c["splits"].items():
        assert f"| {s} | {d['before']} | {d['added']} | {d['removed']} | {d['now']} |" in md
    assert (
        "| review:excluded_by_review | 0 | 1 | +1 |" in md
        and "Removed rows by reason: `review:excluded_by_review` 1" in md
    )
    assert f"**New duplicate clusters**: {c['clusters']['new']}" in md
    assert all(r["trace_id"] in md for r in c["sample"])
    assert all(len(line) < 400 for line in md.splitlines())


def test_markdown_cells_are_one_line_and_escaped() -> None:
    long = "a|b\nc <script>x</script> " + "word " * 60
    c = {
        "parent_version": 3,
        "first_version": False,
        "summary": "since v3: ...",
        "splits": {"train": {"before": 1, "added": 1, "removed": 1, "now": 1}},
        "reasons": [],
        "pii": None,
        "clusters": {"new": 0, "ids": []},
        "sample": [{"trace_id": "t|1", "split": "train", "user": long, "assistant": "ok"}],
        "problems": [],
    }
    row = next(line for line in changes.markdown(c).splitlines() if line.startswith("| t\\|"))
    assert row.startswith("| t\\|1 | train | a\\|b c &lt;script&gt;x&lt;/script&gt; word")
    assert "…" in row and row.count(" | ") == 3
    assert "**PII found**: not compared" in changes.markdown(c)


def test_prompt_completion_rows_are_shortened() -> None:
    row = {"prompt": "system: s\nuser: " + "x" * 500 + " last words\nassistant:", "completion": " " + "y" * 400}
    ex = changes.row_excerpt(row)
    assert ex["user"].startswith("[...] ") and ex["user"].endswith("last words")
    assert ex["assistant"].startswith("yyy") and ex["assistant"].endswith(" [...]")
    call = {"id": "1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    chat = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [call]}]
    }
    assert changes.row_excerpt(chat) == {"user": "hi", "assistant": "tool call: lookup"}


@pytest.mark.parametrize(
    ("trace_ids", "report", "problem"),
    [
        (None, None, "trace_ids.json is missing"),
        (b"{not json", b"[1, 2", "trace_ids.json could not be read"),
        (b'{"train": 5}', b'{"version": 7}', "does not list train and holdout"),
    ],
)
def test_a_damaged_parent_is_named_not_fatal(tmp_path, trace_ids, report, problem) -> None:
    parent = tmp_path / "v0007"
    parent.mkdir()
    for name, data in (("trace_ids.json", trace_ids), ("report.json", report)):
        if data is not None:
            (parent / name).write_bytes(data)
    c = changes.diff(parent, ["a", "b"], ["c"], {}, {"filter": {"too_short": 2}}, {"PERSON": 1}, ["dup:a"])
    assert c["parent_version"] == 7 and c["first_version"] is False
    assert any(problem in p for p in c["problems"])
    assert c["splits"]["train"] == {"before": None, "added": None, "removed": None, "now": 2}
    assert c["sample"] == [] and c["clusters"]["new"] is None
    md = changes.markdown(c)
    assert "| train | ? | ? | ? | 2 |" in md and "**Not compared**" in md


def test_a_damaged_parent_does_not_stop_the_run(versions) -> None:
    """A copy of the dataset whose v2 lost its report.json and has a corrupt trace_ids.json."""
    tmp, cfg = versions["tmp"], versions["cfg"]
    out = tmp / "damaged"
    shutil.copytree(versions["out"], out, symlinks=True)
    (out / "v0002" / "report.json").unlink()
    (out / "v0002" / "trace_ids.json").write_text("{oops")
    shutil.copy(tmp / "t.duckdb", tmp / "d.duckdb")
    with Store(tmp / "d.duckdb") as store:
        ingest(store, [write_jsonl(tmp / "three.jsonl", batch(3, 4, "c"))])
        curate.run(store, cfg, out)
    v3 = read(out / "v0003")
    c = v3["report"]["changes"]
    assert c["parent_version"] == 2
    assert any("report.json is missing" in p for p in c["problems"])
    assert any("trace_ids.json could not be read" in p for p in c["problems"])
    assert c["splits"]["train"]["now"] == v3["lines"]["train"] and c["splits"]["train"]["added"] is None
    assert c["reasons"] is not None  # read from the parent's manifest instead
    assert "Not compared" in v3["html"] and v3["report"]["reconciled"] is True
