"""Prefect flow for a training run: LoRA SFT of the base model on a dataset version. Triggered by
`tracetune.dataset.created` (the `train-on-new-dataset` deployment) or called by the pipeline."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from curation.review import carried_approval
from flows.events import announce_adapter
from flows.locks import writing
from flows.progress import training_progress
from schemas.config import load_config
from schemas.dataset import DatasetError, load_manifest, sha256_file
from schemas.runs import TrainingRun
from training import registry
from training.run_report import curve_rows, training_markdown
from training.sft import record_run, train


def flow_run_id() -> str | None:
    """The id of the flow run this code runs in, if any."""
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


def adapter_folder(root: str, name: str, version: int) -> Path:
    """Where the pipeline puts a new adapter: ROOT/<name>/v0003-<UTC time>."""
    return Path(root) / name / f"v{version:04d}-{datetime.now(UTC):%Y%m%dT%H%M%S}"


@task(name="train-lora", cache_policy=NO_CACHE)
def train_task(
    dataset: str, out: str, config: str | None, base: str | None, resume: bool, merge: bool, run_id: str | None
) -> TrainingRun:
    return train(
        dataset,
        out,
        load_config(config),
        base=base,
        resume=resume,
        merge=merge,
        progress=training_progress(),
        flow_run_id=run_id,
    ).run


@task(name="record-training", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def record_task(db: str, config: str | None, run: TrainingRun) -> None:
    with writing(db, load_config(config).pipeline.writer_limit) as store:
        record_run(store, run)
        registry.register(store, run.adapter_dir, flow_run_id=run.flow_run_id)


@flow(name="train")
def train_flow(
    dataset: str,
    db: str | None = None,
    config: str | None = None,
    out: str | None = None,
    base: str | None = None,
    manifest_sha256: str | None = None,
    version: int | None = None,
    resume: bool = False,
    merge: bool = False,
    announce: bool = True,
) -> dict[str, Any]:
    """Train a LoRA adapter on the dataset version `dataset` into `out` (default: the config's
    pipeline.adapters_dir/<name>/vNNNN-<time>); records it in `db` and its registry, publishes the metrics,
    and (with `announce`) emits `tracetune.adapter.trained`. With pipeline.require_approval a version
    nobody approved is not trained. `manifest_sha256`/`version` (from the dataset event) must match."""
    logger = get_run_logger()
    config = config or None
    cfg = load_config(config)
    folder, manifest = load_manifest(dataset)
    if manifest_sha256 and sha256_file(folder / "manifest.json") != manifest_sha256:
        raise DatasetError(f"{folder}: manifest.json is not the one announced ({manifest_sha256[:12]}...)")
    if version is not None and manifest.version != version:
        raise DatasetError(f"{folder}: holds version {manifest.version}, not the announced version {version}")
    if cfg.pipeline.require_approval and carried_approval(folder.parent, manifest.version) is None:
        why = f"dataset v{manifest.version} is not approved (pipeline.require_approval): tracetune review approve"
        logger.warning("not training: %s", why)
        create_markdown_artifact(f"# Training skipped\n\n{why} {manifest.version}\n", key="training-summary")
        return {"skipped": why, "dataset_version": manifest.version}
    target = out or str(adapter_folder(cfg.pipeline.adapters_dir, manifest.name, manifest.version))
    run = train_task(str(folder), target, config, base, resume, merge, flow_run_id())
    if db:
        record_task(db, config, run)
    logger.info(
        "adapter %s: %s steps on %s, train loss %.3f, %.0f tokens/s",
        run.adapter_dir,
        run.steps,
        run.device.type,
        run.train_loss,
        run.tokens_per_s or 0,
    )
    create_table_artifact(
        curve_rows(run) or [{"step": 0}], key="training-curve", description="Train and holdout loss by step"
    )
    create_markdown_artifact(training_markdown(run), key="training-summary", description="Training run")
    if announce:
        announce_adapter(run.adapter_dir, str(folder), db, manifest.name, manifest.version)
    return {"adapter_dir": run.adapter_dir, "run_id": run.run_id, "dataset_version": manifest.version}
