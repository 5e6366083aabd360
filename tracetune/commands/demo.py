"""`demo`: ingest, curate, train and evaluate on the embedded sample traces."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from typing import Any, TypeVar

from schemas.config import DEFAULT_DB
from tracetune.commands.curation import _run_curate, _run_ingest
from tracetune.commands.training import _run_evaluate, _run_train
from tracetune.options import DEFAULT_OUT, DEMO_CONFIG, SAMPLES, DbOpt, JsonOpt
from tracetune.output import curate_summary, emit_json, fail, ingest_summary, print_eval_summary, say, train_summary

T = TypeVar("T")


def fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """Run one stage in a new (spawned) process and return its result. Training right after a curation in the
    same process ran ~4x slower (71 vs 285 tokens/s, same code and data); a fresh process also keeps the
    stage's peak memory its own."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def demo(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Run the main job on the embedded sample traces (data/samples of a checkout) with the demo's config
    (data/demo.yaml: the sample app's JSON schema, prompt, language and ids): ingest, curate (dedupe,
    redact, leak gate, rules, split, export) into data/dataset, train a LoRA adapter of the embedded
    SmolLM2-135M-Instruct on the latest version, and evaluate base vs adapter on its holdout (same short
    system prompt on both sides)."""
    if not (SAMPLES.is_dir() and DEMO_CONFIG.is_file()):
        fail(f"{SAMPLES} or {DEMO_CONFIG} not found: the demo runs from a checkout of the repository (make demo)")
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    stats = _run_ingest([SAMPLES], db, "auto", DEMO_CONFIG, quiet=False)
    lap("ingest")
    summary = _run_curate(db, DEMO_CONFIG, DEFAULT_OUT)
    lap("curate")
    if not as_json:
        ingest_summary(stats, db)
        curate_summary(summary)
    trained, result = fresh_process(_run_train, DEFAULT_OUT, DEMO_CONFIG, None, None, db, False, False)
    lap("train")
    if not as_json:
        train_summary(result)
    evaluated = fresh_process(_run_evaluate, result.adapter_dir, DEFAULT_OUT, DEMO_CONFIG, None, None, db)
    lap("evaluate")
    seconds["total"] = round(sum(seconds.values()), 1)
    if as_json:
        payload = {"db": str(db), "ingest": stats.as_dict(), "curate": summary, "training": trained}
        payload["evaluate"] = evaluated.report.summary()
        payload["seconds"] = seconds
        emit_json(payload)
        return
    print_eval_summary(evaluated.report, evaluated.out_dir)
    say("seconds by stage: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
