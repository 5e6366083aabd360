"""Two gates between redaction and the quality rules: the leak gate (a second, high-precision scan of
the redacted text: a hit quarantines the trace, or with `leak_gate: fail` stops the run) and the
review gate (traces a reviewer excluded from an earlier version stay out of every later one)."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from curation import identifiers, leakgate
from curation.fields import exported_fields
from curation.stage import Stage, rows
from curation.store import Store
from curation.verdicts import Verdict, VerdictStage

MAX_LISTED_LEAKS = 100  # leak-gate hits listed by id in the summary (all are in `quarantine`)


class LeakGateStage(VerdictStage):
    """Scan everything an export writes; a trace with a hit is dropped with its first entity type."""

    name = "leak_gate"
    reasons = tuple(dict.fromkeys(i.entity for i in identifiers.IDENTIFIERS))
    error_reason = "leak_gate_error"

    def __init__(self, cfg: Any, upstream: str = "SELECT trace_id FROM traces") -> None:
        super().__init__(cfg, upstream)
        from curation.redact import analyzer_digest

        self.mode = cfg.redact.leak_gate
        self.digest = f"{analyzer_digest(cfg.redact)}|leak_gate"

    def quarantines(self) -> bool:
        return True

    def pending(self) -> tuple[str, list[Any]] | None:
        return None if self.mode == "off" else super().pending()

    def drops(self) -> str:
        return Stage.drops(self) if self.mode == "off" else super().drops()

    def judge(self, part: pa.Table) -> list[Verdict]:
        seen: dict[str, list[leakgate.Hit]] = {}  # a text repeated in the partition (the system prompt) is scanned once
        return [self.guarded(tid, lambda r=(tid, m, t): self._scan(*r, seen)) for tid, _, m, t in rows(part)]

    @staticmethod
    def _scan(trace_id: str, messages: str, tools: str | None, seen: dict[str, list[leakgate.Hit]]) -> Verdict:
        found: dict[str, list[str]] = {}
        for i, name, text in exported_fields(orjson.loads(messages), orjson.loads(tools) if tools else None):
            if text and text not in seen:
                seen[text] = leakgate.scan(text)
            for entity, _, _ in seen[text] if text else []:
                where = "tools" if i < 0 else f"messages[{i}].{name}"
                if where not in found.setdefault(entity, []):
                    found[entity].append(where)
        if not found:
            return (trace_id, None, None)
        detail = "; ".join(f"{e} in {', '.join(w)}" for e, w in found.items())
        message = f"leak gate: still present after redaction: {detail}"
        return (trace_id, next(iter(found)), {"types": list(found), "message": message})

    def finish(self, store: Store) -> dict[str, Any]:
        super().finish(store)
        flagged = store.con.execute(
            f"SELECT trace_id, detail FROM ({self.dropped()}) WHERE reason <> '{self.error_reason}' ORDER BY trace_id"
        ).fetchall()
        leaks = {t: orjson.loads(d)["types"] for t, d in flagged}
        if leaks and self.mode == "fail":
            raise leakgate.LeakError(leaks)
        listed = [{"trace_id": t, "types": types} for t, types in list(leaks.items())[:MAX_LISTED_LEAKS]]
        return {"mode": self.mode, "leaks": len(leaks), "listed": listed}


class ReviewStage(Stage):
    """Traces a reviewer excluded (`tracetune review --exclude`) are dropped from every later version."""

    name = "review"
    reasons = ("excluded_by_review",)

    def drops(self) -> str:
        return (
            "SELECT trace_id, 'excluded_by_review' AS reason, json_object('reviewed_version', version, 'note', note)"
            "::VARCHAR AS detail FROM review_exclusions"
        )
