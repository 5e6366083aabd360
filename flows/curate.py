"""Prefect flow for a curation run: ingest (optional), then the curation stages as tasks; announces a
new dataset version with the `tracetune.dataset.created` event."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from curation import curate
from curation.decisions import reasons_by_stage
from curation.funnel import markdown as funnel_markdown
from curation.summary import drop_reason_rows
from flows.events import announce_dataset
from flows.ingest import ingest_task
from flows.locks import db_writer, transient, writing
from flows.partitions import stages_on_dask
from schemas.config import load_config

# Every stage writes the store: no result cache, retried on a locked database or a file error only.
stage_task = partial(task, cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=transient)


@stage_task(name="snapshot")
def snapshot_task(db: str, config: str | None) -> str | None:
    """The instant of the store's latest ingest: the run curates the traces ingested up to it (a CLI
    ingest that gets in between two stage tasks waits for the next run)."""
    with writing(db, load_config(config).pipeline.writer_limit) as store:
        curate.require_traces(store, "curate_flow(paths=[...])")
        return curate.snapshot(store)


@stage_task(task_run_name="{name}")
def curation_stage(db: str, config: str | None, name: str, upto: str | None) -> dict[str, Any]:
    """One curation stage over its pending partitions (a run cut short resumes where it stopped)."""
    cfg = load_config(config)
    logger = get_run_logger()
    with writing(db, cfg.pipeline.writer_limit) as store:

        def progress(stage: str, done: int, total: int) -> None:
            logger.info("%s: %s of %s traces done", stage, done, total)

        return curate.run_stage(store, cfg, name, progress, upto=upto)


@stage_task(name="decide-and-export")
def finish_task(
    db: str, config: str | None, out: str | None, summary: dict[str, Any], upto: str | None
) -> dict[str, Any]:
    cfg = load_config(config)
    with writing(db, cfg.pipeline.writer_limit) as store:
        summary = {"traces": summary["stages"][curate.NAMES[0]]["in"], **summary}
        done = curate.finish(store, cfg, Path(out) if out else None, summary, upto=upto)
        done["reasons_by_stage"] = reasons_by_stage(store)
        return done


def _curate(
    paths: list[str] | None, db: str, config: str | None, out: str | None, where: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Ingest `paths` (if any), every stage (on Dask when `where` names a cluster), then the decisions
    and the dataset version; the flow summary and the Dask figures."""
    summary: dict[str, Any] = {}
    used: dict[str, Any] | None = None
    if paths:
        summary["ingest"] = ingest_task(paths, db, "auto", config)
    upto = snapshot_task(db, config)
    if where:
        summary["stages"], used = stages_on_dask(db, config, where, upto)
    else:
        summary["stages"] = {name: curation_stage(db, config, name, upto) for name in curate.NAMES}
    return finish_task(db, config, out, summary, upto), used


@flow(name="curate")
def curate_flow(
    paths: list[str] | None = None,
    db: str = "data/tracetune.duckdb",
    config: str | None = None,
    out: str | None = "data/dataset",
    announce: bool = True,
    dask: str | None = None,
) -> dict[str, Any]:
    """Ingest `paths` (if given), dedupe, redact, run the leak gate, the quality rules, the split and
    its leakage check, and write a dataset version to `out`; publishes the counts and the report, and
    (with `announce`) emits `tracetune.dataset.created` when a new version was written. `dask`
    ("local:N" or a scheduler address; default: the config's curate.dask) runs the partition work on
    a Dask cluster (`flows.partitions`)."""
    logger = get_run_logger()
    config = config or None
    cfg = load_config(config)
    curate.preflight(cfg, Path(out) if out else None)  # bad settings and an unwritable folder fail before any stage
    where = cfg.curate.dask if dask is None else dask
    with db_writer(cfg.pipeline.writer_limit):  # one writer from the ingest to the dataset version
        summary, used = _curate(paths, db, config, out, where)
    gate = summary["stages"]["leak_gate"]["detail"]
    if gate.get("leaks"):
        logger.warning(
            "leak gate quarantined %s trace(s) whose redacted text still holds PII or secrets: %s",
            gate["leaks"],
            ", ".join(f"{q['trace_id']} ({', '.join(q['types'])})" for q in gate["listed"][:20]),
        )
        create_table_artifact(
            [{"trace_id": q["trace_id"], "entity_types": ", ".join(q["types"])} for q in gate["listed"]],
            key="leak-gate-quarantine",
            description=f"Traces quarantined by the leak gate ({gate['leaks']}; ids and entity types only)",
        )
    d, r = summary["stages"]["dedupe"], summary["stages"]["redact"]
    logger.info("dedupe kept %s of %s; redact kept %s", d["kept"], d["in"], r["kept"])
    entities = r["detail"].get("entities") or {}
    create_table_artifact(
        [{"entity": k, "found": v} for k, v in sorted(entities.items())] or [{"entity": "-", "found": 0}],
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
    if used:
        summary["dask"] = used  # after the dataset is written: not part of its files
    return summary
