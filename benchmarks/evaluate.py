"""Evaluation benchmark: generation throughput of the eval path vs one-example-at-a-time `model.generate`.

Same model (the embedded SmolLM2, optionally with an adapter), same real holdout prompts, same greedy settings,
measured in one run: (a) `training.generation.generate` (length-sorted batches, left padding), (b) one
`model.generate` call per prompt. Checks that both give identical answers and prints generated tokens/s and the
ratio (target >= 3x on CPU).

    .venv/bin/python benchmarks/evaluate.py --dataset DIR [--n 24] [--max-new-tokens 96] [--batch-size 8]
        [--adapter DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, default=ROOT / "data" / "dataset", help="dataset version or root")
    ap.add_argument("--n", type=int, default=24, help="holdout prompts")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--adapter", type=Path, help="also apply this LoRA adapter (merged)")
    ap.add_argument("--base", help="base model folder/GGUF (default: the embedded SmolLM2)")
    args = ap.parse_args()

    import torch

    from schemas.dataset import load_manifest
    from training.chat import prompt_text
    from training.generation import generate, generate_one_by_one
    from training.model import load_base
    from training.sft import read_jsonl

    folder, _ = load_manifest(args.dataset, verify=False)
    rows = read_jsonl(folder / "holdout.jsonl")[: args.n]
    model, tok, base_id, _ = load_base(args.base)
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(args.adapter)).merge_and_unload()
    model.eval()
    prompts = [prompt_text(tok, r)[0] for r in rows]
    print(f"{base_id}; {len(prompts)} holdout prompts of {folder}; max_new_tokens {args.max_new_tokens}", flush=True)

    t0 = time.perf_counter()
    batched = generate(model, tok, prompts, args.max_new_tokens, args.batch_size)
    a_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = generate_one_by_one(model, tok, prompts, args.max_new_tokens)
    b_s = time.perf_counter() - t0

    same = [x["text"] == y["text"] for x, y in zip(batched, single, strict=True)]
    tokens = sum(x["new_tokens"] for x in single)
    results = {
        "prompts": len(prompts),
        "generated_tokens": tokens,
        "a_batched": {
            "seconds": round(a_s, 2),
            "tokens_per_s": round(tokens / a_s, 1),
            "seconds_per_example": round(a_s / len(prompts), 3),
            "batch": args.batch_size,
        },
        "b_one_by_one": {
            "seconds": round(b_s, 2),
            "tokens_per_s": round(tokens / b_s, 1),
            "seconds_per_example": round(b_s / len(prompts), 3),
        },
        "ratio": round(b_s / a_s, 2),
        "identical_outputs": sum(same),
        "threads": torch.get_num_threads(),
    }
    n = len(prompts)
    print(f"(a) batched     {a_s:7.1f}s  {tokens / a_s:7.1f} tokens/s  {a_s / n:5.2f} s/example")
    print(f"(b) one by one  {b_s:7.1f}s  {tokens / b_s:7.1f} tokens/s  {b_s / n:5.2f} s/example")
    print(f"(a)/(b): {b_s / a_s:.2f}x (target >= 3); identical greedy outputs: {sum(same)}/{len(same)}")
    print(json.dumps(results))
    if not all(same):
        first = same.index(False)
        print(f"prompt {first}: batched {batched[first]['text'][:200]!r} vs one by one {single[first]['text'][:200]!r}")
        raise SystemExit("batched and one-by-one greedy outputs differ")


if __name__ == "__main__":
    main()
