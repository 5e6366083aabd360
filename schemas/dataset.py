"""The dataset-version contract between curation (export) and training/evaluation.

A dataset root (`tracetune curate --out DIR`) holds one folder per version, `DIR/v0001/`, ...,
and `DIR/latest` (a symlink to the newest). A version folder holds:

- `train.jsonl`, `holdout.jsonl`: one row per conversation in OpenAI's chat fine-tuning format
  `{"messages": [{"role", "content", "tool_calls"?, "tool_call_id"?, "name"?, "weight"?}], "tools"?}`
  (tool calls as `{"id", "type": "function", "function": {"name", "arguments"}}`; `weight` only on
  assistant messages, 0 = not to be learned), or `{"prompt", "completion"}` rows in the legacy format;
- `trace_ids.json`: `{"train": [...], "holdout": [...]}`, the trace id of each row, in row order;
- `manifest.json` (`DatasetManifest` below), `README.md` (dataset card), `report.html`, `report.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST = "manifest.json"
TRACE_IDS = "trace_ids.json"
SPLIT_FILES = ("train.jsonl", "holdout.jsonl")


class FileEntry(BaseModel):
    """One file of a dataset version, with its checksum."""

    model_config = ConfigDict(extra="forbid")

    sha256: str
    bytes: int = Field(ge=0)
    rows: int | None = Field(default=None, ge=0)


class InputFile(BaseModel):
    """A trace file that fed the store this version was curated from."""

    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: str
    rows: int = Field(ge=0)


class Review(BaseModel):
    """A reviewer's decision on a dataset version (`tracetune review`, or the Prefect UI form)."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    reviewer: str | None = None
    note: str | None = None
    excluded: list[str] = Field(default_factory=list, description="trace ids every later version leaves out")
    decided_at: datetime
    approved_from: int | None = Field(
        default=None, description="approval carried from this earlier version (which differs only by its exclusions)"
    )
    flow_run_id: str | None = None


class DatasetManifest(BaseModel):
    """`manifest.json` of a dataset version: what it holds and how it was made."""

    model_config = ConfigDict(extra="forbid")

    name: str = "tracetune"
    version: int = Field(ge=1)
    parent_version: int | None = None
    created_at: datetime
    format: Literal["chat", "prompt_completion"] = "chat"
    content_hash: str = Field(description="sha256 of the train and holdout rows; a new version only when it changes")
    config_hash: str
    system_prompt: Literal["keep", "drop", "replace"] = "keep"
    expect_json_schema: dict[str, Any] | None = None
    counts: dict[str, Any] = Field(default_factory=dict, description="funnel: rows in and out of every stage")
    reasons: dict[str, dict[str, int]] = Field(default_factory=dict, description="stage -> reason code -> count")
    inputs: list[InputFile] = Field(default_factory=list)
    files: dict[str, FileEntry] = Field(default_factory=dict, description="file name -> checksum (outputs)")
    review: Review | None = Field(default=None, description="the reviewer's decision, added after export")


class DatasetError(ValueError):
    """A dataset folder that is missing, incomplete or does not match its manifest."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def resolve_version_dir(path: str | Path) -> Path:
    """A version folder from either a version folder or a dataset root (its `latest`)."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: dataset folder not found")
    if (p / MANIFEST).is_file():
        return p
    if (p / "latest" / MANIFEST).is_file():
        return (p / "latest").resolve()
    raise DatasetError(f"{p}: no {MANIFEST} here or in {p / 'latest'} (is this a `tracetune curate --out` folder?)")


def load_manifest(path: str | Path, verify: bool = True) -> tuple[Path, DatasetManifest]:
    """Read a version's manifest; with `verify`, check every listed file's sha256."""
    folder = resolve_version_dir(path)
    mpath = folder / MANIFEST
    try:
        manifest = DatasetManifest.model_validate_json(mpath.read_bytes())
    except ValueError as exc:
        raise DatasetError(f"{mpath}: not a valid manifest: {exc}") from None
    if verify:
        for name, entry in manifest.files.items():
            f = folder / name
            if not f.is_file():
                raise DatasetError(f"{f}: listed in {MANIFEST} but missing")
            if sha256_file(f) != entry.sha256:
                raise DatasetError(f"{f}: sha256 does not match {MANIFEST} (the file changed after export)")
    return folder, manifest


def lineage(folder: Path, manifest: DatasetManifest) -> dict[str, Any]:
    """What a training or eval run records about the dataset version it read: identity and file hashes."""
    optional = {name: folder / name for name in SPLIT_FILES}
    return {
        "path": str(folder),
        "name": manifest.name,
        "version": manifest.version,
        "content_hash": manifest.content_hash,
        "manifest_sha256": sha256_file(folder / MANIFEST),
        **{f"{n.split('.')[0]}_sha256": sha256_file(p) if p.is_file() else None for n, p in optional.items()},
        "review": manifest.review.model_dump(mode="json") if manifest.review else None,
    }


def version_dir(root: str | Path, version: int) -> Path:
    """The folder of `version` under a dataset root."""
    return Path(root) / f"v{version:04d}"


def trace_ids(folder: Path) -> dict[str, list[str]]:
    """`trace_ids.json` of a version: {"train": [...], "holdout": [...]} in row order."""
    path = folder / TRACE_IDS
    try:
        ids = json.loads(path.read_bytes())
        return {"train": list(ids["train"]), "holdout": list(ids["holdout"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: cannot read the trace ids ({exc})") from None


def write_manifest(folder: Path, manifest: DatasetManifest) -> None:
    """Replace a version's manifest.json atomically (the files it lists are not touched)."""
    tmp = folder / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST)


def event_payload(folder: Path, db: str | None) -> dict[str, Any]:
    """The payload of the `tracetune.dataset.created` event for a version folder: what a consumer
    (the training deployment's trigger) needs to train on it, and nothing it would have to look up."""
    folder, manifest = load_manifest(folder, verify=False)
    ids = trace_ids(folder)
    return {
        "path": str(folder.resolve()),
        "db": str(Path(db).resolve()) if db else None,
        "name": manifest.name,
        "version": manifest.version,
        "train_rows": len(ids["train"]),
        "holdout_rows": len(ids["holdout"]),
        "manifest_sha256": sha256_file(folder / MANIFEST),
        "content_hash": manifest.content_hash,
    }
