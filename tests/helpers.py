"""Builders for small trace files used across tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "data" / "demo.yaml"  # the sample app's settings
SYSTEM = "You are the triage assistant of an outdoor gear shop. Answer with one JSON ticket."


def chat_log(
    rid: str,
    messages: list[dict[str, Any]],
    answer: str | None,
    *,
    session: str | None = None,
    created: int = 1790000000,
    feedback: int | None = None,
    tool_calls: list | None = None,
) -> dict:
    """One OpenAI request/response log line."""
    msg: dict[str, Any] = {"role": "assistant", "content": answer}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    rec: dict[str, Any] = {
        "request": {"model": "gpt-4.1", "messages": messages},
        "response": {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": "gpt-4.1",
            "choices": [{"index": 0, "finish_reason": "tool_calls" if tool_calls else "stop", "message": msg}],
        },
    }
    if session:
        rec["session_id"] = session
    if feedback is not None:
        rec["feedback"] = [{"name": "thumbs", "value": feedback}]
    return rec


def convo(user: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_dataset(
    folder: Path,
    train: list[dict],
    holdout: list[dict],
    raw_train: str | None = None,
    holdout_ids: list[str] | None = None,
    schema: Any = None,
) -> Path:
    """A dataset version folder as the curation export writes it (manifest with correct checksums);
    trace ids t<i> (train) and h<i> (holdout) unless given."""
    import hashlib
    from datetime import UTC, datetime

    from schemas.dataset import DatasetManifest, FileEntry, sha256_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text(
        raw_train if raw_train is not None else "".join(json.dumps(r) + "\n" for r in train), encoding="utf-8"
    )
    (folder / "holdout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in holdout), encoding="utf-8")
    ids = {
        "train": [f"t{i}" for i in range(len(train))],
        "holdout": holdout_ids or [f"h{i}" for i in range(len(holdout))],
    }
    (folder / "trace_ids.json").write_text(json.dumps(ids), encoding="utf-8")
    files = {
        n: FileEntry(sha256=sha256_file(folder / n), bytes=(folder / n).stat().st_size)
        for n in ("train.jsonl", "holdout.jsonl", "trace_ids.json")
    }
    manifest = DatasetManifest(
        version=1,
        created_at=datetime.now(UTC),
        content_hash=hashlib.sha256(b"x").hexdigest(),
        config_hash="test",
        expect_json_schema=schema,
        files=files,
    )
    (folder / "manifest.json").write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return folder


VOCAB = [
    "river",
    "candle",
    "market",
    "ladder",
    "velvet",
    "orbit",
    "pepper",
    "harbor",
    "meadow",
    "violin",
    "canyon",
    "lantern",
    "pocket",
    "saddle",
    "thunder",
    "marble",
    "willow",
    "anchor",
    "basket",
    "cobalt",
    "desert",
    "ember",
    "falcon",
    "glacier",
    "hammer",
    "island",
    "jungle",
    "kettle",
    "lemon",
    "magnet",
    "needle",
    "oyster",
    "parrot",
    "quartz",
    "ribbon",
    "summit",
    "tunnel",
    "umbrella",
    "valley",
    "walnut",
    "yarrow",
    "zephyr",
    "bridge",
    "castle",
    "dragon",
]


def distinct_logs(n: int, prefix: str = "r", seed: int = 0) -> list[dict]:
    """`n` OpenAI chat logs whose questions and answers share no long word run (no near-duplicates),
    lowercase words only (nothing a PII recognizer takes for a name)."""
    import random

    rng = random.Random(f"{prefix}-{seed}")
    out = []
    for i in range(n):
        words = rng.sample(VOCAB, 14)
        question = f"please sort these words for me: {' '.join(words)}"
        answer = "sorted: " + " ".join(sorted(words))
        out.append(chat_log(f"{prefix}{i}", convo(question), answer, created=1790000000 + i))
    return out


def write_training_run(adapter_dir: Path, name: str, version: int, run_id: str) -> None:
    """A complete `training_run.json` for an adapter folder the registry tests make without training."""
    from schemas.runs import TrainingRun

    counts = {"rows": 1, "kept": 1, "truncated": 0, "dropped_truncated": 0, "no_trainable": 0}
    TrainingRun(
        run_id=run_id,
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:01:00Z",
        adapter_dir=str(adapter_dir),
        dataset={"path": f"/data/{name}/v{version:04d}", "name": name, "version": version, "manifest_sha256": "0" * 64},
        base_model={"id": "tiny", "hash": "h", "path": "/models/tiny"},
        config_hash="c",
        train_config={},
        rows={"train": counts, "eval": counts},
        device={"type": "cpu", "name": "x86_64", "threads": 1, "dtype": "fp32"},
        steps=1,
        train_loss=1.0,
        curve=[],
        trained_tokens=1,
        train_seconds=1.0,
        step_times=[[1.0, 1]],
        wall_seconds=1.0,
        versions={},
    ).write(adapter_dir / "training_run.json")


def run_stages(store: Any, cfg: Any, *names: str) -> dict[str, dict]:
    """Run the named curation stages in order (those before them must have run); their stats by name."""
    from curation import curate

    return {name: curate.run_stage(store, cfg, name) for name in names}
