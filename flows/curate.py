"""Prefect flow for a curation run: ingest (optional), then the curation stages as tasks; announces a
new dataset version with the `tracetune.dataset.created` event."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from curation import dedupe, redact
from curation.curate import finish, leak_gate, reasons_by_stage, require_traces
from curation.summary import drop_reason_rows, funnel_markdown
from flows.events import announce_dataset
from flows.ingest import ingest_task
from flows.locks import transient, writing
from schemas.config import load_config

# Every stage writes the store: no result cache, retried on a locked database or a file error only.
stage_task = partial(task, cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=transient)


@stage_task(name="dedupe")
def dedupe_task(db: str, config: str | None) -> dict[str, Any]:
    cfg = load_config(config)
    with writing(db, cfg.pipeline.writer_limit) as store:
        require_traces(store, "curate_flow(paths=[...])")
        return dedupe.run(store, cfg.dedupe).as_dict()


@stage_task(name="redact")
def redact_task(db: str, config: str | None) -> dict[str, Any]:
    cfg = load_config(config)
    with writing(db, cfg.pipeline.writer_limit) as store:
        return redact.run(store, cfg.redact).as_dict()


@stage_task(name="leak-gate")
def leak_gate_task(db: str, config: str | None) -> dict[str, Any]:
    cfg = load_config(config)
    with writing(db, cfg.pipeline.writer_limit) as store:
        return leak_gate(store, cfg.redact.leak_gate)


@stage_task(name="filter-split-export")
def finish_task(db: str, config: str | None, out: str | None, summary: dict[str, Any]) -> dict[str, Any]:
    cfg = load_config(config)
    with writing(db, cfg.pipeline.writer_limit) as store:
        done = finish(store, cfg, Path(out) if out else None, dict(summary))
        done["reasons_by_stage"] = reasons_by_stage(store)
        return done


@flow(name="curate")
def curate_flow(
    paths: list[str] | None = None,
    db: str = "data/tracetune.duckdb",
    config: str | None = None,
    out: str | None = "data/dataset",
    announce: bool = True,
) -> dict[str, Any]:
    """Ingest `paths` (if given), dedupe, redact, run the leak gate, the quality rules, the split and
    its leakage check, and write a dataset version to `out`; publishes the counts and the report, and
    (with `announce`) emits `tracetune.dataset.created` when a new version was written."""
    logger = get_run_logger()
    config = config or None
    summary: dict[str, Any] = {}
    if paths:
        summary["ingest"] = ingest_task(paths, db, "auto", config)
    summary["dedupe"] = dedupe_task(db, config)
    summary["redact"] = redact_task(db, config)
    gate = leak_gate_task(db, config)
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
    create_table_artifact(
        drop_reason_rows(summary.pop("reasons_by_stage")) or [{"stage": "-", "reason": "-", "traces": 0}],
        key="drop-reasons",
        description="Traces dropped or quarantined, by stage and reason code",
    )
    create_markdown_artifact(funnel_markdown(summary), key="curation-summary", description="Curation funnel")
    ds = summary.get("dataset")
    if ds:
        report = Path(ds["path"]) / "report.html"
        create_link_artifact(
            report.resolve().as_uri(), link_text=f"curation report v{ds['version']}", key="curation-report"
        )
        if ds["changed"] and announce:
            payload = announce_dataset(ds["path"], db)
            logger.info("emitted tracetune.dataset.created for version %s", payload["version"])
    return summary
