"""LoRA SFT of a base model on a dataset version, with trl's SFTTrainer and peft's LoraConfig.

The rows are tokenized here (`training.chat`) with labels only on trainable assistant tokens, so trl uses the
labels as they are; rows that truncation or weights leave without trainable tokens are dropped and counted
before trl sees them. Settings follow the device: fp32 without gradient checkpointing on CPU (trl's defaults,
bf16 + checkpointing, are ~18x slower there), bf16 on CUDA where supported, QLoRA only on CUDA.

Outputs in the adapter folder: the PEFT adapter, the tokenizer and chat template, `training_run.json`, and
`checkpoints/` (for `resume`); `merged/` with `merge`. They are published crash-safely (`training.publish`):
`training_run.json` is written last and only by a finished run, and `resume` skips a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from schemas.config import Config, config_hash, load_config
from schemas.dataset import TRACE_IDS, DatasetError, lineage, load_manifest, sha256_file
from schemas.runs import TRAINING_RUN_FILE, BaseModelRef, DeviceInfo, RowCounts, TrainedDataset, TrainingRun
from schemas.training import TrainConfig
from training.chat import EncodeStats, RowError, encode_rows
from training.device import DeviceError, cpu_threads, native_bf16, peak_rss_mb, pick_device, use_bf16
from training.model import ModelError, load_tokenizer, resolve_base
from training.publish import complete_checkpoint, publish, staging_dir
from training.trainer import (
    CHECKPOINTS,
    Progress,
    check_target_modules,
    hf_dataset,
    keep_input_dtype,
    load_train_model,
    lora_config,
    sft_config,
    step_tracker,
    trainer_class,
)

RUN_FILE = TRAINING_RUN_FILE
MERGED = "merged"


class TrainError(ValueError):
    """A training run that cannot start (bad input, bad setting for this device); one clear line."""


@dataclass
class TrainResult:
    """Where the adapter went and the contents of its `training_run.json`."""

    adapter_dir: Path
    run: TrainingRun


def read_jsonl(path: Path, required: bool = True) -> list[dict[str, Any]]:
    """Rows of a JSONL split; an empty or missing required file, or a bad line, is an error naming it."""
    if not path.is_file():
        if required:
            raise TrainError(f"{path}: file not found")
        return []
    rows: list[dict[str, Any]] = []
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise TrainError(f"{path.name} row {n}: not valid JSON ({exc})") from None
    if required and not rows:
        raise TrainError(f"{path}: empty file (no rows to train on)")
    return rows


def last_checkpoint(out: Path) -> Path | None:
    """The newest complete `checkpoint-N` folder under `out/checkpoints` (one a kill cut short is skipped)."""
    folder = out / CHECKPOINTS
    cks = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()] if folder.is_dir() else []
    cks = [p for p in cks if complete_checkpoint(p)]
    return max(cks, key=lambda p: int(p.name.split("-")[-1])) if cks else None


def _trace_ids(folder: Path) -> dict[str, Any]:
    f = folder / TRACE_IDS
    if not f.is_file():
        return {"train_trace_ids": None, "train_trace_ids_sha256": None, "holdout_trace_ids_sha256": None}
    ids = json.loads(f.read_text(encoding="utf-8"))

    def digest(xs: list[str]) -> str:
        return hashlib.sha256("\n".join(xs).encode()).hexdigest()

    return {
        "trace_ids_file_sha256": sha256_file(f),
        "train_trace_ids_sha256": digest(ids.get("train", [])),
        "holdout_trace_ids_sha256": digest(ids.get("holdout", [])),
        "train_trace_ids": ids.get("train", []),
    }


def _check_writable(out: Path) -> None:
    """TrainError naming `out` when the adapter folder cannot be created or written (before the model loads)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TrainError(f"{out}: the adapter folder is not writable ({exc.strerror or exc})") from None


def train(
    dataset: str | Path,
    out: str | Path,
    config: Config | None = None,
    *,
    base: str | None = None,
    db: str | Path | None = None,
    resume: bool = False,
    merge: bool = False,
    progress: Progress | None = None,
    flow_run_id: str | None = None,
) -> TrainResult:
    """Train a LoRA adapter on a dataset version folder (or a dataset root's `latest`) into `out`.

    Every input problem (manifest mismatch, bad or empty split, a row without an assistant turn, a missing base
    model, an unknown LoRA target) raises `TrainError`, `DatasetError` or `ModelError` before training starts."""
    import torch

    started = datetime.now(UTC)
    t_start = time.perf_counter()
    cfg = config or load_config()
    tc = cfg.train
    out = Path(out)
    try:
        folder, manifest = load_manifest(dataset, verify=True)
    except DatasetError as exc:
        raise TrainError(str(exc)) from None
    train_rows = read_jsonl(folder / "train.jsonl")
    holdout_rows = read_jsonl(folder / "holdout.jsonl", required=False)
    try:
        device = pick_device(tc)
        native = native_bf16(device)
        bf16 = use_bf16(tc.precision, device, native)
    except DeviceError as exc:
        raise TrainError(str(exc)) from None
    if device == "cpu":
        torch.set_num_threads(cpu_threads(tc.threads))
        torch.set_flush_denormal(True)  # tiny LoRA updates and Adam moments go denormal: slow on x86, ~0 anyway
    try:
        ref = resolve_base(base or tc.base_model)
        tokenizer = load_tokenizer(ref.path)
    except ModelError as exc:
        raise TrainError(str(exc)) from None
    if tc.eval_rows:
        holdout_rows = holdout_rows[: tc.eval_rows]
    try:
        train_enc, train_stats = encode_rows(tokenizer, train_rows, tc.max_length, "train.jsonl")
        eval_enc, eval_stats = encode_rows(tokenizer, holdout_rows, tc.max_length, "holdout.jsonl")
    except RowError as exc:
        raise TrainError(str(exc)) from None
    if not train_enc:
        raise TrainError(
            f"train.jsonl: none of {train_stats.rows} rows has a trainable assistant token "
            f"({train_stats.no_trainable} weight-0 only, {train_stats.dropped_truncated} cut off by max_length)"
        )
    resume_from = None
    if resume:
        resume_from = last_checkpoint(out)
        if resume_from is None and not (out / CHECKPOINTS).is_dir():
            raise TrainError(f"--resume: no checkpoint in {out / CHECKPOINTS}")
        # a checkpoints folder without a complete checkpoint: the run died before its first one, so start over

    _check_writable(out)
    if tc.quantization == "4bit" and importlib.util.find_spec("bitsandbytes") is None:
        raise TrainError("train.quantization: 4bit needs the bitsandbytes package (pip install bitsandbytes)")
    model = load_train_model(ref.path, tc, device, bf16)
    bad_target = check_target_modules(model, tc)
    if bad_target:
        raise TrainError(bad_target)
    (out / CHECKPOINTS).mkdir(exist_ok=True)  # marks a started run, so --resume after an early kill starts over

    from transformers import PrinterCallback

    curve: list[dict[str, Any]] = []
    tracker = step_tracker(progress, curve)
    args = sft_config(tc, out, device, has_eval=bool(eval_enc), bf16=bf16)
    torch.manual_seed(tc.seed)
    trainer = trainer_class()(
        model=model,
        args=args,
        train_dataset=hf_dataset(train_enc),
        eval_dataset=hf_dataset(eval_enc) if eval_enc else None,
        processing_class=tokenizer,
        peft_config=lora_config(tc),
        callbacks=[tracker],
    )
    tracker.trainer = trainer
    if bf16:
        keep_input_dtype(trainer.model)
    trainer.remove_callback(PrinterCallback)  # it prints every log dict on stdout, which `--json` owns
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    stage = staging_dir(out)
    trainer.model.save_pretrained(str(stage))
    tokenizer.save_pretrained(str(stage))
    wall = time.perf_counter() - t_start

    history = trainer.state.log_history  # with --resume, also the logs of the steps before the checkpoint
    evals = [c for c in history if "eval_loss" in c]
    trains = [c for c in history if "loss" in c]
    run = TrainingRun(
        run_id=hashlib.sha256(f"{out.resolve()}|{started.isoformat()}".encode()).hexdigest()[:16],
        started_at=started,
        finished_at=datetime.now(UTC),
        adapter_dir=str(out.resolve()),
        dataset=TrainedDataset(**lineage(folder, manifest), **_trace_ids(folder)),
        base_model=BaseModelRef(spec=base or tc.base_model, id=ref.base_id, hash=ref.base_hash, path=str(ref.path)),
        config_hash=config_hash(cfg),
        train_config=tc.model_dump(mode="json"),
        rows={"train": RowCounts(**train_stats.as_dict()), "eval": RowCounts(**eval_stats.as_dict())},
        device=DeviceInfo(
            type=device,
            name=torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or platform.machine(),
            threads=torch.get_num_threads(),
            dtype="bf16" if bf16 else "fp32",
            native_bf16=native,
            quantization=tc.quantization,
            gradient_checkpointing=bool(args.activation_checkpointing),
        ),
        steps=int(trainer.state.global_step),
        resumed_from=str(resume_from) if resume_from else None,
        train_loss=_mean_loss(trains) if resume_from and trains else float(result.training_loss),
        final_train_loss=trains[-1]["loss"] if trains else None,
        eval_loss=evals[-1]["eval_loss"] if evals else None,
        eval_token_accuracy=evals[-1].get("eval_mean_token_accuracy") if evals else None,
        curve=curve,
        trained_tokens=tracker.tokens,
        train_seconds=round(tracker.seconds, 3),
        tokens_per_s=round(tracker.tokens / tracker.seconds, 2) if tracker.seconds else None,
        tokens_per_s_after_first_step=_steady_rate(tracker.steps),
        step_times=[[round(s, 4), n] for s, n in tracker.steps],
        wall_seconds=round(wall, 3),
        peak_rss_mb=peak_rss_mb(),
        versions=_versions(),
        flow_run_id=flow_run_id,
    )
    if merge:
        merge_adapter(stage, ref.path, tc, device)
        run.merged_dir = str(out / MERGED)
    publish(stage, out, RUN_FILE, run.model_dump_json(indent=2))
    if db:
        from curation.store import Store

        with Store(db) as store:
            record_run(store, run)
    return TrainResult(out, run)


def _mean_loss(logs: list[dict[str, Any]]) -> float:
    """Mean train loss per step over the whole run from its loss logs (each averages the steps since the last)."""
    total, prev = 0.0, 0
    for c in logs:
        total += c["loss"] * (c["step"] - prev)
        prev = c["step"]
    return total / max(prev, 1)


def _steady_rate(steps: list[tuple[float, int]]) -> float | None:
    """Tokens/s without the first step (allocator and kernel warm-up)."""
    rest = steps[1:]
    seconds = sum(s for s, _ in rest)
    return round(sum(n for _, n in rest) / seconds, 2) if seconds else None


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "transformers", "peft", "trl", "accelerate", "datasets")}


def merge_adapter(adapter_dir: Path, base_path: Path, tc: TrainConfig, device: str) -> Path:
    """Write base + adapter merged into one full model (`adapter_dir/merged`), from an unquantized base load."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.model import load_tokenizer

    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    target = adapter_dir / MERGED
    merged.save_pretrained(str(target))
    load_tokenizer(adapter_dir).save_pretrained(str(target))
    return target


def record_run(store: Any, run: TrainingRun) -> None:
    """Insert (or replace) the run's row in the `training_runs` table."""
    d = run.dataset
    store.con.execute("DELETE FROM training_runs WHERE run_id = ?", [run.run_id])
    store.con.execute(
        "INSERT INTO training_runs (run_id, adapter_dir, dataset_path, dataset_version, manifest_sha256, "
        "train_trace_ids_sha256, base_model_id, base_model_hash, config_hash, device, steps, trained_tokens, "
        "tokens_per_s, wall_seconds, train_loss, eval_loss, eval_token_accuracy, started_at, finished_at, run, "
        "flow_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run.run_id,
            run.adapter_dir,
            d.path,
            d.version,
            d.manifest_sha256,
            d.train_trace_ids_sha256,
            run.base_model.id,
            run.base_model.hash,
            run.config_hash,
            run.device.type,
            run.steps,
            run.trained_tokens,
            run.tokens_per_s,
            run.wall_seconds,
            run.train_loss,
            run.eval_loss,
            run.eval_token_accuracy,
            run.started_at.isoformat(),
            run.finished_at.isoformat(),
            run.model_dump_json(),
            run.flow_run_id,
        ],
    )


__all__ = ["EncodeStats", "TrainError", "TrainResult", "read_jsonl", "train"]
