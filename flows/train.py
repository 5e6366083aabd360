"""Prefect flow for a training run: LoRA SFT of the base model on a dataset version."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from schemas.config import load_config
from training.sft import train


@task(name="train-lora", cache_policy=NO_CACHE)
def train_task(
    dataset: str, out: str, config: str | None, base: str | None, db: str | None, resume: bool, merge: bool
) -> dict[str, Any]:
    return train(dataset, out, load_config(config), base=base, db=db, resume=resume, merge=merge).run


@flow(name="train")
def train_flow(
    dataset: str,
    out: str,
    config: str | None = None,
    base: str | None = None,
    db: str | None = None,
    resume: bool = False,
    merge: bool = False,
) -> str:
    """Train a LoRA adapter on `dataset` into `out`; publishes the metrics; returns the adapter path."""
    logger = get_run_logger()
    run = train_task(dataset, out, config, base, db, resume, merge)
    logger.info(
        "adapter %s: %s steps on %s, train loss %.3f, %.0f tokens/s",
        run["adapter_dir"],
        run["steps"],
        run["device"]["type"],
        run["train_loss"],
        run["tokens_per_s"] or 0,
    )
    curve = [c for c in run["curve"] if "loss" in c or "eval_loss" in c]
    create_table_artifact(
        [{k: c.get(k) for k in ("step", "loss", "eval_loss", "eval_mean_token_accuracy")} for c in curve]
        or [{"step": 0}],
        key="training-curve",
        description="Train and holdout loss by step",
    )
    rows = run["rows"]["train"]
    create_markdown_artifact(
        f"# Training\n\n| | |\n|---|---|\n| adapter | `{run['adapter_dir']}` |\n"
        f"| dataset | v{run['dataset']['version']} (`{run['dataset']['manifest_sha256'][:12]}`) |\n"
        f"| base | {run['base_model']['id']} |\n| steps | {run['steps']} |\n"
        f"| rows | {rows['kept']} of {rows['rows']} (truncated {rows['truncated']}, "
        f"dropped {rows['dropped_truncated'] + rows['no_trainable']}) |\n"
        f"| train loss | {run['train_loss']:.4f} |\n| eval loss | {run['eval_loss']} |\n"
        f"| tokens/s | {run['tokens_per_s']} on {run['device']['type']} |\n",
        key="training-summary",
        description="Training run",
    )
    return str(run["adapter_dir"])
