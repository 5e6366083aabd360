"""Prefect flow for a curation run: ingest (optional), then the curation stages as tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from curation import dedupe, redact
from curation.curate import finish, leak_gate, require_traces
from curation.store import Store
from flows.ingest import ingest_task
from schemas.config import load_config


@task(name="dedupe", cache_policy=NO_CACHE)
def dedupe_task(db: str, config: str | None) -> dict[str, Any]:
    with Store(db) as store:
        return dedupe.run(store, load_config(config).dedupe).as_dict()


@task(name="redact", cache_policy=NO_CACHE)
def redact_task(db: str, config: str | None) -> dict[str, Any]:
    with Store(db) as store:
        return redact.run(store, load_config(config).redact).as_dict()


@task(name="leak-gate", cache_policy=NO_CACHE)
def leak_gate_task(db: str, mode: str) -> dict[str, Any]:
    with Store(db) as store:
        return leak_gate(store, mode)


@task(name="filter-split-export", cache_policy=NO_CACHE)
def finish_task(db: str, config: str | None, out: str | None, summary: dict[str, Any]) -> dict[str, Any]:
    with Store(db) as store:
        return finish(store, load_config(config), Path(out) if out else None, dict(summary))


@flow(name="curate")
def curate_flow(
    paths: list[str] | None = None,
    db: str = "data/tracetune.duckdb",
    config: str | None = None,
    out: str | None = "data/dataset",
) -> dict[str, Any]:
    """Ingest `paths` (if given), dedupe, redact, run the leak gate, the quality rules, the split and
    its leakage check, and write a dataset version to `out`; publishes the counts and the report."""
    logger = get_run_logger()
    summary: dict[str, Any] = {}
    if paths:
        summary["ingest"] = ingest_task(paths, db, "auto", config)
    with Store(db) as store:
        require_traces(store, "curate_flow(paths=[...])")
    summary["dedupe"] = dedupe_task(db, config)
    summary["redact"] = redact_task(db, config)
    gate = leak_gate_task(db, load_config(config).redact.leak_gate)
    if gate["mode"] != "off":
        summary["leak_gate"] = gate
        if gate["leaks"]:
            logger.warning(
                "leak gate quarantined %s trace(s) whose redacted text still holds PII or secrets: %s",
                gate["leaks"],
                ", ".join(f"{q['trace_id']} ({', '.join(q['types'])})" for q in gate["quarantined"][:20]),
            )
            create_table_artifact(
                [{"trace_id": q["trace_id"], "entity_types": ", ".join(q["types"])} for q in gate["quarantined"]],
                key="leak-gate-quarantine",
                description=f"Traces quarantined by the leak gate ({gate['leaks']}; ids and entity types only)",
            )
    summary = finish_task(db, config, out, {"traces": summary.get("dedupe", {}).get("traces", 0), **summary})
    d, r = summary["dedupe"], summary["redact"]
    logger.info("dedupe kept %s of %s; redacted %s traces", d["kept"], d["traces"], r["redacted"])
    create_table_artifact(
        [{"entity": k, "found": v} for k, v in sorted(r["entities"].items())] or [{"entity": "-", "found": 0}],
        key="pii-entity-counts",
        description="PII and secrets found by the redact stage",
    )
    create_markdown_artifact(_funnel_markdown(summary), key="curation-summary", description="Curation funnel")
    return summary


def _funnel_markdown(summary: dict[str, Any]) -> str:
    """The curation funnel as the Markdown table of the `curation-summary` artifact."""
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
    rows.append(
        (
            "split",
            summary["train"] + summary["holdout"],
            f"train {summary['train']}, holdout {summary['holdout']}",
            "leakage check passed",
        )
    )
    lines = ["# Curation", "", "| stage | in | kept | dropped |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {e or '-'} |" for a, b, c, e in rows]
    if "dataset" in summary:
        ds = summary["dataset"]
        lines += [
            "",
            f"Dataset version {ds['version']}{'' if ds['changed'] else ' (unchanged)'}: `{ds['path']}` "
            "(report.html, manifest.json, train.jsonl, holdout.jsonl)",
        ]
    return "\n".join(lines) + "\n"
