"""The unattended loop as one flow: ingest the inbox, curate, decide whether the new version is worth
training, (review gate), train, evaluate, promote. Subflows and tasks pass paths and ids, never rows.

A suspended run (the review gate) starts again from the top when it is resumed: the inbox ingest is
cached for the flow run, and curation is idempotent (an unchanged store gives the same version)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, ConfigDict, Field

from curation import review
from curation.changes import markdown as changes_markdown
from curation.store import Store
from flows.curate import curate_flow
from flows.evaluate import evaluate_flow
from flows.ingest import ingest_task, publish_ingest
from flows.locks import writing
from flows.train import flow_run_id, train_flow
from schemas.config import load_config
from schemas.dataset import version_dir
from training.candidates import training_need


class PipelineRun(BaseModel):
    """Where the pipeline reads and writes; the config file holds the rest (section `pipeline:`)."""

    model_config = ConfigDict(extra="forbid")

    db: str = Field(default="data/tracetune.duckdb", description="DuckDB store")
    out: str = Field(default="data/dataset", description="dataset root (versions vNNNN, latest)")
    config: str | None = Field(default=None, description="tracetune YAML config (None: the defaults)")
    inbox: str | None = Field(default=None, description="folder of new trace files (None: pipeline.inbox)")
    base: str | None = Field(default=None, description="base model (None: train.base_model)")


class ReviewInput(RunInput):
    """The reviewer's form in the Prefect UI: approve or reject the new dataset version."""

    approve: bool = Field(description="train on this version (unticked: reject it)")
    exclude: list[str] = Field(default_factory=list, description="trace ids to leave out of this and later versions")
    note: str = Field(default="", description="why (kept in the manifest and the lineage)")
    reviewer: str = Field(default="", description="your name")


def _per_flow_run(context: Any, parameters: dict[str, Any]) -> str:
    return f"pipeline-ingest-{context.task_run.flow_run_id}"


ingest_inbox = ingest_task.with_options(
    name="ingest-inbox", cache_policy=CacheKeyFnPolicy(cache_key_fn=_per_flow_run), persist_result=True
)


@task(name="review-state", cache_policy=NO_CACHE)
def review_state_task(db: str, out: str, version: int, limit: str) -> dict[str, Any]:
    """What is known about the review of `version`: a decision, an approval carried from its parent, or nothing."""
    with writing(db, limit) as store:
        carried = review.carried_approval(out, version)
        state = review.status(store, version)
        if carried and (state is None or state["decision"] == review.PENDING) and carried.approved_from:
            review.record(
                store,
                out,
                version,
                "approve",
                reviewer=carried.reviewer,
                approved_from=carried.approved_from,
                note=f"carried from version {carried.approved_from}: {carried.note or ''}".strip(": "),
            )
            state = review.status(store, version)
        return {k: str(v) if k == "decided_at" else v for k, v in (state or {}).items()}


@task(name="mark-review-pending", cache_policy=NO_CACHE)
def mark_pending_task(db: str, version: int, limit: str) -> None:
    """Note that this run waits for a review of `version` (so `tracetune review` can resume it)."""
    with writing(db, limit) as store:
        review.mark_pending(store, version, str(flow_run_id()))


@task(name="record-review", cache_policy=NO_CACHE)
def record_review_task(db: str, out: str, version: int, limit: str, decision: dict[str, Any]) -> None:
    """Record the decision submitted in the Prefect UI's form."""
    with writing(db, limit) as store:
        review.record(
            store,
            out,
            version,
            "approve" if decision["approve"] else "reject",
            reviewer=decision["reviewer"] or "prefect-ui",
            note=decision["note"],
            exclude=decision["exclude"],
            flow_run_id=flow_run_id(),
        )


def _changes(folder: Path) -> str:
    try:
        payload = orjson.loads((folder / "report.json").read_bytes())
        return changes_markdown(payload["changes"])
    except (OSError, ValueError, KeyError):
        return f"(no change summary in {folder / 'report.json'})"


def review_gate(run: PipelineRun, version: int, hours: float, limit: str) -> dict[str, Any]:
    """Wait for a reviewer's decision on `version` (suspending the run); returns the recorded review state."""
    logger = get_run_logger()
    state = review_state_task(run.db, run.out, version, limit)
    if state and state["decision"] != review.PENDING:
        return state
    if not state:
        mark_pending_task(run.db, version, limit)
    folder = version_dir(run.out, version)
    logger.info("waiting for a review of dataset v%s: tracetune review approve|reject %s", version, version)
    form = ReviewInput.with_initial_data(
        description=f"# Review dataset v{version}\n\n`{folder}` (report.html)\n\n{_changes(folder)}", approve=True
    )
    decision = suspend_flow_run(wait_for_input=form, timeout=int(hours * 3600), key=f"review-v{version}")
    state = review_state_task(run.db, run.out, version, limit)
    if state["decision"] == review.PENDING:  # answered in the Prefect UI, not by `tracetune review`
        record_review_task(run.db, run.out, version, limit, decision.model_dump())
        state = review_state_task(run.db, run.out, version, limit)
    return state


def _stop(result: dict[str, Any], why: str) -> dict[str, Any]:
    get_run_logger().info("pipeline stops: %s", why)
    result["stopped"] = why
    create_markdown_artifact(_summary_markdown(result), key="pipeline-summary", description="Pipeline run")
    return result


def _summary_markdown(result: dict[str, Any]) -> str:
    lines = ["# Pipeline", "", "| step | outcome |", "|---|---|"]
    ing = result.get("ingest")
    lines.append(f"| ingest | {ing['accepted']} new traces from {ing['files']} files |" if ing else "| ingest | - |")
    ds = result.get("dataset")
    lines.append(f"| curate | version {ds['version']}{'' if ds['changed'] else ' (unchanged)'} |" if ds else "")
    if "need" in result:
        lines.append(f"| decide | {'train' if result['need']['train'] else 'skip'}: {result['need']['reason']} |")
    if "review" in result:
        r = result["review"]
        lines.append(f"| review | {r['decision']} by {r.get('reviewer') or '?'} |")
    if "adapter" in result:
        lines.append(f"| train | `{result['adapter']}` |")
    if "evaluation" in result:
        e = result["evaluation"]
        lines.append(f"| evaluate | {'promote' if e['promote'] else 'do not promote'}: {e['reasons'][0]} |")
        p = e.get("promotion") or {}
        lines.append(f"| promote | {'now current' if p.get('changed') else p.get('why', 'unchanged')} |")
    if "stopped" in result:
        lines.append(f"| stopped | {result['stopped']} |")
    return "\n".join(line for line in lines if line) + "\n"


@flow(name="pipeline", persist_result=True)
def pipeline_flow(run: PipelineRun = PipelineRun()) -> dict[str, Any]:  # noqa: B008 (a pydantic default)
    """Ingest new files from the inbox, curate, and when the new version has enough (new) train rows,
    (wait for a review,) train, evaluate and promote a winning adapter. Returns what each step did."""
    cfg = load_config(run.config)
    p = cfg.pipeline
    inbox = Path(run.inbox or p.inbox)
    result: dict[str, Any] = {"inbox": str(inbox)}
    try:
        if inbox.is_dir() and any(f.is_file() for f in inbox.rglob("*")):
            result["ingest"] = ingest_inbox([str(inbox)], run.db, "auto", run.config)
            publish_ingest(result["ingest"], run.db)
        if not Path(run.db).is_file():
            return _stop(result, f"no traces yet: put trace files in {inbox}")
        curated = curate_flow(db=run.db, config=run.config, out=run.out, announce=False)
        result["dataset"] = ds = curated["dataset"]
        with Store(run.db, read_only=True) as store:
            need = training_need(store, Path(ds["path"]), Path(run.out), p)
        result["need"] = need.as_dict()
        if not need.train:
            return _stop(result, need.reason)
        version = need.version
        if p.require_approval:
            result["review"] = state = review_gate(run, version, p.review_timeout_hours, p.writer_limit)
            if state["decision"] != "approve":
                return _stop(result, f"dataset v{version} rejected by {state.get('reviewer') or 'the reviewer'}")
            if state.get("excluded"):
                curated = curate_flow(db=run.db, config=run.config, out=run.out, announce=False)
                result["dataset"] = ds = curated["dataset"]
                result["review"] = review_state_task(run.db, run.out, ds["version"], p.writer_limit)
                version = ds["version"]
        folder = str(version_dir(run.out, version))
        trained = train_flow(dataset=folder, db=run.db, config=run.config, base=run.base, announce=False)
        if "skipped" in trained:
            return _stop(result, trained["skipped"])
        result["adapter"] = trained["adapter_dir"]
        result["evaluation"] = evaluate_flow(
            adapter=trained["adapter_dir"], dataset=folder, config=run.config, base=run.base, db=run.db, promote=True
        )
    except Exception as exc:
        create_markdown_artifact(
            f"# Pipeline failed\n\n{type(exc).__name__}: {exc}\n\n" + _summary_markdown(result),
            key="pipeline-failure",
            description="Why the pipeline run failed",
        )
        raise
    create_markdown_artifact(_summary_markdown(result), key="pipeline-summary", description="Pipeline run")
    return result
