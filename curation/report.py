"""The curation report: `report.json` (the payload) and `report.html` (one self-contained page),
plus the dataset card. Trace text shown anywhere is redacted text, HTML-escaped by the template."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape

from curation import charts
from schemas.config import Config, config_hash
from schemas.dataset import DatasetManifest

if TYPE_CHECKING:
    from curation.curate import Selection
    from curation.store import Store

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


def _examples(store: Store) -> dict[str, list[dict[str, Any]]]:
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
        if source in texts:
            item.update(excerpt(texts[source]))
            if source != tid:
                item["note"] = f"duplicate of {source} (the kept copy is shown)"
        else:
            item["note"] = "no redacted text (the trace failed before redaction)"
        out.setdefault(f"{stage}:{reason}", []).append(item)
    for code, file, line in store.con.execute(
        "SELECT code, source_file, source_line FROM (SELECT *, row_number() OVER (PARTITION BY code ORDER BY "
        "source_file, source_line) AS k FROM quarantine WHERE stage = 'ingest') WHERE k <= ? ORDER BY ALL",
        [EXAMPLES],
    ).fetchall():
        out.setdefault(f"ingest:{code}", []).append(
            {"trace_id": f"{Path(file).name}:{line}", "note": "quarantined at ingest (raw text not shown)"}
        )
    return out


def _clusters(store: Store) -> dict[str, Any]:
    sizes = store.con.execute(
        "SELECT cluster_id, kind, count(*) AS n, any_value(representative) FROM dup_clusters GROUP BY ALL "
        "ORDER BY n DESC, cluster_id"
    ).fetchall()
    by_size = Counter(n for _, _, n, _ in sizes)
    top = sizes[:EXAMPLES]
    texts = _redacted(store, [rep for _, _, _, rep in top])
    examples = []
    for cid, kind, n, rep in top:
        members = store.con.execute(
            "SELECT trace_id, kind, similarity, reason FROM dup_clusters WHERE cluster_id = ? ORDER BY trace_id",
            [cid],
        ).fetchall()
        examples.append(
            {
                "cluster_id": cid,
                "kind": kind,
                "size": n,
                "representative": rep,
                "members": [
                    {"trace_id": t, "kind": k, "similarity": s, "dropped": r is not None} for t, k, s, r in members
                ],
                **(excerpt(texts[rep]) if rep in texts else {}),
            }
        )
    kinds = Counter()
    for _, kind, n, _ in sizes:
        kinds[kind] += n - 1
    return {
        "clusters": len(sizes),
        "dropped_by_kind": dict(kinds),
        "sizes": {str(k): v for k, v in sorted(by_size.items())},
        "examples": examples,
    }


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


def build(
    store: Store, cfg: Config, sel: Selection, summary: dict[str, Any], version: int, parent: int | None
) -> dict[str, Any]:
    """The report payload (what `report.json` holds and `report.html` shows)."""
    from curation.curate import reasons_by_stage

    ingest = store.con.execute(
        "SELECT coalesce(sum(records), 0), coalesce(sum(quarantined), 0), coalesce(sum(already_present), 0) "
        "FROM ingest_files"
    ).fetchone() or (0, 0, 0)
    reasons = reasons_by_stage(store)
    decided = dict(store.con.execute("SELECT verdict, count(*) FROM decisions GROUP BY ALL").fetchall())
    traces = summary["traces"]
    after = {
        "dedupe": summary["dedupe"]["kept"],
        "redact": summary["redact"]["redacted"] + summary["redact"]["already_redacted"],
        "filter": summary["filter"]["kept"],
        "export checks": summary["export_checks"]["valid"],
    }
    funnel = [
        {"stage": "records read", "in": int(ingest[0]), "out": int(ingest[0])},
        {"stage": "ingest", "in": int(ingest[0]), "out": traces},
        {"stage": "dedupe", "in": traces, "out": after["dedupe"]},
        {"stage": "redact", "in": after["dedupe"], "out": after["redact"]},
        {"stage": "filter", "in": after["redact"], "out": after["filter"]},
        {"stage": "export checks", "in": after["filter"], "out": after["export checks"]},
        {"stage": "train", "in": after["export checks"], "out": len(sel.train.rows)},
        {"stage": "holdout", "in": after["export checks"], "out": len(sel.holdout.rows)},
    ]
    edges = charts.bins(sel.train.tokens + sel.holdout.tokens)
    pii = store.con.execute(
        "SELECT entity_type, count(*), count(DISTINCT trace_id) FROM redactions "
        "WHERE list_contains(?, trace_id) GROUP BY ALL ORDER BY 2 DESC",
        [sel.train.ids + sel.holdout.ids],
    ).fetchall()
    samples = _redacted(store, sel.train.ids[:3] + sel.holdout.ids[:2])
    return {
        "dataset": cfg.export.name,
        "version": version,
        "parent_version": parent,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_hash": config_hash(cfg),
        "config": cfg.model_dump(mode="json"),
        "inputs": [
            {"path": p, "sha256": s, "records": int(r), "accepted": int(a), "quarantined": int(q)}
            for p, s, r, a, q in store.con.execute(
                "SELECT path, sha256, records, accepted, quarantined FROM ingest_files ORDER BY path"
            ).fetchall()
        ],
        "funnel": funnel,
        "funnel_counts": {
            "records": int(ingest[0]),
            "quarantined_at_ingest": int(ingest[1]),
            "already_present": int(ingest[2]),
            "traces": traces,
            "kept": decided.get("keep", 0),
            "dropped": decided.get("drop", 0),
            **{f"after_{k.replace(' ', '_')}": v for k, v in after.items()},
            "train": len(sel.train.rows),
            "holdout": len(sel.holdout.rows),
        },
        "reconciled": decided.get("keep", 0) + decided.get("drop", 0) == traces
        and decided.get("keep", 0) == len(sel.train.rows) + len(sel.holdout.rows),
        "reasons": reasons,
        "examples": _examples(store),
        "pii": [{"entity": e, "found": int(n), "traces": int(t)} for e, n, t in pii],
        "tokens": {
            "tokenizer": cfg.filter.tokenizer,
            "edges": edges,
            "train": charts.counts(sel.train.tokens, edges),
            "holdout": charts.counts(sel.holdout.tokens, edges),
            "train_stats": _distribution(sel.train.tokens),
            "holdout_stats": _distribution(sel.holdout.tokens),
        },
        "duplicates": _clusters(store),
        "split": summary["split"],
        "filter": summary["filter"],
        "samples": [
            {"trace_id": t, "split": "train" if t in sel.train.ids else "holdout", **excerpt(m)}
            for t, m in samples.items()
        ],
        "stage_seconds": {k: v.get("seconds") for k, v in summary.items() if isinstance(v, dict) and "seconds" in v},
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
            [(f"size {k}", v) for k, v in payload["duplicates"]["sizes"].items()], "Duplicate clusters by size"
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
