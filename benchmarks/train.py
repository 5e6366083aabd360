"""Training benchmark: same model (the embedded SmolLM2), same data, same steps, measured in one run.

(a) tracetune's path (`training.sft.train`), (b) trl's SFTTrainer with its documented defaults
(`SFTConfig(output_dir=...)` plus only what CPU needs to run at all), (c) the floor: a plain PyTorch
forward+backward+step loop over the same batches with the same LoRA modules. Each runs in its own process so
peak RSS is its own. Prints trained (non-padding) tokens/s, peak RSS and the ratios.

    .venv/bin/python benchmarks/train.py [--dataset DIR] [--steps 8] [--peer-steps 2] [--batch-size 8]

Without --dataset, a dataset version is built from data/samples/ (JSON-ticket answers, short system prompt).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TICKET_KEYS = ("priority", "category", "sentiment", "order_id", "needs_human", "summary")


def build_sample_dataset(out: Path, holdout_share: float = 0.1) -> Path:
    """A dataset version from data/samples/: single-turn email -> JSON ticket chats, short system prompt,
    split by a hash of the email, the short system prompt of `export.system_prompt_text`. Stands in for the
    curation export when none is given (no dedupe or redaction here: for throughput, not for publishing)."""
    from curation.ingest.run import ingest
    from curation.store import Store
    from schemas.config import load_config
    from schemas.dataset import DatasetManifest, FileEntry, sha256_file

    demo = load_config(ROOT / "data" / "demo.yaml")
    short_prompt = demo.export.system_prompt_text or "Triage the support email into a JSON ticket."
    seen: set[str] = set()
    splits: dict[str, list[tuple[str, dict[str, Any]]]] = {"train": [], "holdout": []}
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.duckdb") as store:
        ingest(store, [str(ROOT / "data" / "samples")])
        rows = store.con.execute("SELECT trace_id, messages FROM traces ORDER BY trace_id").fetchall()
    for trace_id, messages in rows:
        msgs = json.loads(messages)
        users = [m for m in msgs if m["role"] == "user"]
        last = msgs[-1]
        if len(users) != 1 or last["role"] != "assistant" or any(m.get("tool_calls") for m in msgs):
            continue
        try:
            ticket = json.loads(last["content"])
        except (json.JSONDecodeError, TypeError):
            continue
        if not isinstance(ticket, dict) or tuple(ticket) != TICKET_KEYS:
            continue
        email = users[0]["content"]
        if email in seen:
            continue
        seen.add(email)
        row = {
            "messages": [
                {"role": "system", "content": short_prompt},
                {"role": "user", "content": email},
                {"role": "assistant", "content": json.dumps(ticket)},
            ]
        }
        h = int(hashlib.sha256(email.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        splits["holdout" if h < holdout_share else "train"].append((trace_id, row))
    out.mkdir(parents=True, exist_ok=True)
    for name, items in splits.items():
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for _, r in items), encoding="utf-8")
    (out / "trace_ids.json").write_text(json.dumps({k: [t for t, _ in v] for k, v in splits.items()}))
    files = {
        n: FileEntry(sha256=sha256_file(out / n), bytes=(out / n).stat().st_size)
        for n in ("train.jsonl", "holdout.jsonl", "trace_ids.json")
    }
    content = hashlib.sha256((out / "train.jsonl").read_bytes() + (out / "holdout.jsonl").read_bytes()).hexdigest()
    manifest = DatasetManifest(
        version=1, created_at=datetime.now(UTC), content_hash=content, config_hash="samples", files=files
    )
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _gpu_mem() -> dict[str, float]:
    import torch

    return {"gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20} if torch.cuda.is_available() else {}


def _batches(
    dataset: Path, steps: int, batch_size: int, max_length: int, base: str | None
) -> tuple[list[list[Any]], Any]:
    from training.chat import encode_rows
    from training.model import load_tokenizer, resolve_base
    from training.sft import read_jsonl

    tok = load_tokenizer(resolve_base(base).path)
    enc, _ = encode_rows(tok, read_jsonl(dataset / "train.jsonl"), max_length)
    need = steps * batch_size
    enc = (enc * (need // len(enc) + 1))[:need]
    return [enc[i * batch_size : (i + 1) * batch_size] for i in range(steps)], tok


def run_tracetune(dataset: Path, steps: int, batch_size: int, base: str | None, q: Any) -> None:
    from schemas.config import Config
    from schemas.training import TrainConfig
    from training.sft import train

    with tempfile.TemporaryDirectory() as tmp:
        tc = TrainConfig(max_steps=steps, batch_size=batch_size, eval_rows=1, lora_dropout=0.0)
        res = train(dataset, Path(tmp) / "a", Config(train=tc), base=base)
    r = res.run
    rest = r["step_times"][1:]
    steady = {"steady_tokens": sum(n for _, n in rest), "steady_seconds": sum(t for t, _ in rest)}
    q.put({"tokens": r["trained_tokens"], "seconds": r["train_seconds"], **steady, "rss_mb": _rss_mb(), **_gpu_mem()})


def run_trl_defaults(dataset: Path, steps: int, batch_size: int, base: str | None, q: Any) -> None:
    """trl as documented: SFTConfig(output_dir=...) and the conversational rows as they are; only `use_cpu` and
    `max_steps`/batch size (to do the same work) are set; bf16 and gradient checkpointing stay trl's defaults."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from training.model import load_tokenizer, resolve_base

    torch.set_num_threads(_cores())
    ref = resolve_base(base)
    tok = load_tokenizer(ref.path)
    model = AutoModelForCausalLM.from_pretrained(str(ref.path))  # trl's documented dtype for a model id: float32
    ds = load_dataset("json", data_files=str(dataset / "train.jsonl"), split="train")
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(
            output_dir=tmp,
            use_cpu=not torch.cuda.is_available(),
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            report_to="none",
        )
        steps: list[tuple[float, int]] = []

        class T(TrainerCallback):
            def on_step_begin(self, *a: Any, **k: Any) -> None:
                self.t0 = time.perf_counter()

            def on_step_end(self, *a: Any, **k: Any) -> None:
                done = sum(n for _, n in steps)
                steps.append((time.perf_counter() - self.t0, int(trainer._total_train_tokens) - done))

        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=ds,
            processing_class=tok,
            peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
            callbacks=[T()],
        )
        trainer.train()
        q.put(
            {
                "tokens": int(trainer._total_train_tokens),
                "seconds": sum(t for t, _ in steps),
                "steady_tokens": sum(n for _, n in steps[1:]),
                "steady_seconds": sum(t for t, _ in steps[1:]),
                "rss_mb": _rss_mb(),
                "bf16": args.bf16,
                "gradient_checkpointing": args.activation_checkpointing,
                **_gpu_mem(),
            }
        )


def run_plain_loop(dataset: Path, steps: int, batch_size: int, base: str | None, q: Any) -> None:
    """The floor: forward + backward + AdamW step over the same batches, same LoRA modules, no trainer
    (on CUDA with bf16 autocast like (a))."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from schemas.training import TrainConfig
    from training.model import resolve_base
    from training.sft import lora_config

    torch.set_num_threads(_cores())
    torch.manual_seed(42)
    tc = TrainConfig(lora_dropout=0.0)
    batches, tok = _batches(dataset, steps, batch_size, tc.max_length, base)
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    base_model = AutoModelForCausalLM.from_pretrained(str(resolve_base(base).path), dtype=dtype).to(dev)
    model = get_peft_model(base_model, lora_config(tc))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc.learning_rate)
    tokens, seconds = 0, 0.0
    first: tuple[int, float] = (0, 0.0)
    for batch in batches:
        n = max(len(r.input_ids) for r in batch)
        ids = torch.tensor([r.input_ids + [tok.pad_token_id] * (n - len(r.input_ids)) for r in batch], device=dev)
        labels = torch.tensor([r.labels + [-100] * (n - len(r.labels)) for r in batch], device=dev)
        mask = torch.tensor([[1] * len(r.input_ids) + [0] * (n - len(r.input_ids)) for r in batch], device=dev)
        t0 = time.perf_counter()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        tokens += int(mask.sum())
        first = first if first[0] else (tokens, seconds)
    steady = {"steady_tokens": tokens - first[0], "steady_seconds": seconds - first[1]}
    q.put({"tokens": tokens, "seconds": seconds, **steady, "rss_mb": _rss_mb(), **_gpu_mem()})


def _cores() -> int:
    from training.sft import cpu_threads

    return cpu_threads(0)


def measure(fn: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q))
    t0 = time.perf_counter()
    p.start()
    result = q.get()
    p.join()
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    result["steady_tokens_per_s"] = result["steady_tokens"] / max(result["steady_seconds"], 1e-9)
    result["process_s"] = time.perf_counter() - t0
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, help="dataset version folder (default: built from data/samples)")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps for (a) and (c)")
    ap.add_argument("--peer-steps", type=int, default=2, help="steps for (b); trl's CPU defaults are slow")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--base", help="base model folder/GGUF (default: the embedded SmolLM2)")
    args = ap.parse_args()
    from training.model import resolve_base

    resolve_base(args.base)  # convert the GGUF once, outside the measurements
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or build_sample_dataset(Path(tmp) / "v0001")
        rows = sum(1 for _ in (dataset / "train.jsonl").open())
        print(f"dataset {dataset} ({rows} train rows); batch {args.batch_size}; steps {args.steps}", flush=True)
        results = {"a_tracetune": measure(run_tracetune, dataset, args.steps, args.batch_size, args.base)}
        print("a", results["a_tracetune"], flush=True)
        results["c_plain_loop"] = measure(run_plain_loop, dataset, args.steps, args.batch_size, args.base)
        print("c", results["c_plain_loop"], flush=True)
        if not args.skip_peer:
            results["b_trl_defaults"] = measure(run_trl_defaults, dataset, args.peer_steps, args.batch_size, args.base)
            print("b", results["b_trl_defaults"], flush=True)
    print(
        f"\n{'path':<16} {'tokens':>8} {'seconds':>8} {'tokens/s':>9} {'after step 1':>12} {'peak RSS MB':>12} GPU MB"
    )
    for name, r in results.items():
        gpu = f"{r['gpu_peak_mb']:>6.0f}" if "gpu_peak_mb" in r else "-"
        print(
            f"{name:<16} {r['tokens']:>8} {r['seconds']:>8.1f} {r['tokens_per_s']:>9.1f} "
            f"{r['steady_tokens_per_s']:>12.1f} {r['rss_mb']:>12.0f} {gpu}"
        )
    for key in ("tokens_per_s", "steady_tokens_per_s"):
        a = results["a_tracetune"][key]
        line = f"{key}: (a)/(c) floor {a / results['c_plain_loop'][key]:.2f}x (target >= 0.8)"
        if "b_trl_defaults" in results:
            line += f"; (a)/(b) trl defaults {a / results['b_trl_defaults'][key]:.2f}x (target >= 10)"
        print(line)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
