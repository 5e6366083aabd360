"""Prefect flow wrapping the ingest library: one task per call, counts published as artifacts."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from curation.ingest.run import ingest
from curation.store import Store
from schemas.config import load_config


@task(name="ingest-files", cache_policy=NO_CACHE, retries=0)
def ingest_task(paths: list[str], db: str, fmt: str, config: str | None) -> dict[str, Any]:
    """Run the ingest library in this task's process; returns the reconciled counts."""
    cfg = load_config(config)
    with Store(db) as store:
        return ingest(store, paths, fmt, cfg.ingest).as_dict()


@flow(name="ingest", log_prints=False)
def ingest_flow(
    paths: list[str], db: str = "data/tracetune.duckdb", fmt: str = "auto", config: str | None = None
) -> dict[str, Any]:
    """Ingest trace files or directories into the DuckDB store and publish the counts."""
    logger = get_run_logger()
    stats = ingest_task(paths, db, fmt, config)
    logger.info(
        "ingest: %(records)s records, %(accepted)s accepted, %(already_present)s already present, "
        "%(quarantined)s quarantined",
        stats,
    )
    rows = [{"format": k, "accepted": v} for k, v in sorted(stats["by_format"].items())]
    create_table_artifact(
        rows or [{"format": "-", "accepted": 0}],
        key="ingest-by-format",
        description="Traces accepted per source format",
    )
    reasons = "\n".join(f"| {k} | {v} |" for k, v in sorted(stats["quarantine_reasons"].items())) or "| - | 0 |"
    create_markdown_artifact(
        f"# Ingest\n\n{stats['files']} files ({stats['files_skipped']} unchanged) into `{db}`\n\n"
        f"| records | accepted | already present | quarantined |\n|---|---|---|---|\n"
        f"| {stats['records']} | {stats['accepted']} | {stats['already_present']} | {stats['quarantined']} |\n\n"
        f"## Quarantine reasons\n\n| code | records |\n|---|---|\n{reasons}\n",
        key="ingest-summary",
        description="Ingest funnel and quarantine reasons",
    )
    return stats
