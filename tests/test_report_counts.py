"""The curation report's duplicate numbers on the sample data: the funnel, the drop reasons, the
duplicate section and the curate summary count the same dropped traces, and no cluster of size 1
is charted (a cluster is its kept trace plus the copies dropped in its favour)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

REASONS = ("exact_duplicate", "near_duplicate", "prefix_of")


@pytest.fixture(scope="module")
def sample_version(curated_samples) -> dict[str, Any]:
    """One dataset version curated from data/samples with the sample app's config."""
    store, summary, dataset = curated_samples
    decided = dict(
        store.con.execute(
            "SELECT reason, count(*) FROM decisions WHERE stage = 'dedupe' AND verdict = 'drop' GROUP BY ALL"
        ).fetchall()
    )
    mixed = store.con.execute(
        "SELECT count(*) FROM (SELECT cluster_id FROM dup_clusters WHERE reason IS NOT NULL "
        "GROUP BY ALL HAVING count(DISTINCT kind) > 1)"
    ).fetchone()[0]
    latest = dataset / "latest"
    return {
        "summary": summary,
        "decided": decided,
        "mixed": mixed,
        "payload": json.loads((latest / "report.json").read_text()),
        "html": (latest / "report.html").read_text(),
        "page": latest / "report.html",
    }


def test_funnel_drop_reasons_cluster_section_and_summary_agree(sample_version) -> None:
    p, summary = sample_version["payload"], sample_version["summary"]
    dups = p["duplicates"]
    assert sample_version["mixed"] > 0  # clusters mixing kinds (what the old per-kind grouping miscounted)
    by_reason = dups["dropped_by_reason"]
    assert set(by_reason) == set(REASONS) and all(by_reason[r] > 0 for r in REASONS)
    assert by_reason == {r: p["reasons"]["dedupe"][r] for r in REASONS} == sample_version["decided"]
    d = summary["stages"]["dedupe"]
    assert by_reason == d["dropped"]
    funnel = next(f for f in p["funnel"] if f["stage"] == "dedupe")
    assert funnel["in"] - funnel["out"] == dups["dropped"] + dups["quarantined"] == sum(p["reasons"]["dedupe"].values())
    assert funnel["out"] == d["kept"] == p["funnel_counts"]["after_dedupe"]
    assert dups["clusters"] == d["detail"]["clusters"] == sum(dups["sizes"].values())
    assert sum(int(k) * n for k, n in dups["sizes"].items()) == dups["clusters"] + dups["dropped"]
    assert p["reconciled"] is True


def test_the_page_shows_the_same_numbers_and_no_cluster_of_size_1(sample_version) -> None:
    p, html = sample_version["payload"], sample_version["html"]
    dups = p["duplicates"]
    assert min(int(k) for k in dups["sizes"]) >= 2
    section = html[html.index('<section id="duplicates">') : html.index('<section id="split">')]
    chart = re.search(r'<svg[^>]*aria-label="Duplicate clusters by size[^"]*".*?</svg>', section, re.S)
    assert chart is not None
    labels = re.findall(r'text-anchor="end">size (\d+) \(1 kept \+ (\d+) dropped\)</text>', chart.group(0))
    assert labels and all(int(n) >= 2 and int(d) == int(n) - 1 for n, d in labels)
    assert {n for n, _ in labels} == set(dups["sizes"])
    counts = re.search(r'<p id="dup-counts">(.*?)</p>', section, re.S)
    assert counts is not None
    text = re.sub(r"<[^>]+>", "", counts.group(1))
    assert f"{dups['dropped']} dropped copies" in text and f"in {dups['clusters']} clusters" in text
    for reason in REASONS:
        n = p["reasons"]["dedupe"][reason]
        assert f"{reason} {n}" in text
        assert f'<td>dedupe</td><td>{reason}</td><td class="num">{n}</td>' in html  # the drop-reasons row
    for c in dups["examples"]:
        assert c["size"] == 1 + c["dropped"] >= 2 and [m["dropped"] for m in c["members"]].count(False) == 1


def test_a_reviewer_sees_the_counts_in_the_browser(sample_version) -> None:
    from tests.browser import open_page

    dups = sample_version["payload"]["duplicates"]
    with open_page(sample_version["page"]) as (page, _, errors):
        section = page.locator("section#duplicates")
        assert section.is_visible()
        text = page.locator("#dup-counts").inner_text()
        assert f"{dups['dropped']} dropped copies" in text and f"{dups['clusters']} clusters" in text
        assert section.locator("svg rect").count() == len(dups["sizes"])
        labels = section.locator("svg text").all_text_contents()
        assert any(t.startswith("size 2 ") for t in labels) and not any(t.startswith("size 1 ") for t in labels)
    assert errors == []
