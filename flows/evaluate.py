"""Prefect flow for an evaluation run: base vs adapter on a dataset version's holdout, with a promotion verdict."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from schemas.config import load_config
from training.eval_report import markdown_summary
from training.evaluate import evaluate


@task(name="evaluate-adapter", cache_policy=NO_CACHE)
def evaluate_task(
    adapter: str, dataset: str, config: str | None, out: str | None, base: str | None, db: str | None
) -> dict[str, Any]:
    result = evaluate(adapter, dataset, load_config(config), out=out, base=base, db=db)
    return {**result.report, "out_dir": str(result.out_dir)}


@flow(name="evaluate")
def evaluate_flow(
    adapter: str,
    dataset: str,
    config: str | None = None,
    out: str | None = None,
    base: str | None = None,
    db: str | None = None,
) -> dict[str, Any]:
    """Evaluate `adapter` against its base on `dataset`'s holdout; publishes the summary as a markdown artifact and
    returns the verdict ({promote, reasons, checks}, plus the eval folder) so a caller can decide to publish."""
    logger = get_run_logger()
    report = evaluate_task(adapter, dataset, config, out, base, db)
    v = report["verdict"]
    logger.info(
        "eval on %s examples: %s (%s)", report["n"], "promote" if v["promote"] else "do not promote", v["reasons"][0]
    )
    create_markdown_artifact(
        markdown_summary(report) + f"\nReport: `{report['out_dir']}/eval.html`\n",
        key="eval-summary",
        description="Base vs adapter on the holdout",
    )
    return {**v, "out_dir": report["out_dir"], "n": report["n"]}
