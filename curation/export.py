"""Export: curated traces to OpenAI fine-tuning rows, validated, written as a versioned dataset.

Rows are checked the way OpenAI's chat fine-tuning data-prep guide checks them (keys, roles,
content, an assistant message, token counts) before anything is written; a failing row is
dropped with its reason. A new version folder appears only when the rows changed, and it appears
whole: files are written under a temporary name and the folder is renamed into place."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.config import ExportConfig
from schemas.dataset import MANIFEST, DatasetManifest, FileEntry, sha256_file

ALLOWED_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "weight", "function_call"}
ALLOWED_ROLES = {"system", "user", "assistant", "tool", "function"}
ROW_PROBLEMS = (  # what `validate_row` can report
    "data_type",
    "tool_calls_in_prompt_completion",
    "missing_prompt_or_completion",
    "missing_content",
    "missing_messages_list",
    "message_missing_key",
    "message_unrecognized_key",
    "unrecognized_role",
    "invalid_weight",
    "example_missing_assistant_message",
    "no_trainable_assistant_message",
    "too_many_tokens",
)


def openai_message(m: dict[str, Any]) -> dict[str, Any]:
    """A canonical message as an OpenAI chat fine-tuning message."""
    out: dict[str, Any] = {"role": m["role"]}
    content = m.get("content") or ""
    calls = m.get("tool_calls") or []
    if content or not calls:
        out["content"] = content
    if m.get("name"):
        out["name"] = m["name"]
    if calls:
        out["tool_calls"] = [
            {
                "id": c.get("id") or f"call_{k}",
                "type": "function",
                "function": {"name": c["name"], "arguments": c.get("arguments") or "{}"},
            }
            for k, c in enumerate(calls)
        ]
    if m.get("tool_call_id"):
        out["tool_call_id"] = m["tool_call_id"]
    if m["role"] == "assistant" and m.get("weight") is not None:
        out["weight"] = m["weight"]
    return out


def apply_system_prompt(messages: list[dict[str, Any]], cfg: ExportConfig) -> list[dict[str, Any]]:
    """Keep, drop, or replace the system prompt (replace inserts the short prompt where there was none)."""
    if cfg.system_prompt == "keep":
        return messages
    rest = [m for m in messages if m["role"] != "system"]
    if cfg.system_prompt == "drop":
        return rest
    return [{"role": "system", "content": cfg.system_prompt_text}, *rest]


def build_row(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, cfg: ExportConfig) -> dict[str, Any]:
    """One output row in the configured format."""
    msgs = [openai_message(m) for m in apply_system_prompt(messages, cfg)]
    if cfg.format == "prompt_completion":
        if any("tool_calls" in m or m["role"] == "tool" for m in msgs):
            return {"messages": msgs, "_unsupported": "tool_calls_in_prompt_completion"}
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=-1)
        if last < 0:
            return {"messages": msgs}
        prompt = "".join(f"{m['role']}: {m.get('content', '')}\n" for m in msgs[:last]) + "assistant:"
        return {"prompt": prompt, "completion": " " + msgs[last].get("content", "")}
    row: dict[str, Any] = {"messages": msgs}
    if tools:
        row["tools"] = [t if "type" in t else {"type": "function", "function": t} for t in tools]
    return row


def validate_row(row: Any, n_tokens: int, cfg: ExportConfig) -> str | None:
    """The first problem OpenAI's format checks would report for a row, else None."""
    if not isinstance(row, dict):
        return "data_type"
    if "_unsupported" in row:
        return str(row["_unsupported"])
    if cfg.format == "prompt_completion":
        if not isinstance(row.get("prompt"), str) or not isinstance(row.get("completion"), str):
            return "missing_prompt_or_completion"
        if not row["completion"].strip():
            return "missing_content"
    else:
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            return "missing_messages_list"
        for m in messages:
            if not isinstance(m, dict) or "role" not in m or ("content" not in m and "tool_calls" not in m):
                return "message_missing_key"
            if set(m) - ALLOWED_KEYS:
                return "message_unrecognized_key"
            if m["role"] not in ALLOWED_ROLES:
                return "unrecognized_role"
            content = m.get("content")
            if not m.get("tool_calls") and (not isinstance(content, str) or not content.strip()):
                return "missing_content"
            if "weight" in m and (m["role"] != "assistant" or m["weight"] not in (0, 1)):
                return "invalid_weight"
        assistants = [m for m in messages if m["role"] == "assistant"]
        if not assistants:
            return "example_missing_assistant_message"
        if all(m.get("weight") == 0 for m in assistants):
            return "no_trainable_assistant_message"
    if n_tokens > cfg.max_row_tokens:
        return "too_many_tokens"
    return None


def row_parts(row: dict[str, Any]) -> list[str]:
    """The texts of a row whose tokens, joined by newlines, count against `max_row_tokens`."""
    if "prompt" in row:
        return [f"{row['prompt']}{row['completion']}"]
    parts = []
    for m in row.get("messages", []):
        parts.append(m.get("content") or "")
        parts += [c["function"]["arguments"] for c in m.get("tool_calls") or []]
    return parts


def content_hash(fmt: str, train: bytes, holdout: bytes) -> str:
    """sha256 over the format and both files' bytes: a version is new only when this changes."""
    h = hashlib.sha256(fmt.encode())
    for part in (train, b"\0", holdout):
        h.update(part)
    return h.hexdigest()


def latest_manifest(root: Path) -> DatasetManifest | None:
    """The manifest `root/latest` points at, if any."""
    path = root / "latest" / MANIFEST
    return DatasetManifest.model_validate_json(path.read_bytes()) if path.is_file() else None


def next_version(root: Path) -> int:
    """One above the highest version folder in `root`."""
    numbers = [int(p.name[1:]) for p in root.glob("v[0-9]*") if p.is_dir() and p.name[1:].isdigit()]
    return max(numbers, default=0) + 1


class OutputError(OSError):
    """The dataset folder cannot be created or written; the message names it."""


def check_writable(root: Path) -> None:
    """Write (then remove) a probe file in `root`, or in its nearest existing parent when it does not exist
    yet (nothing is left behind); OutputError naming `root` otherwise."""
    where = root
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        if not where.is_dir():
            raise NotADirectoryError(20, "a parent is not a folder")
        probe = where / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{root}: the dataset folder is not writable ({exc.strerror or exc})") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_folder(root: Path) -> Path:
    """An empty temporary folder in `root` where a version is written before `publish` renames it. What
    a killed run left there (its staging folder, its half-switched `latest` link) is removed first."""
    root.mkdir(parents=True, exist_ok=True)
    for left in [*root.glob(".staging-*"), *root.glob(".latest.tmp-*")]:
        pid = left.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            if left.is_dir() and not left.is_symlink():
                shutil.rmtree(left, ignore_errors=True)
            else:
                left.unlink(missing_ok=True)
    tmp = root / f".staging-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def publish(
    root: Path,
    tmp: Path,
    version: int,
    entries: dict[str, FileEntry],
    finish: Callable[[Path, dict[str, FileEntry]], DatasetManifest],
) -> tuple[Path, DatasetManifest]:
    """Turn the staging folder `tmp` into version `version` atomically: `finish` writes what goes beside
    the files (and returns the manifest), the manifest is written, everything is synced, the folder is
    renamed into place and `root/latest` switched to it. The staging folder is removed on any error."""
    final = root / f"v{version:04d}"
    try:
        manifest = finish(tmp, entries)
        for p in sorted(tmp.iterdir()):
            if p.name not in manifest.files and p.name != MANIFEST:
                manifest.files[p.name] = FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size)
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        for p in tmp.iterdir():
            with p.open("rb") as f:
                os.fsync(f.fileno())
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    switch_latest(root, final)
    return final, manifest


def switch_latest(root: Path, final: Path) -> None:
    """Point `root/latest` at the version folder `final`, atomically."""
    link = root / f".latest.tmp-{os.getpid()}"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(final.name)
    os.replace(link, root / "latest")


def write_file(folder: Path, name: str, data: bytes) -> FileEntry:
    """Write one file of a version and describe it (JSONL files with their row count)."""
    (folder / name).write_bytes(data)
    rows = data.count(b"\n") if name.endswith(".jsonl") else None
    return FileEntry(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), rows=rows)


def write_version(
    root: Path,
    version: int,
    files: dict[str, bytes],
    finish: Callable[[Path, dict[str, FileEntry]], DatasetManifest],
) -> tuple[Path, DatasetManifest]:
    """Write a version folder of the given files atomically (see `publish`)."""
    tmp = staging_folder(root)
    try:
        entries = {name: write_file(tmp, name, data) for name, data in files.items()}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(root, tmp, version, entries, finish)
