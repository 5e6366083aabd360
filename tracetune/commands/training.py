"""`train` and `evaluate`: a LoRA adapter from a dataset version, then base vs adapter on its holdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from schemas.config import ConfigError, load_config
from tracetune.options import ConfigOpt, JsonOpt
from tracetune.output import emit_json, eval_progress, fail, print_eval_summary, train_progress, train_summary


def train(
    dataset: Annotated[Path, typer.Option("--dataset", help="Dataset version folder, or a dataset root (its latest).")],
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Adapter folder (default: <version>/adapter).")] = None,
    base: Annotated[str | None, typer.Option("--base", help="Base model: folder, .gguf or hub id.")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="Record the run in this DuckDB store.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")] = False,
    merge: Annotated[bool, typer.Option("--merge", help="Also write base+adapter merged into <out>/merged.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """LoRA SFT of the base model (default: embedded SmolLM2-135M-Instruct) on a dataset version.

    Loss only on assistant turns whose weight is not 0; settings from the config's train: section.
    Writes the PEFT adapter, tokenizer and training_run.json (lineage, metrics curve, tokens/s)."""
    summary, result = _run_train(dataset, config, out, base, db, resume, merge)
    if as_json:
        emit_json(summary)
        return
    train_summary(result)


def _run_train(
    dataset: Path, config: Path | None, out: Path | None, base: str | None, db: Path | None, resume: bool, merge: bool
) -> tuple[dict[str, Any], Any]:
    """Train with a progress bar; returns the short JSON summary and the training result."""
    from schemas.dataset import DatasetError, resolve_version_dir
    from training.model import ModelError
    from training.sft import TrainError
    from training.sft import train as train_lib

    bar, progress = train_progress()

    import datasets
    import transformers

    datasets.disable_progress_bars()  # the training bar below says what happens; theirs only repeat "100%"
    transformers.utils.logging.disable_progress_bar()
    try:
        cfg = load_config(config)
        target = out or resolve_version_dir(dataset) / "adapter"
        with bar:
            result = train_lib(dataset, target, cfg, base=base, db=db, resume=resume, merge=merge, progress=progress)
    except (TrainError, DatasetError, ModelError, ConfigError, OSError) as exc:
        fail(str(exc))
    r = result.run
    summary = {
        "adapter": str(result.adapter_dir),
        "merged": r.merged_dir,
        "steps": r.steps,
        "train_loss": r.train_loss,
        "eval_loss": r.eval_loss,
        "eval_token_accuracy": r.eval_token_accuracy,
        "tokens_per_s": r.tokens_per_s,
        "peak_rss_mb": r.peak_rss_mb,
        "wall_seconds": r.wall_seconds,
        "device": r.device.type,
        "dtype": r.device.dtype,
        "rows": {k: v.model_dump(exclude={"dropped_rows"}) for k, v in r.rows.items()},
    }
    return summary, result


def evaluate(
    adapter: Annotated[Path, typer.Option("--adapter", help="Adapter folder written by `tracetune train`.")],
    dataset: Annotated[Path, typer.Option("--dataset", help="Dataset version folder, or a dataset root (its latest).")],
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: <adapter>/eval).")] = None,
    base: Annotated[str | None, typer.Option("--base", help="Base model: folder, .gguf or hub id.")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="Record the run in this DuckDB store (eval_runs).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare the base model and the adapter on the dataset's holdout, paired (one load, adapter off vs on).

    Teacher-forced loss and token accuracy on the assistant tokens; greedy answers scored by exact match, JSON
    parse rate, schema validity, per-field accuracy, ROUGE-L, refusal rate, length and latency; paired bootstrap
    intervals of adapter minus base; a promotion verdict from the config's evaluate: section.
    Writes eval.json and eval.html; the verdict is reported, not an exit code."""
    result = _run_evaluate(adapter, dataset, config, out, base, db)
    short = {"eval_json": str(result.out_dir / "eval.json"), "eval_html": str(result.out_dir / "eval.html")}
    short.update(result.report.summary())
    if as_json:
        emit_json(short)
        return
    print_eval_summary(result.report, result.out_dir)


def _run_evaluate(
    adapter: Path, dataset: Path, config: Path | None, out: Path | None, base: str | None, db: Path | None
) -> Any:
    """Evaluate base vs adapter with a progress bar; returns the evaluation result."""
    from training.evaluate import EvalError
    from training.evaluate import evaluate as evaluate_lib

    bar, progress = eval_progress()
    try:
        cfg = load_config(config)
        with bar:
            result = evaluate_lib(adapter, dataset, cfg, out=out, base=base, db=db, progress=progress)
    except (EvalError, ConfigError, OSError) as exc:
        fail(str(exc))
    return result
