"""Prefect flow for an evaluation run: base vs adapter on a dataset version's holdout, with a promotion
verdict; with `promote`, a winning adapter becomes the current one of its dataset name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.locks import writing
from flows.progress import eval_progress
from flows.train import flow_run_id
from schemas.config import load_config
from schemas.runs import EvalRun
from training import registry
from training.eval_report import markdown_summary
from training.evaluate import EvalResult, evaluate, read_run, record_eval
from training.run_report import promotion_markdown


@task(name="evaluate-adapter", cache_policy=NO_CACHE)
def evaluate_task(
    adapter: str, dataset: str, config: str | None, out: str | None, base: str | None, run_id: str | None
) -> EvalResult:
    return evaluate(
        adapter, dataset, load_config(config), out=out, base=base, progress=eval_progress(), flow_run_id=run_id
    )


@task(name="record-evaluation", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def record_task(db: str, config: str | None, report: EvalRun, promote: bool) -> dict[str, Any] | None:
    """Record the eval run; with `promote`, promote the adapter when the verdict says so."""
    cfg = load_config(config)
    with writing(db, cfg.pipeline.writer_limit) as store:
        record_eval(store, report)
        if not promote:
            return None
        adapter = report.lineage.adapter.path
        root = Path(cfg.pipeline.adapters_dir)
        name = read_run(Path(adapter)).dataset.name or "tracetune"
        if not report.verdict.promote:
            current = registry.current(root, name)
            return {
                "changed": False,
                "name": name,
                "current": str(current) if current else None,
                "why": f"the verdict is do not promote ({report.verdict.reasons[0]})",
            }
        if not cfg.pipeline.promote:
            return {"changed": False, "name": name, "why": "pipeline.promote is off"}
        return registry.promote(store, root, adapter, actor="pipeline", flow_run_id=report.flow_run_id)


@flow(name="evaluate")
def evaluate_flow(
    adapter: str,
    dataset: str,
    config: str | None = None,
    out: str | None = None,
    base: str | None = None,
    db: str | None = None,
    promote: bool = False,
) -> dict[str, Any]:
    """Evaluate `adapter` against its base on `dataset`'s holdout; publishes the summary, a link to
    eval.html and (with `promote` and a `db`) the promotion decision. Returns the verdict
    ({promote, reasons, checks}, the eval folder, and `promotion` when it was decided)."""
    logger = get_run_logger()
    config = config or None
    evaluated = evaluate_task(adapter, dataset, config, out, base, flow_run_id())
    report, v = evaluated.report, evaluated.verdict
    logger.info("eval on %s examples: %s (%s)", report.n, "promote" if v.promote else "do not promote", v.reasons[0])
    html = evaluated.out_dir / "eval.html"
    create_markdown_artifact(
        markdown_summary(report) + f"\nReport: `{html}`\n", key="eval-summary", description="Base vs adapter"
    )
    create_link_artifact(html.resolve().as_uri(), link_text="evaluation report", key="eval-report")
    result = {**v.model_dump(mode="json"), "out_dir": str(evaluated.out_dir), "n": report.n, "eval_id": report.eval_id}
    if db:
        decision = record_task(db, config, report, promote)
        if decision is not None:
            result["promotion"] = decision
            logger.info("promotion: %s", decision)
            create_markdown_artifact(promotion_markdown(decision), key="promotion", description="Promotion decision")
    return result
