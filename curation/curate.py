"""Curation run: the stages after ingest, in order, each reading the previous one's output.

dedupe -> redact -> leak gate -> filter -> export checks -> split + leakage check -> export
(a dataset version with train/holdout JSONL, manifest, dataset card and the curation report).
Every trace ends with exactly one row in `decisions`: kept (with its side) or its first drop reason."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from curation import dedupe, export, filters, leakgate, redact, report, split
from curation.fields import exported_fields
from curation.store import Store
from curation.tokens import counter
from schemas.config import Config, config_hash
from schemas.dataset import TRACE_IDS, DatasetManifest, FileEntry, InputFile

DEDUPE_REASON = {"exact": "exact_duplicate", "prefix": "prefix_of", "near": "near_duplicate"}


class EmptyStoreError(ValueError):
    """The store holds no traces: there is nothing to curate yet."""


def require_traces(store: Store, how: str) -> int:
    """The number of traces in the store; EmptyStoreError (saying `how` to ingest) when there are none."""
    n = store.count("traces")
    if not n:
        raise EmptyStoreError(f"{store.path}: no traces to curate yet; ingest some first: {how}")
    return n


MAX_LISTED_LEAKS = 100  # leak-gate hits listed by id in the summary (all are in `quarantine`)


def leak_gate(store: Store, mode: str) -> dict[str, Any]:
    """Scan the redacted text of every trace kept by dedupe with the leak gate. `quarantine`: each
    trace with a hit is quarantined (stage `leak_gate`, reason = its first entity type; the message
    names the fields and types, never the values) and the run goes on; `fail`: raise LeakError.
    Returns the counts and the flagged trace ids with their entity types. `off` clears earlier hits."""
    rows = (
        []
        if mode == "off"
        else store.con.execute(
            "SELECT r.trace_id, r.messages, r.tools FROM redacted_messages r JOIN traces USING (trace_id) "
            "WHERE r.trace_id NOT IN (SELECT trace_id FROM dup_clusters WHERE reason IS NOT NULL) ORDER BY r.trace_id"
        ).fetchall()
    )
    leaks: dict[str, list[str]] = {}
    failures = []
    for trace_id, messages, tools in rows:
        found: dict[str, list[str]] = {}
        for i, name, text in exported_fields(orjson.loads(messages), orjson.loads(tools) if tools else None):
            for entity, _, _ in leakgate.scan(text) if text else []:
                where = "tools" if i < 0 else f"messages[{i}].{name}"
                found.setdefault(entity, [])
                if where not in found[entity]:
                    found[entity].append(where)
        if found:
            leaks[trace_id] = list(found)
            detail = "; ".join(f"{e} in {', '.join(w)}" for e, w in found.items())
            failures.append((trace_id, next(iter(found)), f"leak gate: still present after redaction: {detail}"))
    if leaks and mode == "fail":
        raise leakgate.LeakError(leaks)
    with store.transaction():
        store.quarantine_traces("leak_gate", failures)
    listed = [{"trace_id": t, "types": types} for t, types in list(leaks.items())[:MAX_LISTED_LEAKS]]
    return {"mode": mode, "checked": len(rows), "leaks": len(leaks), "quarantined": listed}


@dataclass
class Selection:
    """The outcome of filter, export checks and split for one run, before anything is written out."""

    decisions: dict[str, tuple[str, str, str | None, dict[str, Any]]] = field(default_factory=dict)
    train: export.Rows = field(default_factory=lambda: export.Rows([], [], []))
    holdout: export.Rows = field(default_factory=lambda: export.Rows([], [], []))
    summary: dict[str, Any] = field(default_factory=dict)


def _candidates(store: Store) -> list[filters.Candidate]:
    quarantined = {
        r[0]
        for r in store.con.execute(
            "SELECT trace_id FROM quarantine WHERE stage <> 'ingest' AND trace_id IS NOT NULL"
        ).fetchall()
    }
    excluded = {r[0] for r in store.con.execute("SELECT trace_id FROM review_exclusions").fetchall()}
    kept = set(dedupe.kept_ids(store)) - quarantined - excluded
    rows = store.con.execute(
        "SELECT t.trace_id, r.messages, r.tools, t.model, t.tags, t.metadata, t.created_at, t.finish_reason, "
        "t.error, t.feedback FROM traces t JOIN redacted_messages r USING (trace_id) ORDER BY t.trace_id"
    ).fetchall()
    out = []
    for tid, msgs, tools, model, tags, meta, created, finish, error, fb in rows:
        if tid not in kept:
            continue
        out.append(
            filters.Candidate(
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
        )
    return out


def _upstream_decisions(store: Store) -> dict[str, tuple[str, str, str | None, dict[str, Any]]]:
    """Drops made before the filter: quarantined by a stage, dropped as a duplicate, or excluded by a
    reviewer (every later version honours a review exclusion)."""
    out: dict[str, tuple[str, str, str | None, dict[str, Any]]] = {}
    for tid, stage, code in store.con.execute(
        "SELECT trace_id, stage, code FROM quarantine WHERE trace_id IS NOT NULL AND stage <> 'ingest'"
    ).fetchall():
        out[tid] = (stage, "drop", code, {})
    for tid, kind, rep, sim in store.con.execute(
        "SELECT trace_id, kind, representative, similarity FROM dup_clusters WHERE reason IS NOT NULL"
    ).fetchall():
        out.setdefault(
            tid, ("dedupe", "drop", DEDUPE_REASON.get(kind, kind), {"representative": rep, "similarity": sim})
        )
    for tid, version, note in store.con.execute(
        "SELECT trace_id, version, note FROM review_exclusions JOIN traces USING (trace_id)"
    ).fetchall():
        out.setdefault(tid, ("review", "drop", "excluded_by_review", {"reviewed_version": version, "note": note}))
    return out


def _members(store: Store, ids: list[str], tags: dict[str, list[str]]) -> list[split.Member]:
    store.con.register("_ids", pa.table({"trace_id": ids}))
    rows = store.con.execute(
        "SELECT t.trace_id, t.session_id, t.user_id, c.cluster_id FROM traces t JOIN _ids USING (trace_id) "
        "LEFT JOIN dup_clusters c USING (trace_id) ORDER BY t.trace_id"
    ).fetchall()
    store.con.unregister("_ids")
    return [split.Member(tid, sid, uid, cid, tags.get(tid, [])) for tid, sid, uid, cid in rows]


def select(store: Store, cfg: Config) -> Selection:
    """Filter the redacted traces, build and check their export rows, split them (leak-checked)."""
    sel = Selection(decisions=_upstream_decisions(store))
    candidates = _candidates(store)
    judged, fstats = filters.apply(candidates, cfg.filter)
    sel.summary["filter"] = fstats.as_dict()
    count = counter(cfg.filter.tokenizer)
    rows: dict[str, tuple[dict[str, Any], int]] = {}
    passed = [c for c, reason in judged if reason is None]
    built = [export.build_row(c.messages, c.tools, cfg.export) for c in passed]
    n_tokens = count([export.row_text(r) for r in built])
    invalid: Counter[str] = Counter()
    for c, reason in judged:
        if reason:
            sel.decisions[c.trace_id] = ("filter", "drop", reason, {"trimmed": c.trimmed} if c.trimmed else {})
    for c, row, n in zip(passed, built, n_tokens, strict=True):
        problem = export.validate_row(row, n, cfg.export)
        if problem:
            invalid[problem] += 1
            sel.decisions[c.trace_id] = ("export", "drop", problem, {"tokens": n})
        else:
            rows[c.trace_id] = (row, n)
    sel.summary["export_checks"] = {"rows": len(passed), "valid": len(rows), "reasons": dict(invalid)}

    ids = sorted(rows)
    members = _members(store, ids, {c.trace_id: c.tags for c in passed})
    sigs = dedupe.signatures_for(store, [m.trace_id for m in members], cfg.dedupe) if members else None
    previous = dict(store.con.execute("SELECT trace_id, split FROM splits").fetchall())
    sides, sstats = split.assign(members, cfg.split, previous, sigs)
    started = time.perf_counter()
    checked = split.check(members, sides, sigs, cfg.split.near_threshold, previous)
    sel.summary["split"] = {
        **sstats.as_dict(),
        "leakage": {"near_pairs_checked": checked, "leaks": 0, "seconds": round(time.perf_counter() - started, 3)},
    }
    for m in members:
        row, n = rows[m.trace_id]
        side = sel.train if sides[m.trace_id] == split.TRAIN else sel.holdout
        side.ids.append(m.trace_id)
        side.rows.append(row)
        side.tokens.append(n)
        sel.decisions[m.trace_id] = ("split", "keep", None, {"split": sides[m.trace_id], "group": m.group_key})
    _record(store, sel, members, sides, cfg)
    return sel


def _record(store: Store, sel: Selection, members: list[split.Member], sides: dict[str, str], cfg: Config) -> None:
    """Write `decisions` (one row per trace) and the new `splits` rows in one transaction."""
    digest = config_hash(cfg)
    all_ids = [r[0] for r in store.con.execute("SELECT trace_id FROM traces").fetchall()]
    dec = [sel.decisions.get(t, ("redact", "drop", "not_redacted", {})) for t in all_ids]
    table = pa.table(
        {
            "trace_id": all_ids,
            "stage": [d[0] for d in dec],
            "verdict": [d[1] for d in dec],
            "reason": pa.array([d[2] for d in dec], type=pa.string()),
            "detail": [orjson.dumps(d[3]).decode() for d in dec],
        }
    )
    new_splits = pa.table(
        {
            "trace_id": [m.trace_id for m in members],
            "split": [sides[m.trace_id] for m in members],
            "group_key": [m.group_key for m in members],
        }
    )
    with store.transaction(_dec=table, _splits=new_splits) as con:
        con.execute("DELETE FROM decisions")
        con.execute(
            "INSERT INTO decisions (trace_id, stage, verdict, reason, detail, config_hash) "
            "SELECT trace_id, stage, verdict, reason, detail, ? FROM _dec",
            [digest],
        )
        con.execute(
            "INSERT INTO splits (trace_id, split, group_key) SELECT trace_id, split, group_key FROM _splits "
            "WHERE trace_id NOT IN (SELECT trace_id FROM splits)"
        )


def reasons_by_stage(store: Store) -> dict[str, dict[str, int]]:
    """stage -> reason code -> count of the drops in `decisions` and the ingest quarantine."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for stage, reason, n in store.con.execute(
        "SELECT stage, reason, count(*) FROM decisions WHERE verdict = 'drop' GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        out[stage][reason] = n
    for code, n in store.con.execute(
        "SELECT code, count(*) FROM quarantine WHERE stage = 'ingest' GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        out["ingest"][code] = n
    return dict(out)


def write_dataset(store: Store, cfg: Config, sel: Selection, out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Write a new dataset version under `out` when the rows changed (else report the current one)."""
    train, holdout = sel.train.jsonl(), sel.holdout.jsonl()
    digest = export.content_hash(cfg.export.format, train, holdout)
    parent = export.latest_manifest(out)
    if parent is not None and parent.content_hash == digest:
        _stamp(store, parent.version, sel)
        return {"version": parent.version, "changed": False, "path": str((out / "latest").resolve())}
    version = max(export.next_version(out), (parent.version + 1) if parent else 1)
    inputs = [
        InputFile(path=p, sha256=s, rows=int(n))
        for p, s, n in store.con.execute("SELECT path, sha256, accepted FROM ingest_files ORDER BY path").fetchall()
    ]
    parent_folder = out / f"v{parent.version:04d}" if parent else None
    payload = report.build(store, cfg, sel, summary, version, parent.version if parent else None, parent_folder)
    files = {
        "train.jsonl": train,
        "holdout.jsonl": holdout,
        TRACE_IDS: orjson.dumps({"train": sel.train.ids, "holdout": sel.holdout.ids}),
        "report.json": orjson.dumps(payload, option=orjson.OPT_INDENT_2),
        "report.html": report.render_html(payload).encode(),
    }

    def finish(folder: Path, entries: dict[str, FileEntry]) -> DatasetManifest:
        manifest = DatasetManifest(
            name=cfg.export.name,
            version=version,
            parent_version=parent.version if parent else None,
            created_at=datetime.now(UTC),
            format=cfg.export.format,
            content_hash=digest,
            config_hash=config_hash(cfg),
            system_prompt=cfg.export.system_prompt,
            expect_json_schema=filters.load_schema(cfg.filter.expect_json_schema),
            counts=payload["funnel_counts"],
            reasons=payload["reasons"],
            inputs=inputs,
            files=entries,
        )
        (folder / "README.md").write_text(report.dataset_card(manifest, payload), encoding="utf-8")
        return manifest

    folder, manifest = export.write_version(out, version, files, finish)
    store.con.execute(
        "INSERT OR REPLACE INTO dataset_versions (version, parent_version, content_hash, config_hash, path, "
        "train_rows, holdout_rows, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            version,
            manifest.parent_version,
            digest,
            manifest.config_hash,
            str(folder),
            len(sel.train.rows),
            len(sel.holdout.rows),
            manifest.model_dump_json(),
        ],
    )
    _stamp(store, version, sel)
    return {"version": version, "changed": True, "path": str(folder)}


def _stamp(store: Store, version: int, sel: Selection) -> None:
    """Record the version in the decisions of this run and as first version of new split rows."""
    ids = pa.table({"trace_id": sel.train.ids + sel.holdout.ids})
    store.con.register("_exported", ids)
    store.con.execute("UPDATE decisions SET version = ?", [version])
    store.con.execute(
        "UPDATE splits SET first_version = ? WHERE first_version IS NULL "
        "AND trace_id IN (SELECT trace_id FROM _exported)",
        [version],
    )
    store.con.unregister("_exported")


def run(store: Store, config: Config, out: Path | None = None) -> dict[str, Any]:
    """Run the curation stages; with `out`, write a dataset version there. Returns each stage's
    counts (the `--json` summary)."""
    summary: dict[str, Any] = {"traces": require_traces(store, f"tracetune ingest PATH... --db {store.path}")}
    summary["dedupe"] = dedupe.run(store, config.dedupe).as_dict()
    summary["redact"] = redact.run(store, config.redact).as_dict()
    gate = leak_gate(store, config.redact.leak_gate)
    if gate["mode"] != "off":
        summary["leak_gate"] = gate
    return finish(store, config, out, summary)


def finish(store: Store, config: Config, out: Path | None, summary: dict[str, Any]) -> dict[str, Any]:
    """The stages after redaction: filter, export checks, split, leakage check, dataset version."""
    started = time.perf_counter()
    sel = select(store, config)
    summary.update(sel.summary)
    summary["select_seconds"] = round(time.perf_counter() - started, 3)
    summary["train"], summary["holdout"] = len(sel.train.rows), len(sel.holdout.rows)
    if out is not None:
        started = time.perf_counter()
        summary["dataset"] = write_dataset(store, config, sel, out, summary)
        summary["export_seconds"] = round(time.perf_counter() - started, 3)
    return summary
