"""Training benchmark: same model (the embedded SmolLM2), same data, same steps, measured in one run.

(a) tracetune's path (`training.sft.train`) with the demo's train settings (data/demo.yaml, or --config);
(a0) with --baseline DIR, the same call from another checkout of tracetune (e.g. the commit before a change,
`git worktree add /tmp/base <commit>`) with that checkout's own demo config: "today's" figure;
(b) trl's SFTTrainer with its documented defaults (`SFTConfig(output_dir=...)` plus only what CPU needs to run
at all); (c) the floor: a plain PyTorch forward+backward+AdamW loop over the same batches with the same LoRA
modules and the same precision as (a). Each runs in its own process so peak RSS is its own. Prints trained
(non-padding) tokens/s, peak RSS, the ratios, the machine's measured fp32/bf16 matmul rate and the MFU.

    .venv/bin/python benchmarks/train.py [--dataset DIR] [--steps 16] [--peer-steps 2] [--baseline DIR]

Without --dataset, a version is built from data/samples/ (the demo's JSON tickets under its short system prompt;
trl's defaults cannot render the curated export's tool-call rows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import resource
import subprocess
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


def run_tracetune(dataset: Path, steps: int, config: Path, base: str | None, q: Any) -> None:
    from schemas.config import load_config
    from training.sft import train

    cfg = load_config(config)
    tc = cfg.train.model_copy(update={"max_steps": steps, "eval_rows": 1, "save_steps": None})
    with tempfile.TemporaryDirectory() as tmp:
        res = train(dataset, Path(tmp) / "a", cfg.model_copy(update={"train": tc}), base=base)
    q.put(_from_run(res.run.model_dump(mode="json")))


def _from_run(r: dict[str, Any]) -> dict[str, Any]:
    rest = r["step_times"][1:]
    return {
        "tokens": r["trained_tokens"],
        "seconds": r["train_seconds"],
        "steady_tokens": sum(n for _, n in rest),
        "steady_seconds": sum(t for t, _ in rest),
        "rss_mb": _rss_mb(),
        "dtype": r["device"].get("dtype", "fp32"),
        "batch": f"{r['train_config']['batch_size']}x{r['train_config'].get('grad_accum', 1)}",
        **_gpu_mem(),
    }


BASELINE_SCRIPT = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from schemas.config import load_config
from training.sft import train
cfg = load_config(Path(sys.argv[1]) / "data" / "demo.yaml")
tc = cfg.train.model_copy(update={"max_steps": int(sys.argv[3]), "eval_rows": 1, "save_steps": None})
with tempfile.TemporaryDirectory() as tmp:
    res = train(Path(sys.argv[2]), Path(tmp) / "a", cfg.model_copy(update={"train": tc}))
run = res.run if isinstance(res.run, dict) else res.run.model_dump(mode="json")
keys = ("trained_tokens", "train_seconds", "step_times", "device", "train_config")
print("RESULT " + json.dumps({k: run[k] for k in keys}))
"""


def run_baseline(root: Path, dataset: Path, steps: int) -> dict[str, Any]:
    """(a0): the same training call from another checkout, in its own process, with its own demo config."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-c", BASELINE_SCRIPT, str(root), str(dataset), str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"baseline run failed:\n{proc.stderr[-3000:]}")
    out = _from_run(json.loads(line[7:]))
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the only child so far
    out["tokens_per_s"] = out["tokens"] / out["seconds"]
    out["steady_tokens_per_s"] = out["steady_tokens"] / max(out["steady_seconds"], 1e-9)
    out["process_s"] = time.perf_counter() - t0
    return out


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


def run_plain_loop(dataset: Path, steps: int, config: Path, base: str | None, q: Any) -> None:
    """The floor: forward (the model's own loss, full head) + backward + AdamW over the same batches, the same
    LoRA modules, batch size, accumulation and precision as (a), no trainer."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from schemas.config import load_config
    from training.device import native_bf16, use_bf16
    from training.model import resolve_base
    from training.trainer import lora_config

    torch.set_num_threads(_cores())
    torch.manual_seed(42)
    tc = load_config(config).train
    accum = tc.grad_accum
    batches, tok = _batches(dataset, steps * accum, tc.batch_size, tc.max_length, base)
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    bf16 = use_bf16(tc.precision, dev, native_bf16(dev))
    dtype = torch.bfloat16 if bf16 else torch.float32
    base_model = AutoModelForCausalLM.from_pretrained(str(resolve_base(base).path), dtype=dtype).to(dev)
    model = get_peft_model(base_model, lora_config(tc))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc.learning_rate)
    tokens, seconds = 0, 0.0
    first: tuple[int, float] = (0, 0.0)
    for k, batch in enumerate(batches):
        n = max(len(r.input_ids) for r in batch)
        ids = torch.tensor([r.input_ids + [tok.pad_token_id] * (n - len(r.input_ids)) for r in batch], device=dev)
        labels = torch.tensor([r.labels + [-100] * (n - len(r.labels)) for r in batch], device=dev)
        mask = torch.tensor([[1] * len(r.input_ids) + [0] * (n - len(r.input_ids)) for r in batch], device=dev)
        t0 = time.perf_counter()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss / accum
        loss.backward()
        if (k + 1) % accum == 0:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        tokens += int(mask.sum())
        first = first if first[0] or (k + 1) < accum else (tokens, seconds)
    steady = {"steady_tokens": tokens - first[0], "steady_seconds": seconds - first[1]}
    batch = f"{tc.batch_size}x{accum}"
    dtype_name = "bf16" if bf16 else "fp32"
    q.put({"tokens": tokens, "seconds": seconds, **steady, "rss_mb": _rss_mb(), "dtype": dtype_name, "batch": batch})


def matmul_rate(dtype_name: str, size: int = 2048, repeat: int = 5) -> float:
    """This machine's measured matmul rate in GFLOP/s (median of `repeat` square matmuls, all cores)."""
    import torch

    torch.set_num_threads(_cores())
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / sorted(times)[len(times) // 2] / 1e9


def flops_per_token(base: str | None) -> float:
    """Training FLOPs per token of a LoRA run with a frozen base, counted as the issue does: forward (2 per
    weight) and the backward's activation gradients (2 per weight) over every linear layer including the
    output head; the LoRA matrices and attention scores are small beside them."""
    import json as _json

    from training.model import resolve_base

    c = _json.loads((resolve_base(base).path / "config.json").read_text())
    h, inter, layers, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    kv = h // c["num_attention_heads"] * c.get("num_key_value_heads", c["num_attention_heads"])
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter
    return 4.0 * (layers * per_layer + h * vocab)


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
    ap.add_argument("--config", type=Path, default=ROOT / "data" / "demo.yaml", help="train settings for (a), (c)")
    ap.add_argument("--steps", type=int, default=16, help="optimizer steps for (a), (a0) and (c)")
    ap.add_argument("--peer-steps", type=int, default=2, help="steps for (b); trl's CPU defaults are slow")
    ap.add_argument("--baseline", type=Path, help="another tracetune checkout to run as (a0), e.g. the last release")
    ap.add_argument("--skip-peer", action="store_true", help="leave out (b), trl's defaults")
    ap.add_argument("--base", help="base model folder/GGUF (default: the embedded SmolLM2)")
    args = ap.parse_args()
    from schemas.config import load_config
    from training.model import resolve_base

    resolve_base(args.base)  # convert the GGUF once, outside the measurements
    batch_size = load_config(args.config).train.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or build_sample_dataset(Path(tmp) / "v0001")
        rows = sum(1 for _ in (dataset / "train.jsonl").open())
        print(f"dataset {dataset} ({rows} train rows); config {args.config}; steps {args.steps}", flush=True)
        results: dict[str, dict[str, Any]] = {}
        if args.baseline:
            results["a0_baseline"] = run_baseline(args.baseline.resolve(), dataset, args.steps)
            print("a0", results["a0_baseline"], flush=True)
        results["a_tracetune"] = measure(run_tracetune, dataset, args.steps, args.config, args.base)
        print("a", results["a_tracetune"], flush=True)
        results["c_plain_loop"] = measure(run_plain_loop, dataset, args.steps, args.config, args.base)
        print("c", results["c_plain_loop"], flush=True)
        if not args.skip_peer:
            results["b_trl_defaults"] = measure(run_trl_defaults, dataset, args.peer_steps, batch_size, args.base)
            print("b", results["b_trl_defaults"], flush=True)
    rates = {d: matmul_rate(d) for d in ("fp32", "bf16")}
    per_token = flops_per_token(args.base)
    print(f"\nmatmul rate (2048x2048, median of 5): fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s")
    print(f"training FLOPs per token (4 x weights of every linear layer incl. the head): {per_token / 1e9:.3f} GFLOP")
    head = f"{'path':<16} {'batch':>6} {'dtype':>5} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'after step 1':>12}"
    print(f"\n{head} {'MFU':>6} {'peak RSS MiB':>12}")
    for name, r in results.items():
        rate = rates.get(r.get("dtype", "fp32"), rates["fp32"])
        r["mfu"] = r["steady_tokens_per_s"] * per_token / (rate * 1e9)
        print(
            f"{name:<16} {r.get('batch', '-'):>6} {r.get('dtype', '-'):>5} {r['tokens']:>7} {r['seconds']:>8.1f} "
            f"{r['tokens_per_s']:>9.1f} {r['steady_tokens_per_s']:>12.1f} {r['mfu']:>6.1%} {r['rss_mb'] or 0:>12.0f}"
        )
    a = results["a_tracetune"]["steady_tokens_per_s"]
    line = f"tokens/s after step 1: (a)/(c) plain loop {a / results['c_plain_loop']['steady_tokens_per_s']:.2f}x"
    if "a0_baseline" in results:
        line += f"; (a)/(a0) baseline {a / results['a0_baseline']['steady_tokens_per_s']:.2f}x (target >= 3)"
    if "b_trl_defaults" in results:
        line += f"; (a)/(b) trl defaults {a / results['b_trl_defaults']['steady_tokens_per_s']:.2f}x"
    print(line)
    print(json.dumps({"matmul_gflops": rates, "flops_per_token": per_token, **results}))


if __name__ == "__main__":
    main()
