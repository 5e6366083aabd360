"""The curation report: `report.json` (the payload) and `report.html` (one self-contained page),
plus the dataset card. Trace text shown anywhere is redacted text, HTML-escaped by the template."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape

from curation import changes, charts, dedupe, funnel
from curation.decisions import reasons_by_stage
from curation.redact_stage import redact_texts
from schemas.config import Config, config_hash
from schemas.dataset import DatasetManifest

if TYPE_CHECKING:
    from curation.store import Store
    from curation.versions import Exported

TEMPLATES = Path(__file__).resolve().parent / "templates"
EXCERPT = 300
EXAMPLES = 3


def excerpt(messages: list[dict[str, Any]], limit: int = EXCERPT) -> dict[str, str]:
    """The last user turn and the final assistant turn of a (redacted) conversation, shortened."""

    def last(role: str) -> str:
        for m in reversed(messages):
            if m.get("role") == role:
                text = m.get("content") or ""
                if not text and m.get("tool_calls"):
                    text = "tool call: " + ", ".join(c.get("name", "?") for c in m["tool_calls"])
                return text if len(text) <= limit else text[:limit] + " [...]"
        return ""

    return {"user": last("user"), "assistant": last("assistant")}


def _redacted(store: Store, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    if not ids:
        return {}
    rows = store.con.execute(
        "SELECT trace_id, messages FROM redacted_messages WHERE list_contains(?, trace_id)", [ids]
    ).fetchall()
    return {tid: orjson.loads(m) for tid, m in rows}


def _examples(store: Store, cfg: Config) -> dict[str, list[dict[str, Any]]]:
    """Up to EXAMPLES redacted examples per stage:reason; duplicates show their kept copy."""
    rows = store.con.execute(
        "SELECT stage, reason, trace_id, detail FROM (SELECT *, row_number() OVER "
        "(PARTITION BY stage, reason ORDER BY trace_id) AS k FROM decisions WHERE verdict = 'drop') "
        "WHERE k <= ? ORDER BY stage, reason, trace_id",
        [EXAMPLES],
    ).fetchall()
    details = [(s, r, t, orjson.loads(d) if d else {}) for s, r, t, d in rows]
    shown = {d.get("representative") or t for _, _, t, d in details}
    texts = _redacted(store, sorted(x for x in shown if x))
    out: dict[str, list[dict[str, Any]]] = {}
    for stage, reason, tid, detail in details:
        source = detail.get("representative") or tid
        item: dict[str, Any] = {"trace_id": tid, "detail": detail}
        if stage == "leak_gate":
            item["note"] = "PII or a secret left after redaction: text not shown (see the leak gate list)"
        elif source in texts:
            item.update(excerpt(texts[source]))
            if source != tid:
                item["note"] = f"duplicate of {source} (the kept copy is shown)"
        else:
            item["note"] = "no redacted text (the trace failed before redaction)"
        out.setdefault(f"{stage}:{reason}", []).append(item)
    found = store.con.execute(
        "SELECT code, source_file, source_line FROM (SELECT *, row_number() OVER (PARTITION BY code ORDER BY "
        "source_file, source_line) AS k FROM quarantine WHERE stage = 'ingest') WHERE k <= ? ORDER BY ALL",
        [EXAMPLES],
    ).fetchall()
    names = redact_texts(store, cfg.redact, [Path(file).name for _, file, _ in found])  # file names may hold PII
    for (code, _, line), name in zip(found, names, strict=True):
        out.setdefault(f"ingest:{code}", []).append(
            {"trace_id": f"{name}:{line}", "note": "quarantined at ingest (raw text not shown)"}
        )
    return out


def _clusters(store: Store, counts: dict[str, Any]) -> dict[str, Any]:
    """The duplicate section: `counts` (from `dedupe.duplicate_counts`, the numbers the funnel and
    the drop reasons also use) and the largest clusters, each the kept trace and its dropped copies."""
    top = store.con.execute(
        "SELECT cluster_id, count(*) AS n, any_value(representative) FROM dup_clusters GROUP BY ALL "
        "HAVING n > 1 ORDER BY n DESC, cluster_id LIMIT ?",
        [EXAMPLES],
    ).fetchall()
    texts = _redacted(store, [rep for _, _, rep in top])
    examples = []
    for cid, n, rep in top:
        members = store.con.execute(
            "SELECT trace_id, kind, similarity, reason FROM dup_clusters WHERE cluster_id = ? "
            "ORDER BY reason IS NOT NULL, trace_id",
            [cid],
        ).fetchall()
        dropped = [(t, k, s) for t, k, s, r in members if r is not None]
        examples.append(
            {
                "cluster_id": cid,
                "kinds": sorted({k for _, k, _ in dropped}),
                "size": n,
                "dropped": len(dropped),
                "representative": rep,
                "members": [{"trace_id": rep, "reason": None, "similarity": None, "dropped": False}]
                + [{"trace_id": t, "reason": k, "similarity": sim, "dropped": True} for t, k, sim in dropped],
                **(excerpt(texts[rep]) if rep in texts else {}),
            }
        )
    return {
        "clusters": counts["clusters"],
        "dropped": sum(counts["dropped"].values()),
        "dropped_by_reason": dict(sorted(counts["dropped"].items())),
        "quarantined": counts["quarantined"],
        "sizes": {str(k): v for k, v in counts["sizes"].items()},
        "examples": examples,
    }


def _inputs(store: Store, cfg: Config) -> list[dict[str, Any]]:
    """The input files with their counts; their paths redacted (a file name may hold PII too)."""
    files = store.con.execute(
        "SELECT path, sha256, records, accepted, quarantined FROM ingest_files ORDER BY path"
    ).fetchall()
    paths = redact_texts(store, cfg.redact, [f[0] for f in files])
    return [
        {"path": p, "sha256": s, "records": int(r), "accepted": int(a), "quarantined": int(q)}
        for p, (_, s, r, a, q) in zip(paths, files, strict=True)
    ]


def _distribution(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
        "total": sum(ordered),
    }


def _changes(
    store: Store, exported: Exported, parent: Path | None, reasons: dict[str, Any], pii: list
) -> dict[str, Any]:
    """What changed since the version in folder `parent` (see `changes.diff`)."""
    sql = "SELECT trace_id, stage || ':' || reason FROM decisions WHERE verdict = 'drop'"
    dropped = dict(store.con.execute(sql).fetchall())
    return changes.diff(
        parent,
        exported.train.ids,
        exported.holdout.ids,
        exported.rows,
        reasons,
        {e: int(n) for e, n, _ in pii},
        _cluster_ids(store),
        dropped,
    )


def _cluster_ids(store: Store) -> list[str]:
    return [r[0] for r in store.con.execute("SELECT DISTINCT cluster_id FROM dup_clusters ORDER BY 1").fetchall()]


def build(
    store: Store,
    cfg: Config,
    exported: Exported,
    summary: dict[str, Any],
    version: int,
    parent: int | None,
    parent_folder: Path | None = None,
) -> dict[str, Any]:
    """The report payload (what `report.json` holds and `report.html` shows); `parent_folder` is
    the previous version's folder, which `changes` compares with (None: the first version)."""
    ingest = store.con.execute(
        "SELECT coalesce(sum(records), 0), coalesce(sum(quarantined), 0), coalesce(sum(already_present), 0) "
        "FROM ingest_files"
    ).fetchone() or (0, 0, 0)
    reasons = reasons_by_stage(store)
    dups = _clusters(store, dedupe.duplicate_counts(store))
    decided = dict(store.con.execute("SELECT verdict, count(*) FROM decisions GROUP BY ALL").fetchall())
    traces = summary["traces"]
    train, holdout = exported.train, exported.holdout
    rows = funnel.rows(summary["stages"], int(ingest[0]), traces)
    after = {r["stage"]: r["out"] for r in rows if r["stage"] not in ("records read", "ingest", "train", "holdout")}
    edges = charts.bins(train.tokens + holdout.tokens)
    store.con.execute("CREATE OR REPLACE TEMP TABLE _exported AS SELECT trace_id FROM decisions WHERE verdict = 'keep'")
    pii = store.con.execute(
        "SELECT entity_type, count(*), count(DISTINCT trace_id) FROM redactions SEMI JOIN _exported USING (trace_id) "
        "GROUP BY ALL ORDER BY 2 DESC, 1"
    ).fetchall()
    store.con.execute("DROP TABLE _exported")
    samples = _redacted(store, train.ids[:3] + holdout.ids[:2])
    in_train = set(train.ids[:3])
    return {
        "dataset": cfg.export.name,
        "version": version,
        "parent_version": parent,
        "changes": _changes(store, exported, parent_folder if parent is not None else None, reasons, pii),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_hash": config_hash(cfg),
        "config": cfg.model_dump(mode="json"),
        "inputs": _inputs(store, cfg),
        "funnel": [{k: r[k] for k in ("stage", "in", "out")} for r in rows],
        "funnel_counts": {
            "records": int(ingest[0]),
            "quarantined_at_ingest": int(ingest[1]),
            "already_present": int(ingest[2]),
            "traces": traces,
            "kept": decided.get("keep", 0),
            "dropped": decided.get("drop", 0),
            **{f"after_{k.replace(' ', '_')}": v for k, v in after.items()},
            "train": len(train.ids),
            "holdout": len(holdout.ids),
        },
        "reconciled": funnel.reconciles(rows)
        and decided.get("keep", 0) + decided.get("drop", 0) == traces
        and decided.get("keep", 0) == len(train.ids) + len(holdout.ids)
        and all(reasons.get("dedupe", {}).get(r, 0) == n for r, n in dups["dropped_by_reason"].items() if n),
        "reasons": reasons,
        "examples": _examples(store, cfg),
        "leak_gate": {
            "mode": cfg.redact.leak_gate,
            "quarantined": [
                {"trace_id": t, "types": c, "message": m}
                for t, c, m in store.con.execute(
                    "SELECT trace_id, code, message FROM quarantine WHERE stage = 'leak_gate' ORDER BY trace_id"
                ).fetchall()
            ],
        },
        "pii": [{"entity": e, "found": int(n), "traces": int(t)} for e, n, t in pii],
        "tokens": {
            "tokenizer": cfg.filter.tokenizer,
            "edges": edges,
            "train": charts.counts(train.tokens, edges),
            "holdout": charts.counts(holdout.tokens, edges),
            "train_stats": _distribution(train.tokens),
            "holdout_stats": _distribution(holdout.tokens),
        },
        "duplicates": dups | {"cluster_ids": _cluster_ids(store)},
        "split": summary["stages"]["split"]["detail"],
        "filter": summary["stages"]["filter"],
        "samples": [
            {"trace_id": t, "split": "train" if t in in_train else "holdout", **excerpt(m)} for t, m in samples.items()
        ],
        "stage_seconds": {k: v["seconds"] for k, v in summary["stages"].items()},
    }


def _env(html: bool = True) -> Environment:
    escape = select_autoescape(default=True, default_for_string=True) if html else False
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=escape, trim_blocks=True, lstrip_blocks=True)


def render_html(payload: dict[str, Any]) -> str:
    """The self-contained report page for a payload from `build`."""
    tokens = payload["tokens"]
    figures = {
        "funnel": charts.bar_chart([(f["stage"], f["out"]) for f in payload["funnel"]], "Rows after each stage"),
        "reasons": charts.bar_chart(
            [(f"{stage}: {reason}", n) for stage, rs in payload["reasons"].items() for reason, n in rs.items()],
            "Drops by stage and reason",
        ),
        "pii": charts.bar_chart([(p["entity"], p["found"]) for p in payload["pii"]], "Redactions by entity type"),
        "tokens": charts.histogram(
            tokens["edges"], {"train": tokens["train"], "holdout": tokens["holdout"]}, "Tokens per row (share of rows)"
        ),
        "clusters": charts.bar_chart(
            [(f"size {k} (1 kept + {int(k) - 1} dropped)", v) for k, v in payload["duplicates"]["sizes"].items()],
            "Duplicate clusters by size (number of clusters)",
        ),
    }
    config_yaml = yaml.safe_dump(payload["config"], sort_keys=False, width=100)
    return (
        _env()
        .get_template("report.html")
        .render(p=payload, fig=figures, config_yaml=config_yaml, base_css=charts.BASE_CSS)
    )


def dataset_card(manifest: DatasetManifest, payload: dict[str, Any]) -> str:
    """The `README.md` dataset card of a version."""
    return _env(html=False).get_template("dataset_card.md").render(m=manifest, p=payload, json=orjson.dumps)
