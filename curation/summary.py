"""The curation run's summary as Markdown and table rows, for the flow's artifacts and logs."""

from __future__ import annotations

from typing import Any


def ingest_markdown(stats: dict[str, Any], db: str) -> str:
    """The ingest funnel and quarantine reasons as the `ingest-summary` Markdown."""
    reasons = "\n".join(f"| {k} | {v} |" for k, v in sorted(stats["quarantine_reasons"].items())) or "| - | 0 |"
    return (
        f"# Ingest\n\n{stats['files']} files ({stats['files_skipped']} unchanged) into `{db}`\n\n"
        f"| records | accepted | already present | quarantined |\n|---|---|---|---|\n"
        f"| {stats['records']} | {stats['accepted']} | {stats['already_present']} | {stats['quarantined']} |\n\n"
        f"## Quarantine reasons\n\n| code | records |\n|---|---|\n{reasons}\n"
    )


def funnel_markdown(summary: dict[str, Any]) -> str:
    """The curation funnel of a run summary (`curate.run`): stage, in, kept, dropped; the leak gate,
    the leakage check and the dataset version written."""
    d, r, f = summary["dedupe"], summary["redact"], summary["filter"]
    rows = [
        (
            "dedupe",
            d["traces"],
            d["kept"],
            f"exact {d['exact_duplicates']}, prefix_of {d['prefix_of']}, near {d['near_duplicates']}",
        ),
        ("redact", r["traces"], r["redacted"] + r["already_redacted"], f"quarantined {r['quarantined']}"),
    ]
    if "leak_gate" in summary:
        g = summary["leak_gate"]
        rows.append(("leak gate", g["checked"], g["checked"] - g["leaks"], f"quarantined {g['leaks']}"))
    rows.append(("filter", f["traces"], f["kept"], ", ".join(f"{k} {v}" for k, v in sorted(f["reasons"].items()))))
    leakage = summary.get("split", {}).get("leakage", {})
    rows.append(
        (
            "split",
            summary["train"] + summary["holdout"],
            f"train {summary['train']}, holdout {summary['holdout']}",
            f"leakage check passed ({leakage.get('near_pairs_checked', 0)} near pairs checked)",
        )
    )
    lines = ["# Curation", "", "| stage | in | kept | dropped |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {e or '-'} |" for a, b, c, e in rows]
    pii = summary["redact"].get("entities") or {}
    if pii:
        lines += ["", "PII and secrets redacted: " + ", ".join(f"{k} {v}" for k, v in sorted(pii.items()))]
    if "dataset" in summary:
        ds = summary["dataset"]
        lines += [
            "",
            f"Dataset version {ds['version']}{'' if ds['changed'] else ' (unchanged)'}: `{ds['path']}` "
            "(report.html, manifest.json, train.jsonl, holdout.jsonl)",
        ]
    return "\n".join(lines) + "\n"


def drop_reason_rows(reasons: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """One row per stage and reason code (`curate.reasons_by_stage`) with its count, most frequent first."""
    rows = [{"stage": st, "reason": r, "traces": n} for st, rs in reasons.items() for r, n in rs.items()]
    return sorted(rows, key=lambda r: (-r["traces"], r["stage"], r["reason"]))
