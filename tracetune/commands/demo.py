"""`demo`: ingest, curate, train and evaluate on the embedded sample traces."""

from __future__ import annotations

from schemas.config import DEFAULT_DB
from tracetune.commands.curation import _run_curate, _run_ingest
from tracetune.commands.training import _run_evaluate, _run_train
from tracetune.options import DEFAULT_OUT, DEMO_CONFIG, SAMPLES, DbOpt, JsonOpt
from tracetune.output import curate_summary, emit_json, fail, ingest_summary, print_eval_summary, train_summary


def demo(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Run the main job on the embedded sample traces (data/samples of a checkout) with the demo's config
    (data/demo.yaml: the sample app's JSON schema, prompt, language and ids): ingest, curate (dedupe,
    redact, leak gate, rules, split, export) into data/dataset, train a LoRA adapter of the embedded
    SmolLM2-135M-Instruct on the latest version, and evaluate base vs adapter on its holdout (same short
    system prompt on both sides)."""
    from training.evaluate import summary as eval_summary

    if not (SAMPLES.is_dir() and DEMO_CONFIG.is_file()):
        fail(f"{SAMPLES} or {DEMO_CONFIG} not found: the demo runs from a checkout of the repository (make demo)")
    stats = _run_ingest([SAMPLES], db, "auto", DEMO_CONFIG, quiet=False)
    summary = _run_curate(db, DEMO_CONFIG, DEFAULT_OUT)
    if not as_json:
        ingest_summary(stats, db)
        curate_summary(summary)
    trained, result = _run_train(DEFAULT_OUT, DEMO_CONFIG, None, None, db, False, False)
    if not as_json:
        train_summary(result)
    evaluated = _run_evaluate(result.adapter_dir, DEFAULT_OUT, DEMO_CONFIG, None, None, db)
    if as_json:
        payload = {"db": str(db), "ingest": stats.as_dict(), "curate": summary, "training": trained}
        payload["evaluate"] = eval_summary(evaluated.report)
        emit_json(payload)
        return
    print_eval_summary(evaluated.report, evaluated.out_dir)
