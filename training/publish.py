"""Crash-safe outputs of a training run: a checkpoint counts only once it is complete, and an adapter folder shows
a finished adapter only after all of its files are in place.

`training_run.json` is the commit marker of an adapter folder (evaluation and the registry refuse a folder
without it). The final files are written into a hidden staging folder inside the adapter folder; publishing
removes the old marker, moves the files in (each `os.replace` is atomic) and writes the new marker last,
atomically. A run killed at any point leaves the previous finished adapter, or adapter files without a marker,
never a marker beside half-written files or beside files of another run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

STAGING = ".publishing"
TRAINER_STATE = "trainer_state.json"
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def complete_checkpoint(folder: Path) -> bool:
    """Whether a `checkpoint-N` folder was written to the end: the trainer writes `trainer_state.json` last,
    after the weights, optimizer, scheduler and RNG states."""
    try:
        json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any((folder / name).is_file() for name in WEIGHTS)


def staging_dir(out: Path) -> Path:
    """An empty staging folder inside `out` for the final files (what a killed run left there is removed)."""
    stage = out / STAGING
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def write_atomic(path: Path, data: str) -> None:
    """Write `path` through a temporary file beside it and `os.replace`: readers see the old file or the new."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def publish(stage: Path, out: Path, marker: str, record: str) -> None:
    """Move the staged files into `out` and write the marker file `marker` (contents `record`) last."""
    (out / marker).unlink(missing_ok=True)
    for item in sorted(stage.iterdir()):
        target = out / item.name
        if item.is_dir() and target.is_dir():
            shutil.rmtree(target)  # an earlier run's merged/ (os.replace cannot replace a folder with files)
        os.replace(item, target)
    write_atomic(out / marker, record)
    stage.rmdir()
