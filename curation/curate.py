"""Curation run: the stages after ingest, in order, each reading the previous one's table.

dedupe -> redact -> leak gate (later issues add filters, split and export here)."""

from __future__ import annotations

from typing import Any

from curation import dedupe, leakgate, redact
from curation.store import Store
from schemas.config import Config


def leak_check(store: Store) -> int:
    """Run the leak gate over the redacted messages of every kept trace; raises LeakError on a hit.
    Returns the number of traces checked."""
    rows = store.con.execute(
        "SELECT r.trace_id, r.messages, r.tools FROM redacted_messages r JOIN traces USING (trace_id) "
        "WHERE r.trace_id NOT IN (SELECT trace_id FROM dup_clusters WHERE reason IS NOT NULL) ORDER BY r.trace_id"
    ).fetchall()
    leakgate.check(rows)
    return len(rows)


def run(store: Store, config: Config) -> dict[str, Any]:
    """Run the curation stages; returns each stage's counts (the `--json` summary)."""
    summary: dict[str, Any] = {"traces": store.count("traces")}
    summary["dedupe"] = dedupe.run(store, config.dedupe).as_dict()
    summary["redact"] = redact.run(store, config.redact).as_dict()
    if config.redact.leak_gate:
        summary["leak_gate"] = {"checked": leak_check(store), "leaks": 0}
    return summary
