"""LoRA SFT of a base model on a dataset version, with trl's SFTTrainer and peft's LoraConfig.

The rows are tokenized here (`training.chat`) with labels only on trainable assistant tokens, so trl uses the
labels as they are; rows that truncation or weights leave without trainable tokens are dropped and counted
before trl sees them. Settings follow the device: fp32 without gradient checkpointing on CPU (trl's defaults,
bf16 + checkpointing, are ~18x slower there), bf16 on CUDA where supported, QLoRA only on CUDA.

Outputs in the adapter folder: the PEFT adapter, the tokenizer and chat template, `training_run.json`, and
`checkpoints/` (for `resume`); `merged/` with `merge`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from schemas.config import Config, config_hash, load_config
from schemas.dataset import TRACE_IDS, DatasetError, lineage, load_manifest, sha256_file
from schemas.training import TrainConfig
from training.chat import Encoded, EncodeStats, RowError, encode_rows
from training.model import ModelError, load_tokenizer, resolve_base

RUN_FILE = "training_run.json"
CHECKPOINTS = "checkpoints"
MERGED = "merged"

Progress = Callable[[dict[str, Any]], None]


class TrainError(ValueError):
    """A training run that cannot start (bad input, bad setting for this device); one clear line."""


@dataclass
class TrainResult:
    """Where the adapter went and the contents of its `training_run.json`."""

    adapter_dir: Path
    run: dict[str, Any]


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


def pick_device(tc: TrainConfig) -> str:
    """The training device: the configured one, or CUDA > MPS > CPU for `auto`; QLoRA needs CUDA."""
    import torch

    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    device = tc.device
    if device == "auto":
        device = "cuda" if has_cuda else "mps" if has_mps else "cpu"
    elif device == "cuda" and not has_cuda:
        raise TrainError("train.device: cuda was asked for but no CUDA GPU is available (use auto or cpu)")
    elif device == "mps" and not has_mps:
        raise TrainError("train.device: mps was asked for but Apple MPS is not available (use auto or cpu)")
    if tc.quantization == "4bit" and device != "cuda":
        raise TrainError(
            f"train.quantization: 4bit (QLoRA, bitsandbytes) needs a CUDA GPU; this run trains on {device}. "
            "Set quantization: none"
        )
    return device


def cpu_threads(threads: int) -> int:
    """Threads for torch: `threads` when set, else (0) the cores this process may use."""
    if threads:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_target_modules(model: Any, tc: TrainConfig) -> None:
    """Every named LoRA target must be a module of the model (peft's own error comes late and is vague)."""
    if tc.target_modules == "all-linear":
        return
    import torch

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    for t in tc.target_modules:
        if t not in names and not any(n.endswith(t) for n, _ in model.named_modules()):
            raise TrainError(
                f"train.target_modules: the model has no module '{t}' (its linear layers: {', '.join(linear)})"
            )


def lora_config(tc: TrainConfig) -> Any:
    """peft LoraConfig from the train section."""
    from peft import LoraConfig

    return LoraConfig(
        r=tc.lora_r,
        lora_alpha=tc.lora_alpha,
        lora_dropout=tc.lora_dropout,
        target_modules=tc.target_modules,
        use_rslora=tc.use_rslora,
        use_dora=tc.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def use_bf16(tc: TrainConfig, device: str) -> bool:
    """bf16 mixed precision: as configured, or (auto) on CUDA with bf16 support; fp32 elsewhere."""
    import torch

    if tc.precision != "auto":
        return tc.precision == "bf16"
    return device == "cuda" and torch.cuda.is_bf16_supported()


def sft_config(tc: TrainConfig, out: Path, device: str, has_eval: bool) -> Any:
    """trl SFTConfig with the device-aware precision and memory settings."""
    from trl import SFTConfig

    bf16 = use_bf16(tc, device)
    gc = False if tc.gradient_checkpointing == "auto" else bool(tc.gradient_checkpointing)
    never = 10**9  # with step strategies, transformers still evaluates and saves at the last step
    return SFTConfig(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=tc.batch_size,
        gradient_accumulation_steps=tc.grad_accum,
        learning_rate=tc.learning_rate,
        lr_scheduler_type=tc.lr_scheduler,
        warmup_steps=tc.warmup_steps,
        weight_decay=tc.weight_decay,
        num_train_epochs=tc.epochs,
        max_steps=tc.max_steps or -1,
        max_length=tc.max_length,
        packing=tc.packing,
        seed=tc.seed,
        data_seed=tc.seed,
        bf16=bf16,
        fp16=False,
        use_cpu=device == "cpu",
        activation_checkpointing=gc,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=tc.eval_steps or never,
        save_strategy="steps",
        save_steps=tc.save_steps or never,
        save_total_limit=tc.save_total_limit,
        logging_steps=tc.logging_steps,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )


def _dataset(rows: list[Encoded]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]})


def _trainer_callback(progress: Progress | None, curve: list[dict[str, Any]], timing: dict[str, float]) -> Any:
    from transformers import TrainerCallback

    class Tracker(TrainerCallback):
        """Collects the metrics curve and the time spent in optimizer steps; reports progress."""

        trainer: Any = None
        steps: list[tuple[float, int]] = []  # noqa: RUF012 (one Tracker per run)

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timing["t0"] = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            took = time.perf_counter() - timing.pop("t0", time.perf_counter())
            timing["train_s"] += took
            tokens = int(getattr(self.trainer, "_total_train_tokens", 0))
            self.steps.append((took, tokens - int(timing["tokens"])))
            timing["tokens"] = tokens
            if progress:
                last = next((c["loss"] for c in reversed(curve) if "loss" in c), None)
                progress(
                    {
                        "step": state.global_step,
                        "max_steps": state.max_steps,
                        "loss": last,
                        "tokens_per_s": (tokens - timing["tokens0"]) / max(timing["train_s"], 1e-9),
                    }
                )

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs:
                keep = {k: v for k, v in logs.items() if isinstance(v, int | float)}
                curve.append({"step": state.global_step, "epoch": state.epoch, **keep})

    return Tracker()


def last_checkpoint(out: Path) -> Path | None:
    """The newest `checkpoint-N` folder under `out/checkpoints`."""
    folder = out / CHECKPOINTS
    cks = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()] if folder.is_dir() else []
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
    device = pick_device(tc)
    if device == "cpu":
        torch.set_num_threads(cpu_threads(tc.threads))
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
        if resume_from is None:
            raise TrainError(f"--resume: no checkpoint in {out / CHECKPOINTS}")

    model = _load_model(ref.path, tc, device)
    check_target_modules(model, tc)

    from transformers import PrinterCallback
    from trl import SFTTrainer

    curve: list[dict[str, Any]] = []
    timing = {"train_s": 0.0, "tokens": 0, "tokens0": 0}
    tracker = _trainer_callback(progress, curve, timing)
    args = sft_config(tc, out, device, has_eval=bool(eval_enc))
    torch.manual_seed(tc.seed)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=_dataset(train_enc),
        eval_dataset=_dataset(eval_enc) if eval_enc else None,
        processing_class=tokenizer,
        peft_config=lora_config(tc),
        callbacks=[tracker],
    )
    tracker.trainer = trainer
    trainer.remove_callback(PrinterCallback)  # it prints every log dict on stdout, which `--json` owns
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    trainer.model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    wall = time.perf_counter() - t_start

    evals = [c for c in curve if "eval_loss" in c]
    trains = [c for c in curve if "loss" in c]
    run: dict[str, Any] = {
        "run_id": hashlib.sha256(f"{out.resolve()}|{started.isoformat()}".encode()).hexdigest()[:16],
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "adapter_dir": str(out.resolve()),
        "dataset": {**lineage(folder, manifest), **_trace_ids(folder)},
        "base_model": {"spec": base or tc.base_model, "id": ref.base_id, "hash": ref.base_hash, "path": str(ref.path)},
        "config_hash": config_hash(cfg),
        "train_config": tc.model_dump(mode="json"),
        "rows": {"train": train_stats.as_dict(), "eval": eval_stats.as_dict()},
        "device": {
            "type": device,
            "name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "dtype": "bf16" if args.bf16 else "fp32",
            "quantization": tc.quantization,
            "gradient_checkpointing": bool(args.activation_checkpointing),
        },
        "steps": int(trainer.state.global_step),
        "resumed_from": str(resume_from) if resume_from else None,
        "train_loss": float(result.training_loss),
        "final_train_loss": trains[-1]["loss"] if trains else None,
        "eval_loss": evals[-1]["eval_loss"] if evals else None,
        "eval_token_accuracy": evals[-1].get("eval_mean_token_accuracy") if evals else None,
        "curve": curve,
        "trained_tokens": int(timing["tokens"]),
        "train_seconds": round(timing["train_s"], 3),
        "tokens_per_s": round(timing["tokens"] / timing["train_s"], 2) if timing["train_s"] else None,
        "tokens_per_s_after_first_step": _steady_rate(tracker.steps),
        "step_times": [[round(s, 4), n] for s, n in tracker.steps],
        "wall_seconds": round(wall, 3),
        "versions": _versions(),
        "flow_run_id": flow_run_id,
    }
    if merge:
        run["merged_dir"] = str(merge_adapter(out, ref.path, tc, device))
    (out / RUN_FILE).write_text(json.dumps(run, indent=2, default=str), encoding="utf-8")
    if db:
        from curation.store import Store

        with Store(db) as store:
            record_run(store, run)
    return TrainResult(out, run)


def _steady_rate(steps: list[tuple[float, int]]) -> float | None:
    """Tokens/s without the first step (allocator and kernel warm-up)."""
    rest = steps[1:]
    seconds = sum(s for s, _ in rest)
    return round(sum(n for _, n in rest) / seconds, 2) if seconds else None


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "transformers", "peft", "trl", "accelerate", "datasets")}


def _load_model(path: Path, tc: TrainConfig, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if device == "cuda":
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if tc.quantization == "4bit":
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise TrainError(
                "train.quantization: 4bit needs the bitsandbytes package (pip install bitsandbytes)"
            ) from None
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"],
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if tc.quantization != "4bit":
        model.to(device)
    return model


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


def record_run(store: Any, run: dict[str, Any]) -> None:
    """Insert (or replace) the run's row in the `training_runs` table."""
    d = run["dataset"]
    store.con.execute("DELETE FROM training_runs WHERE run_id = ?", [run["run_id"]])
    store.con.execute(
        "INSERT INTO training_runs (run_id, adapter_dir, dataset_path, dataset_version, manifest_sha256, "
        "train_trace_ids_sha256, base_model_id, base_model_hash, config_hash, device, steps, trained_tokens, "
        "tokens_per_s, wall_seconds, train_loss, eval_loss, eval_token_accuracy, started_at, finished_at, run, "
        "flow_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run["run_id"],
            run["adapter_dir"],
            d["path"],
            d["version"],
            d["manifest_sha256"],
            d.get("train_trace_ids_sha256"),
            run["base_model"]["id"],
            run["base_model"]["hash"],
            run["config_hash"],
            run["device"]["type"],
            run["steps"],
            run["trained_tokens"],
            run["tokens_per_s"],
            run["wall_seconds"],
            run["train_loss"],
            run["eval_loss"],
            run["eval_token_accuracy"],
            run["started_at"],
            run["finished_at"],
            json.dumps(run, default=str),
            run.get("flow_run_id"),
        ],
    )


__all__ = ["EncodeStats", "TrainError", "TrainResult", "read_jsonl", "train"]
