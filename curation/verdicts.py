"""Stages whose outcome for a trace depends on that trace alone (leak gate, quality rules, export
checks): each trace's verdict is kept in `verdicts` under a key made of the trace's content hash and
the settings the stage depends on, so a later run only judges traces it has not judged under the
same settings. A trace the stage cannot judge gets the stage's error reason; the rest of its
partition goes on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa

from curation.stage import Stage
from curation.store import Store

Verdict = tuple[str, str | None, dict[str, Any] | None]  # (trace_id, reason or None = kept, detail)


class VerdictStage(Stage):
    """A stage that judges each trace on its own; subclasses set `digest` and implement `judge`."""

    error_reason = ""
    parallel = True

    def __init__(self, cfg: Any, upstream: str = "SELECT trace_id FROM traces") -> None:
        super().__init__(cfg, upstream)
        self.digest = ""
        self.counts: Counter[str] = Counter()

    def declared(self) -> tuple[str, ...]:
        return (*self.reasons, self.error_reason)

    def key_sql(self, alias: str = "t") -> str:
        """The verdict key of a trace of `traces {alias}` under the current settings."""
        return f"md5({alias}.content_hash || '|{self.digest}')"

    def pending(self) -> tuple[str, list[Any]]:
        return (
            f"SELECT u.trace_id FROM ({self.upstream}) u JOIN traces t USING (trace_id) WHERE NOT EXISTS "
            f"(SELECT 1 FROM verdicts v WHERE v.stage = ? AND v.trace_id = u.trace_id AND v.key = {self.key_sql()})",
            [self.name],
        )

    def columns(self) -> str:
        return f"t.trace_id, {self.key_sql()} AS key, r.messages, r.tools"

    def joins(self) -> str:
        return "JOIN redacted_messages r USING (trace_id)"

    def judge(self, part: pa.Table) -> list[Verdict]:
        """Verdicts of the traces of one partition (columns: trace_id, key, then the stage's own)."""
        raise NotImplementedError

    def guarded(self, trace_id: str, fn: Callable[[], Any]) -> Any:
        """`fn()`, or the trace's error verdict when it raises (one bad trace never stops a partition)."""
        try:
            return fn()
        except Exception as exc:
            return (trace_id, self.error_reason, {"error": f"{type(exc).__name__}: {str(exc)[:300]}"})

    def process(self, part: pa.Table, prepared: Any, resources: Any) -> dict[str, Any]:
        return {"keys": part.column("key").to_pylist(), "verdicts": self.judge(part)}

    def write(self, store: Store, out: dict[str, Any]) -> None:
        verdicts = out["verdicts"]
        table = pa.table(
            {
                "trace_id": [v[0] for v in verdicts],
                "key": out["keys"],
                "reason": pa.array([v[1] for v in verdicts], pa.string()),
                "detail": pa.array([orjson.dumps(v[2]).decode() if v[2] else None for v in verdicts], pa.string()),
            }
        )
        store.con.register("_verdicts", table)
        store.con.execute(
            "DELETE FROM verdicts WHERE stage = ? AND trace_id IN (SELECT trace_id FROM _verdicts)", [self.name]
        )
        store.con.execute("INSERT INTO verdicts SELECT ?, trace_id, key, reason, detail FROM _verdicts", [self.name])
        store.con.unregister("_verdicts")
        self.store_extra(store, out)

    def store_extra(self, store: Store, out: dict[str, Any]) -> None:
        """Anything else a partition's result holds (export rows)."""

    def drops(self) -> str:
        return (
            "SELECT v.trace_id, v.reason, v.detail FROM verdicts v JOIN traces t USING (trace_id) "
            f"WHERE v.stage = '{self.name}' AND v.reason IS NOT NULL AND v.key = {self.key_sql()}"
        )

    def finish(self, store: Store) -> dict[str, Any]:
        """Mirror the stage's failures among its input in `quarantine` (all its drops for the leak gate)."""
        only = "" if self.quarantines() else f"WHERE d.reason = '{self.error_reason}'"
        with store.transaction():
            store.con.execute("DELETE FROM quarantine WHERE stage = ?", [self.name])
            store.con.execute(
                "INSERT INTO quarantine (source_file, source_line, code, message, source_format, record_key, stage, "
                "trace_id) SELECT t.source_file, t.source_line, d.reason, coalesce(d.detail->>'message', "
                f"d.detail->>'error', d.reason), t.source_format, '{self.name}:' || t.trace_id, '{self.name}', "
                f"t.trace_id FROM ({self.dropped()}) d JOIN traces t USING (trace_id) {only}"
            )
        return dict(self.counts)

    def quarantines(self) -> bool:
        """Whether every drop of this stage is a quarantine (the leak gate), not only its errors."""
        return False
