"""The redact stage over the store: each trace kept by dedupe that has no redaction under the current
settings is redacted, a partition at a time. A text is analyzed once ever: its findings are kept in
`pii_findings` by text hash and analyzer digest, so the system prompt every trace repeats costs one
analysis for the whole store, and a later run only analyzes texts it has never seen."""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractContextManager
from typing import Any

import orjson
import pyarrow as pa
import xxhash

from curation import redact
from curation.fields import exported_fields
from curation.stage import Stage, rows
from curation.store import Store
from schemas.config import RedactConfig

REDACTION_COLUMNS = (
    "trace_id",
    "message_index",
    "field",
    "entity_type",
    "start_offset",
    "end_offset",
    "score",
    "recognizer",
    "placeholder",
)
_INT_COLUMNS = ("message_index", "start_offset", "end_offset")


def text_hash(text: str) -> str:
    """The key of a text's findings."""
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8", "surrogatepass"))


def redact_texts(store: Store | None, rc: RedactConfig, texts: list[str]) -> list[str]:
    """Texts from outside a trace's messages (input file paths, quarantine excerpts and messages) redacted
    as trace text is. With a writable `store`, each distinct text is analyzed once ever (`pii_findings`)."""
    digest = redact.analyzer_digest(rc)
    distinct = list(dict.fromkeys(t for t in texts if t.strip()))
    cached: dict[str, list[redact.Finding]] = {}
    if store is not None and distinct:
        keys = [text_hash(t) for t in distinct]
        sql = "SELECT text_hash, findings FROM pii_findings WHERE analyzer = ? AND list_contains(?, text_hash)"
        found = store.con.execute(sql, [digest, keys]).fetchall()
        cached = {h: [tuple(f) for f in orjson.loads(js)] for h, js in found}
    todo = [t for t in distinct if text_hash(t) not in cached]
    fresh = dict(zip(todo, redact.analyze_texts(todo, rc), strict=True))
    writable = store is not None and not store.read_only
    if writable and fresh:
        rows = [(text_hash(t), digest, orjson.dumps(f).decode()) for t, f in fresh.items()]
        store.con.executemany("INSERT INTO pii_findings VALUES (?, ?, ?)", rows)
    out = []
    for text in texts:
        found = fresh[text] if text in fresh else cached.get(text_hash(text), [])
        field = [(0, "content", text)]
        out.append(redact.redact_trace([{"content": text}], None, field, [found], rc)[0][0]["content"])
    return out


class RedactStage(Stage):
    """PII and secrets replaced by typed placeholders in every exported field."""

    name = "redact"
    reasons = ("redact_error", "not_redacted")

    def __init__(self, cfg: Any, upstream: str = "SELECT trace_id FROM traces") -> None:
        super().__init__(cfg, upstream)
        self.rc = cfg.redact
        self.digest = redact.analyzer_digest(self.rc)
        self.counts: Counter[str] = Counter()

    def pending(self) -> tuple[str, list[Any]]:
        return self.lacking("SELECT trace_id FROM redacted_messages WHERE config_hash = ?", [self.digest])

    def columns(self) -> str:
        return "t.trace_id, t.messages, t.tools"

    def session(self) -> AbstractContextManager[Any]:
        return redact.analyzer_pool(self.rc)

    def prepare(self, store: Store, part: pa.Table) -> dict[str, Any]:
        """The traces' fields and the stored findings of the texts seen before."""
        traces, failures = [], []
        for tid, messages, tools in rows(part):
            try:
                m, t = orjson.loads(messages), orjson.loads(tools) if tools else None
                traces.append((tid, m, t, exported_fields(m, t)))
            except (orjson.JSONDecodeError, TypeError, AttributeError) as exc:
                failures.append((tid, "redact_error", f"{type(exc).__name__}: {exc}"))
        hashes = sorted({text_hash(text) for *_, fields in traces for _, _, text in fields if text.strip()})
        store.con.register("_hashes", pa.table({"text_hash": hashes}))
        cached = dict(
            store.con.execute(
                "SELECT text_hash, findings FROM pii_findings SEMI JOIN _hashes USING (text_hash) WHERE analyzer = ?",
                [self.digest],
            ).fetchall()
        )
        store.con.unregister("_hashes")
        return {"traces": traces, "failures": failures, "cached": cached}

    def process(self, part: pa.Table, prepared: dict[str, Any], resources: Any) -> dict[str, Any]:
        traces, cached = prepared["traces"], prepared["cached"]
        todo = list(
            dict.fromkeys(
                text for *_, fields in traces for _, _, text in fields if text.strip() and text_hash(text) not in cached
            )
        )
        found = redact.analyze_texts(todo, self.rc, resources.get(len(todo)) if resources else None)
        fresh = {text_hash(t): f for t, f in zip(todo, found, strict=True)}
        by_hash = {h: [tuple(f) for f in orjson.loads(js)] for h, js in cached.items()} | fresh
        out, redactions, failures = [], [], list(prepared["failures"])
        n_texts = 0
        for tid, messages, tools, fields in traces:
            n_texts += len(fields)
            findings = [by_hash.get(text_hash(text), []) if text.strip() else [] for _, _, text in fields]
            try:
                new_messages, new_tools, rows_ = redact.redact_trace(messages, tools, fields, findings, self.rc)
            except (ValueError, KeyError, IndexError, TypeError, orjson.JSONDecodeError) as exc:
                failures.append((tid, "redact_error", f"{type(exc).__name__}: {exc}"))
                continue
            out.append(
                (
                    tid,
                    orjson.dumps(new_messages).decode(),
                    orjson.dumps(new_tools).decode() if new_tools is not None else None,
                    len(rows_),
                )
            )
            redactions += [(tid, *r) for r in rows_]
        counts = Counter(texts=n_texts, analyzed=len(todo), reused=len(cached))
        return {
            "ids": part.column(0).to_pylist(),
            "redacted": out,
            "redactions": redactions,
            "failures": failures,
            "findings": [(h, orjson.dumps(f).decode()) for h, f in fresh.items()],
            "counts": counts,
        }

    def write(self, store: Store, out: dict[str, Any]) -> None:
        self.counts.update(out["counts"])
        redacted = pa.table(
            {
                "trace_id": [r[0] for r in out["redacted"]],
                "messages": [r[1] for r in out["redacted"]],
                "tools": pa.array([r[2] for r in out["redacted"]], type=pa.string()),
                "n": pa.array([r[3] for r in out["redacted"]], type=pa.int32()),
            }
        )
        found = pa.table(
            {
                c: pa.array(
                    [r[k] for r in out["redactions"]],
                    type=pa.int32() if c in _INT_COLUMNS else pa.float64() if c == "score" else pa.string(),
                )
                for k, c in enumerate(REDACTION_COLUMNS)
            }
        )
        findings = pa.table({"text_hash": [f[0] for f in out["findings"]], "findings": [f[1] for f in out["findings"]]})
        con = store.con
        for name, table in (("_redacted", redacted), ("_found", found), ("_findings", findings), ("_ids", None)):
            con.register(name, table if table is not None else pa.table({"trace_id": out["ids"]}))
        con.execute("INSERT INTO pii_findings SELECT text_hash, ?, findings FROM _findings", [self.digest])
        con.execute("DELETE FROM redactions WHERE trace_id IN (SELECT trace_id FROM _ids)")
        con.execute("DELETE FROM redacted_messages WHERE trace_id IN (SELECT trace_id FROM _ids)")
        con.execute(
            "INSERT INTO redacted_messages (trace_id, messages, tools, n_redactions, config_hash) "
            "SELECT trace_id, messages, tools, n, ? FROM _redacted",
            [self.digest],
        )
        con.execute(f"INSERT INTO redactions ({', '.join(REDACTION_COLUMNS)}) SELECT * FROM _found")
        for name in ("_redacted", "_found", "_findings", "_ids"):
            con.unregister(name)
        store.quarantine_traces(self.name, out["failures"], retried=out["ids"])

    def finish(self, store: Store) -> dict[str, Any]:
        entities = store.con.execute(
            f"SELECT entity_type, count(*) FROM redactions SEMI JOIN ({self.output()}) o USING (trace_id) "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        return {**self.counts, "entities": {str(e): int(n) for e, n in entities}}

    def drops(self) -> str:
        failed = "SELECT trace_id FROM quarantine WHERE stage = 'redact' AND trace_id IS NOT NULL"
        done = f"SELECT trace_id FROM redacted_messages WHERE config_hash = '{self.digest}'"
        return (
            f"SELECT trace_id, code AS reason, NULL AS detail FROM quarantine WHERE trace_id IN ({failed}) "
            f"AND stage = 'redact' UNION ALL SELECT trace_id, 'not_redacted', NULL FROM traces "
            f"WHERE trace_id NOT IN ({done}) AND trace_id NOT IN ({failed})"
        )
