"""Prefect flow for a curation run: ingest (optional), then the curation stages as tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from curation import dedupe, redact
from curation.curate import finish, leak_check
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
def leak_gate_task(db: str) -> int:
    with Store(db) as store:
        return leak_check(store)


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
    summary["dedupe"] = dedupe_task(db, config)
    summary["redact"] = redact_task(db, config)
    if load_config(config).redact.leak_gate:
        summary["leak_gate"] = {"checked": leak_gate_task(db), "leaks": 0}
    summary = finish_task(db, config, out, {"traces": summary.get("dedupe", {}).get("traces", 0), **summary})
    d, r, f = summary["dedupe"], summary["redact"], summary["filter"]
    logger.info("dedupe kept %s of %s; redacted %s traces", d["kept"], d["traces"], r["redacted"])
    create_table_artifact(
        [{"entity": k, "found": v} for k, v in sorted(r["entities"].items())] or [{"entity": "-", "found": 0}],
        key="pii-entity-counts",
        description="PII and secrets found by the redact stage",
    )
    create_markdown_artifact(
        f"# Curation\n\n| stage | in | kept | dropped |\n|---|---|---|---|\n"
        f"| dedupe | {d['traces']} | {d['kept']} | exact {d['exact_duplicates']}, prefix_of {d['prefix_of']}, "
        f"near {d['near_duplicates']} |\n| redact | {r['traces']} | {r['redacted'] + r['already_redacted']} | "
        f"quarantined {r['quarantined']} |\n"
        f"| filter | {f['traces']} | {f['kept']} | "
        + ", ".join(f"{k} {v}" for k, v in sorted(f["reasons"].items()))
        + f" |\n| split | {summary['train'] + summary['holdout']} | train {summary['train']}, "
        f"holdout {summary['holdout']} | leakage check passed |\n\n"
        + (
            f"Dataset version {summary['dataset']['version']}"
            f"{'' if summary['dataset']['changed'] else ' (unchanged)'}: `{summary['dataset']['path']}` "
            "(report.html, manifest.json, train.jsonl, holdout.jsonl)\n"
            if "dataset" in summary
            else ""
        ),
        key="curation-summary",
        description="Curation funnel",
    )
    return summary
