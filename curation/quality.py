"""The quality stages on redacted traces: the rules (`curation.filters`) and the export checks, which
build each kept trace's output row, count its tokens and check it the way OpenAI's format checks do.
The row is stored with its verdict (`export_rows`), so the export only streams stored rows."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from curation import export, filters, rule_base
from curation.stage import rows
from curation.store import Store
from curation.tokens import joined_counter
from curation.verdicts import Verdict, VerdictStage
from schemas.config import config_hash


class FilterStage(VerdictStage):
    """The quality rules, in order; a trace's first reason is its verdict."""

    name = "filter"
    reasons = tuple(dict.fromkeys(r for rule in filters.RULES for r in rule.reasons))
    error_reason = "filter_error"

    def __init__(self, cfg: Any, upstream: str = "SELECT trace_id FROM traces") -> None:
        super().__init__(cfg, upstream)
        from curation.redact import analyzer_digest

        self.digest = f"{analyzer_digest(cfg.redact)}|{config_hash(cfg.filter)}"

    def columns(self) -> str:
        return f"{super().columns()}, t.model, t.tags, t.metadata, t.created_at, t.finish_reason, t.error, t.feedback"

    def judge(self, part: pa.Table) -> list[Verdict]:
        verdicts: dict[str, Verdict] = {}
        candidates = []
        for r in rows(part):
            made = self.guarded(r[0], lambda r=r: self._candidate(r))
            if isinstance(made, filters.Candidate):
                candidates.append(made)
            else:
                verdicts[r[0]] = made
        for c, reason in self._reasons(candidates):
            if isinstance(reason, tuple):
                verdicts[c.trace_id] = reason
            else:
                verdicts[c.trace_id] = (c.trace_id, reason, {"trimmed": c.trimmed} if c.trimmed else None)
        return [verdicts[t] for t in part.column(0).to_pylist()]

    @staticmethod
    def _candidate(r: tuple[Any, ...]) -> filters.Candidate:
        tid, _, msgs, tools, model, tags, meta, created, finish, error, fb = r
        return filters.Candidate(
            trace_id=tid,
            messages=orjson.loads(msgs),
            tools=orjson.loads(tools) if tools else None,
            model=model,
            tags=list(tags or []),
            metadata=orjson.loads(meta) if meta else {},
            created_at=created,
            finish_reason=finish,
            error=error,
            feedback=orjson.loads(fb) if fb else [],
        )

    def _reasons(self, candidates: list[filters.Candidate]) -> list[tuple[filters.Candidate, Any]]:
        """Each candidate's first reason; when the batch fails, one by one, so only the bad trace fails."""
        try:
            return list(zip(candidates, filters.judge(candidates, self.cfg.filter), strict=True))
        except rule_base.RuleError:
            raise
        except Exception:
            return [
                (c, self.guarded(c.trace_id, lambda c=c: filters.judge([c], self.cfg.filter)[0])) for c in candidates
            ]


class ExportCheckStage(VerdictStage):
    """Each kept trace as an output row in the configured format, checked; the row is stored."""

    name = "export"
    reasons = export.ROW_PROBLEMS
    error_reason = "export_error"

    def __init__(self, cfg: Any, upstream: str = "SELECT trace_id FROM traces") -> None:
        super().__init__(cfg, upstream)
        from curation.redact import analyzer_digest

        self.digest = f"{analyzer_digest(cfg.redact)}|{config_hash(cfg.filter)}|{config_hash(cfg.export)}"

    def judge(self, part: pa.Table) -> list[Verdict]:
        built: list[tuple[str, Any]] = []
        for tid, _, msgs, tools in rows(part):
            built.append((tid, self.guarded(tid, lambda m=msgs, t=tools: self._row(m, t))))
        ok = [(tid, row) for tid, row in built if isinstance(row, dict)]
        n_tokens = joined_counter(self.cfg.filter.tokenizer)([export.row_parts(r) for _, r in ok])
        tokens = dict(zip((tid for tid, _ in ok), n_tokens, strict=True))
        self._rows = []
        out: list[Verdict] = []
        for tid, row in built:
            if not isinstance(row, dict):
                out.append(row)
                continue
            problem = export.validate_row(row, tokens[tid], self.cfg.export)
            out.append((tid, problem, {"tokens": tokens[tid]} if problem else None))
            if problem is None:
                self._rows.append((tid, orjson.dumps(row).decode(), tokens[tid]))
        return out

    def _row(self, messages_json: str, tools_json: str | None) -> dict[str, Any]:
        messages, tools = orjson.loads(messages_json), orjson.loads(tools_json) if tools_json else None
        if self.cfg.filter.trailing_user == "trim":
            messages, _ = filters.trim_tail(messages)
        return export.build_row(messages, tools, self.cfg.export)

    def process(self, part: pa.Table, prepared: Any, resources: Any) -> dict[str, Any]:
        out = super().process(part, prepared, resources)
        return {**out, "rows": self._rows}

    def store_extra(self, store: Store, out: dict[str, Any]) -> None:
        keys = dict(zip((v[0] for v in out["verdicts"]), out["keys"], strict=True))
        table = pa.table(
            {
                "trace_id": [r[0] for r in out["rows"]],
                "key": [keys[r[0]] for r in out["rows"]],
                "row": [r[1] for r in out["rows"]],
                "tokens": pa.array([r[2] for r in out["rows"]], pa.int32()),
            }
        )
        store.con.register("_rows", table)
        store.con.register("_ids", pa.table({"trace_id": [v[0] for v in out["verdicts"]]}))
        store.con.execute("DELETE FROM export_rows WHERE trace_id IN (SELECT trace_id FROM _ids)")
        store.con.execute("INSERT INTO export_rows SELECT trace_id, key, row, tokens FROM _rows")
        store.con.unregister("_rows")
        store.con.unregister("_ids")
