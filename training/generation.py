"""Model-side passes of an evaluation: teacher-forced loss and token accuracy under the training masks
(`training.chat`), and greedy generation, batched (length-sorted, left-padded) or one prompt at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from training.chat import encode_row
from training.labelled_head import labelled_head, per_row


def teacher_forced(model: Any, tokenizer: Any, rows: list[dict], max_length: int, batch_size: int) -> list[dict]:
    """Per row: summed cross-entropy, token count and correct argmax predictions over the trainable assistant
    tokens (the training masks), with the output head only at those positions."""
    import torch

    enc = [encode_row(tokenizer, r, max_length, where=f"holdout row {i + 1}") for i, r in enumerate(rows)]
    out: list[dict] = []
    pad = tokenizer.pad_token_id
    for s in range(0, len(enc), batch_size):
        chunk = enc[s : s + batch_size]
        width = max(len(e.input_ids) for e in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for k, e in enumerate(chunk):
            ids[k, : len(e.input_ids)] = torch.tensor(e.input_ids)
            labels[k, : len(e.labels)] = torch.tensor(e.labels)
            mask[k, : len(e.input_ids)] = 1
        with torch.no_grad():
            out.extend(per_row(labelled_head(model, ids, mask, labels), len(chunk)))
    return out


def _stop_ids(tokenizer: Any, model: Any) -> list[int]:
    ids = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    for tok in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"):
        t = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
        if t is not None:
            ids.add(t)
    return sorted(i for i in ids if i is not None)


def _greedy(model: Any, tokenizer: Any, enc: Any, max_new_tokens: int, stops: list[int]) -> tuple[Any, float]:
    """One greedy `model.generate` call on encoded prompts: the new tokens (prompt cut off) and its seconds."""
    import torch

    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=stops,
        )
    return out[:, enc["input_ids"].shape[1] :], time.perf_counter() - t0


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Greedy answers to rendered prompts, in batches of similar length with left padding.

    Returns per prompt (in input order) the decoded answer, new-token count and its share of the batch's wall
    time as latency."""
    order = sorted(range(len(prompts)), key=lambda i: len(tokenizer(prompts[i], add_special_tokens=False).input_ids))
    results: list[dict[str, Any]] = [{} for _ in prompts]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    stops = _stop_ids(tokenizer, model)
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            new, dt = _greedy(model, tokenizer, enc, max_new_tokens, stops)
            for k, i in enumerate(idx):
                results[i] = _decoded(tokenizer, new[k].tolist(), stops, dt / len(idx))
            if progress:
                progress(len(idx))
    finally:
        tokenizer.padding_side = side
    return results


def generate_one_by_one(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> list[dict[str, Any]]:
    """The unbatched peer of `generate`: one `model.generate` call per prompt (for the benchmark and tests)."""
    stops = _stop_ids(tokenizer, model)
    results = []
    for p in prompts:
        enc = tokenizer([p], return_tensors="pt", add_special_tokens=False)
        new, dt = _greedy(model, tokenizer, enc, max_new_tokens, stops)
        results.append(_decoded(tokenizer, new[0].tolist(), stops, dt))
    return results


def _decoded(tokenizer: Any, ids: list[int], stops: list[int], latency: float) -> dict[str, Any]:
    n = len(ids)
    for k, t in enumerate(ids):
        if t in stops:
            n = k
            break
    return {
        "text": tokenizer.decode(ids[:n], skip_special_tokens=True),
        "new_tokens": n,
        "stopped": n < len(ids),
        "latency_s": latency,
    }


__all__ = ["generate", "generate_one_by_one", "teacher_forced"]
