"""Evaluation: the base model vs the LoRA adapter on a dataset version's holdout, paired.

The base model is loaded once and wrapped with the adapter; every holdout row is scored with the adapter
disabled (peft's `disable_adapter()`) and enabled, with the same tokenization and decoding, so each example gives
a (base, adapter) pair. This module holds the inputs and lineage checks, the run, and the report's summary and
database row; the model passes are in `training.generation`, the metrics and statistics in `training.metrics`.
Input problems (adapter trained on another base, holdout without answers, holdout rows the adapter was trained
on) raise `EvalError` before any generation.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from schemas.config import Config, config_hash, load_config
from schemas.dataset import TRACE_IDS, DatasetError, lineage, load_manifest, sha256_file
from schemas.evaluation import METRICS, EvalConfig
from schemas.runs import (
    AdapterRef,
    BaseModelRef,
    EvalDataset,
    EvalLineage,
    EvalRun,
    EvalTiming,
    RecordError,
    TrainingRun,
    Verdict,
)
from training.chat import RowError, prompt_text
from training.device import cpu_threads, peak_rss_mb
from training.generation import generate, teacher_forced
from training.metrics import paired_bootstrap, score_answer, verdict
from training.model import ModelError, load_tokenizer, resolve_base
from training.sft import RUN_FILE, TrainError, read_jsonl

EVAL_JSON = "eval.json"
EVAL_HTML = "eval.html"

Progress = Callable[[str, int, int], None]


class EvalError(ValueError):
    """An evaluation that cannot start (bad adapter, dataset or lineage); one clear line."""


# ---- inputs and lineage -------------------------------------------------------------------------------------------


@dataclass
class Example:
    """One holdout row to evaluate: its generation prompt, reference answer and trace id."""

    index: int
    trace_id: str | None
    row: dict[str, Any]
    prompt: str
    reference: str


def read_run(adapter_dir: Path) -> TrainingRun:
    """The adapter's `training_run.json` (its lineage)."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise EvalError(f"{adapter_dir}: not a LoRA adapter folder (no adapter_config.json)")
    f = adapter_dir / RUN_FILE
    if not f.is_file():
        raise EvalError(f"{adapter_dir}: no {RUN_FILE}, so its base model and training data are unknown")
    try:
        return TrainingRun.read(f)
    except RecordError as exc:
        raise EvalError(str(exc)) from None


def check_base(run: TrainingRun, base_id: str, base_hash: str) -> None:
    """The adapter must have been trained on the base model being loaded (weights hash, from the lineage)."""
    trained = run.base_model
    if trained.hash != base_hash:
        raise EvalError(
            f"adapter was trained on base model {trained.id} ({trained.hash[:24]}), "
            f"but the base model here is {base_id} ({base_hash[:24]}); evaluate it with --base set to its base"
        )


def check_overlap(run: TrainingRun, holdout_ids: list[str | None], folder: Path, rows: list[dict]) -> str:
    """No holdout row may be one the adapter was trained on: by trace id (lineage), else by row content when the
    adapter's training data is still on disk. Returns how overlap was checked."""
    d = run.dataset
    train_ids = d.train_trace_ids
    if train_ids and any(holdout_ids):
        both = sorted({t for t in holdout_ids if t} & set(train_ids))
        if both:
            raise EvalError(
                f"{folder / 'holdout.jsonl'}: {len(both)} holdout row(s) are in the adapter's training data "
                f"(dataset v{d.version}, trace ids {', '.join(both[:5])}); the comparison would be inflated"
            )
        return "trace_ids"
    train_file = Path(d.path) / "train.jsonl"
    if train_file.is_file():
        seen = {_row_hash(r) for r in read_jsonl(train_file, required=False)}
        both_rows = [i + 1 for i, r in enumerate(rows) if _row_hash(r) in seen]
        if both_rows:
            raise EvalError(
                f"{folder / 'holdout.jsonl'}: rows {both_rows[:5]} are identical to rows of the adapter's training "
                f"data ({train_file})"
            )
        return "row_content"
    return "unchecked (no trace ids and the training data is gone)"


def _row_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(row.get("messages", row), sort_keys=True).encode()).hexdigest()


def load_examples(folder: Path, tokenizer: Any, limit: int | None) -> tuple[list[Example], dict[str, Any]]:
    """The holdout rows with an assistant answer to compare against, first `limit` of them."""
    path = folder / "holdout.jsonl"
    try:
        rows = read_jsonl(path, required=False)
    except TrainError as exc:
        raise EvalError(str(exc)) from None
    if not rows:
        raise EvalError(f"{path}: no holdout rows to evaluate on")
    ids_file = folder / TRACE_IDS
    ids: list[str | None] = [None] * len(rows)
    if ids_file.is_file():
        listed = json.loads(ids_file.read_text(encoding="utf-8")).get("holdout", [])
        if len(listed) == len(rows):
            ids = list(listed)
    examples: list[Example] = []
    skipped: list[int] = []
    for i, row in enumerate(rows):
        where = f"holdout.jsonl row {i + 1}"
        try:
            prompt, ref = prompt_text(tokenizer, row, where)
        except RowError as exc:
            if "no assistant message" in str(exc):
                skipped.append(i + 1)
                continue
            raise EvalError(str(exc)) from None
        if not ref.strip():
            skipped.append(i + 1)
            continue
        examples.append(Example(i, ids[i], row, prompt, ref))
    if not examples:
        raise EvalError(f"{path}: none of the {len(rows)} holdout rows has an assistant answer to compare against")
    total = len(examples)
    if limit:
        examples = examples[:limit]
    info = {"rows": len(rows), "with_answer": total, "evaluated": len(examples), "skipped_rows": skipped[:50]}
    return examples, {"all_rows": rows, "ids": ids, **info}


# ---- the run ------------------------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """Where the outputs went and the contents of `eval.json`."""

    out_dir: Path
    report: EvalRun

    @property
    def verdict(self) -> Verdict:
        return self.report.verdict


def _aggregate(per: list[dict[str, Any]], ec: EvalConfig) -> dict[str, dict[str, Any]]:
    opts = {"samples": ec.bootstrap_samples, "confidence": ec.confidence, "seed": ec.seed}
    metrics: dict[str, dict[str, Any]] = {}
    b = [p["base"] for p in per]
    a = [p["adapter"] for p in per]
    toks = [x["tokens"] for x in b]
    keep = [i for i, t in enumerate(toks) if t > 0]
    loss_b, loss_a = [b[i]["loss_sum"] for i in keep], [a[i]["loss_sum"] for i in keep]
    w = [toks[i] for i in keep]
    metrics["loss"] = paired_bootstrap(loss_b, loss_a, w, **opts)
    metrics["perplexity"] = paired_bootstrap(loss_b, loss_a, w, transform=np.exp, **opts)
    metrics["token_accuracy"] = paired_bootstrap(
        [b[i]["correct"] for i in keep], [a[i]["correct"] for i in keep], w, **opts
    )
    for name in ("exact_match", "json_parse", "schema_valid", "field_accuracy", "rouge_l", "refusal", "length_ratio"):
        pairs = [(x[name], y[name]) for x, y in zip(b, a, strict=True) if x[name] is not None]
        metrics[name] = paired_bootstrap([p[0] for p in pairs], [p[1] for p in pairs], **opts)
    metrics["latency_s"] = paired_bootstrap([x["latency_s"] for x in b], [y["latency_s"] for y in a], **opts)
    return {k: metrics[k] for k in METRICS}


def _example_score(s: dict[str, Any]) -> float:
    return s["field_accuracy"] if s["field_accuracy"] is not None else s["rouge_l"]


def evaluate(
    adapter: str | Path,
    dataset: str | Path,
    config: Config | None = None,
    *,
    out: str | Path | None = None,
    base: str | None = None,
    db: str | Path | None = None,
    progress: Progress | None = None,
    flow_run_id: str | None = None,
) -> EvalResult:
    """Compare the base model and the adapter on the dataset version's holdout; writes `eval.json` and `eval.html`
    into `out` (default `<adapter>/eval`), and an `eval_runs` row when `db` is given.

    Raises `EvalError` (bad adapter, lineage or holdout) before any generation."""
    import torch

    started = datetime.now(UTC)
    t_start = time.perf_counter()
    cfg = config or load_config()
    ec = cfg.evaluate
    adapter_dir = Path(adapter)
    run = read_run(adapter_dir)
    try:
        folder, manifest = load_manifest(dataset, verify=True)
        ref = resolve_base(base or cfg.train.base_model)
        tokenizer = load_tokenizer(ref.path)
    except (DatasetError, ModelError) as exc:
        raise EvalError(str(exc)) from None
    check_base(run, ref.base_id, ref.base_hash)
    examples, info = load_examples(folder, tokenizer, ec.max_examples)
    overlap = check_overlap(run, info["ids"], folder, info["all_rows"])
    schema = manifest.expect_json_schema
    refusals = [re.compile(p, re.I) for p in cfg.filter.refusal_patterns]
    torch.set_num_threads(cpu_threads(ec.threads))

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    t_load = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(ref.path), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    load_s = time.perf_counter() - t_load
    rows = [e.row for e in examples]
    prompts = [e.prompt for e in examples]
    n = len(examples)

    def tick(stage: str) -> Callable[[int], None]:
        done = [0]

        def f(k: int) -> None:
            done[0] += k
            if progress:
                progress(stage, done[0], n)

        return f

    timings: dict[str, float] = {"load_s": load_s}
    t0 = time.perf_counter()
    with model.disable_adapter():
        tf_base = teacher_forced(model, tokenizer, rows, ec.max_length, ec.batch_size)
        timings["teacher_forced_base_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        gen_base = generate(model, tokenizer, prompts, ec.max_new_tokens, ec.batch_size, tick("base"))
        timings["generate_base_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tf_adapter = teacher_forced(model, tokenizer, rows, ec.max_length, ec.batch_size)
    timings["teacher_forced_adapter_s"] = time.perf_counter() - t0
    merged = False
    if ec.merge_for_generation:
        try:
            model.merge_adapter()
            merged = True
        except Exception:  # some adapter types cannot merge; unmerged generation is still correct
            merged = False
    t0 = time.perf_counter()
    gen_adapter = generate(model, tokenizer, prompts, ec.max_new_tokens, ec.batch_size, tick("adapter"))
    timings["generate_adapter_s"] = time.perf_counter() - t0
    if merged:
        model.unmerge_adapter()

    per: list[dict[str, Any]] = []
    examples_out: list[dict[str, Any]] = []
    for i, e in enumerate(examples):
        side: dict[str, Any] = {}
        for name, tf, gen in (("base", tf_base[i], gen_base[i]), ("adapter", tf_adapter[i], gen_adapter[i])):
            side[name] = {
                **tf,
                **score_answer(gen["text"], e.reference, schema, refusals),
                "latency_s": gen["latency_s"],
                "new_tokens": gen["new_tokens"],
                "stopped": gen["stopped"],
            }
        per.append(side)
        sb, sa = _example_score(side["base"]), _example_score(side["adapter"])
        examples_out.append(
            {
                "index": e.index,
                "trace_id": e.trace_id,
                "prompt": e.prompt,
                "reference": e.reference,
                "base_output": gen_base[i]["text"],
                "adapter_output": gen_adapter[i]["text"],
                "base": _round(side["base"]),
                "adapter": _round(side["adapter"]),
                "outcome": "lost" if sa < sb else "won" if sa > sb else "tie",
            }
        )
    metrics = _aggregate(per, ec)
    decision = verdict(metrics, ec)
    gen_tokens = sum(g["new_tokens"] for g in gen_base + gen_adapter)
    gen_s = timings["generate_base_s"] + timings["generate_adapter_s"]
    out_dir = Path(out) if out else adapter_dir / "eval"
    wall = time.perf_counter() - t_start
    report = EvalRun(
        eval_id=hashlib.sha256(f"{out_dir.resolve()}|{started.isoformat()}".encode()).hexdigest()[:16],
        started_at=started,
        finished_at=datetime.now(UTC),
        n=n,
        metrics=metrics,
        verdict=decision,
        outcomes={k: sum(1 for x in examples_out if x["outcome"] == k) for k in ("won", "tie", "lost")},
        lineage=EvalLineage(
            dataset=EvalDataset(
                **lineage(folder, manifest),
                expect_json_schema=schema is not None,
                **{k: info[k] for k in ("rows", "with_answer", "evaluated", "skipped_rows")},
            ),
            adapter=AdapterRef(
                path=str(adapter_dir.resolve()),
                run_id=run.run_id,
                adapter_sha256=_adapter_hash(adapter_dir),
                trained_on_version=run.dataset.version,
                trained_on_manifest_sha256=run.dataset.manifest_sha256,
                steps=run.steps,
                train_config_hash=run.config_hash,
            ),
            base_model=BaseModelRef(id=ref.base_id, hash=ref.base_hash, path=str(ref.path)),
            overlap_check=overlap,
            config_hash=config_hash(cfg),
            eval_config=ec.model_dump(mode="json"),
            versions=_versions(),
        ),
        timing=EvalTiming(
            **{k: round(v, 3) for k, v in timings.items()},
            generated_tokens=gen_tokens,
            generate_tokens_per_s=round(gen_tokens / gen_s, 2) if gen_s else None,
            seconds_per_example=round(gen_s / (2 * n), 3) if n else None,
            merged_for_adapter_generation=merged,
            threads=torch.get_num_threads(),
            wall_s=round(wall, 3),
            peak_rss_mb=peak_rss_mb(),
        ),
        examples=examples_out,
        flow_run_id=flow_run_id,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write(out_dir / EVAL_JSON)
    from training.eval_report import render_html

    (out_dir / EVAL_HTML).write_text(render_html(report.model_dump(mode="json")), encoding="utf-8")
    if db:
        from curation.store import Store

        with Store(db) as store:
            record_eval(store, report)
    return EvalResult(out_dir, report)


def _round(s: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()}


def _adapter_hash(folder: Path) -> str | None:
    f = folder / "adapter_model.safetensors"
    return sha256_file(f) if f.is_file() else None


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "transformers", "peft")}


def record_eval(store: Any, report: EvalRun) -> None:
    """Insert (or replace) the report's row in the `eval_runs` table."""
    m, lin = report.metrics, report.lineage
    store.con.execute("DELETE FROM eval_runs WHERE eval_id = ?", [report.eval_id])
    store.con.execute(
        "INSERT INTO eval_runs (eval_id, adapter_dir, adapter_run_id, dataset_path, dataset_version, "
        "manifest_sha256, base_model_id, base_model_hash, config_hash, n, promote, base_json_parse, "
        "adapter_json_parse, base_field_accuracy, adapter_field_accuracy, base_loss, adapter_loss, started_at, "
        "finished_at, report, flow_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            report.eval_id,
            lin.adapter.path,
            lin.adapter.run_id,
            lin.dataset.path,
            lin.dataset.version,
            lin.dataset.manifest_sha256,
            lin.base_model.id,
            lin.base_model.hash,
            lin.config_hash,
            report.n,
            report.verdict.promote,
            m["json_parse"].base,
            m["json_parse"].adapter,
            m["field_accuracy"].base,
            m["field_accuracy"].adapter,
            m["loss"].base,
            m["loss"].adapter,
            report.started_at.isoformat(),
            report.finished_at.isoformat(),
            report.model_dump_json(exclude={"examples"}),
            report.flow_run_id,
        ],
    )


__all__ = [
    "EvalError",
    "EvalResult",
    "Example",
    "check_base",
    "check_overlap",
    "evaluate",
    "load_examples",
    "read_run",
    "record_eval",
]
