"""Training runs and promotions as Markdown and table rows, for the flows' artifacts."""

from __future__ import annotations

from typing import Any

from schemas.runs import TrainingRun


def curve_rows(run: TrainingRun) -> list[dict[str, Any]]:
    """The loss curve of `training_run.json` as table rows (step, loss, eval loss, eval token accuracy)."""
    keys = ("step", "loss", "eval_loss", "eval_mean_token_accuracy")
    return [{k: c.get(k) for k in keys} for c in run.curve if "loss" in c or "eval_loss" in c]


def training_markdown(run: TrainingRun) -> str:
    """A training run (`training_run.json`) as a short Markdown table."""
    rows, ds, dev = run.rows["train"], run.dataset, run.device
    review = ds.review or {}
    approved = f"{review.get('decision')} by {review.get('reviewer') or '?'}" if review else "not reviewed"
    return (
        f"# Training\n\n| | |\n|---|---|\n| adapter | `{run.adapter_dir}` |\n"
        f"| dataset | v{ds.version} (`{ds.manifest_sha256[:12]}`), {approved} |\n"
        f"| base | {run.base_model.id} |\n| steps | {run.steps} |\n"
        f"| rows | {rows.kept} of {rows.rows} (truncated {rows.truncated}, "
        f"dropped {rows.dropped_truncated + rows.no_trainable}) |\n"
        f"| train loss | {run.train_loss:.4f} |\n| eval loss | {run.eval_loss} |\n"
        f"| tokens/s | {run.tokens_per_s} on {dev.type} ({dev.dtype}), peak RSS {run.peak_rss_mb} MiB |\n"
        f"| flow run | {run.flow_run_id or '-'} |\n"
    )


def promotion_markdown(decision: dict[str, Any]) -> str:
    """The promotion decision after an evaluation: what became current, or why nothing changed."""
    lines = ["# Promotion", ""]
    if decision.get("changed"):
        lines.append(f"`{decision['current']}` is now the current adapter of **{decision['name']}**.")
        lines.append(
            f"Previous: `{decision.get('previous') or 'none'}` (kept; `tracetune adapters rollback` returns to it)."
        )
    else:
        lines.append(f"Nothing promoted: {decision.get('why', 'the adapter is already current')}.")
        if decision.get("current"):
            lines.append(f"Current adapter stays `{decision['current']}`.")
    return "\n".join(lines) + "\n"
