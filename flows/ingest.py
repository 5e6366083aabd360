"""Prefect flow wrapping the ingest library: one task per call, counts published as artifacts."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from curation.ingest.run import ingest
from curation.summary import ingest_markdown
from flows.locks import transient, writing
from schemas.config import load_config


@task(
    name="ingest-files",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[5, 30, 120],
    retry_condition_fn=transient,
)
def ingest_task(paths: list[str], db: str, fmt: str, config: str | None) -> dict[str, Any]:
    """Run the ingest library in this task's process; returns the reconciled counts."""
    cfg = load_config(config)
    with writing(db, cfg.pipeline.writer_limit) as store:
        return ingest(store, paths, fmt, cfg.ingest).as_dict()


def publish_ingest(stats: dict[str, Any], db: str) -> None:
    """Log the counts and publish the `ingest-by-format` table and `ingest-summary` Markdown artifacts."""
    get_run_logger().info(
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
    create_markdown_artifact(
        ingest_markdown(stats, db), key="ingest-summary", description="Ingest funnel and quarantine reasons"
    )


@flow(name="ingest", log_prints=False)
def ingest_flow(
    paths: list[str], db: str = "data/tracetune.duckdb", fmt: str = "auto", config: str | None = None
) -> dict[str, Any]:
    """Ingest trace files or directories into the DuckDB store and publish the counts."""
    stats = ingest_task(paths, db, fmt, config or None)
    publish_ingest(stats, db)
    return stats
