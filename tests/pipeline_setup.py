"""A project folder for pipeline tests: an inbox of distinct traces and a config for the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.helpers import distinct_logs, write_jsonl


def tiny_config(folder: Path, base: Path, **sections: dict[str, Any]) -> Path:
    """A config that curates in seconds and trains/evaluates the tiny model; `sections` override keys."""
    cfg: dict[str, Any] = {
        "redact": {"workers": 1},
        "split": {"min_holdout": 3},
        "train": {
            "base_model": str(base),
            "max_steps": 3,
            "batch_size": 4,
            "learning_rate": 0.02,
            "lora_r": 4,
            "lora_dropout": 0.0,
            "max_length": 256,
            "threads": 1,
            "logging_steps": 1,
            "eval_rows": 4,
        },
        "evaluate": {
            "max_new_tokens": 4,
            "max_examples": 4,
            "min_examples": 1,
            "required_gains": {},
            "regression_tolerance": 100.0,
            "bootstrap_samples": 100,
            "threads": 1,
        },
        "pipeline": {
            "inbox": str(folder / "inbox"),
            "min_train_rows": 5,
            "adapters_dir": str(folder / "adapters"),
        },
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    path = folder / f"tracetune-{abs(hash(repr(sections))) % 10**8}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def drop_traces(folder: Path, name: str, n: int, prefix: str) -> Path:
    """Write `n` distinct traces into folder/inbox/<name>.jsonl."""
    (folder / "inbox").mkdir(parents=True, exist_ok=True)
    return write_jsonl(folder / "inbox" / f"{name}.jsonl", distinct_logs(n, prefix=prefix))
