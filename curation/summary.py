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


def drop_reason_rows(reasons: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """One row per stage and reason code (`decisions.reasons_by_stage`) with its count, most frequent first."""
    rows = [{"stage": st, "reason": r, "traces": n} for st, rs in reasons.items() for r, n in rs.items()]
    return sorted(rows, key=lambda r: (-r["traces"], r["stage"], r["reason"]))
