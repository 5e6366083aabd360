"""Records whose halves arrive on different lines or files of one ingest call: OpenAI Batch API
input and output lines (joined on `custom_id`) and LangSmith run post/patch payloads (joined on the
run id). Halves wait in memory only until their other half arrives; what is still waiting when the
call ends is quarantined at its own file and line."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from curation.ingest.adapters.langsmith import RunHalf
from curation.ingest.adapters.openai import detect_batch_input
from curation.ingest.normalize import RecordError, to_json
from curation.ingest.parse import BatchPart, ChunkResult, Quarantined, add_run_group, pair_halves, parse_batch_pair
from curation.ingest.readers import TraceFile
from schemas.config import IngestConfig

if TYPE_CHECKING:
    from curation.ingest.run import IngestStats


def batch_inputs_first(files: list[Path], cfg: IngestConfig) -> list[Path]:
    """Order files so Batch API input files come before the output files that join onto them."""

    def is_input(p: Path) -> bool:
        with TraceFile(p, cfg.max_record_bytes) as tf:
            if tf.layout != "lines":
                return False
            for _, payload in islice(tf.records(), 1):
                try:
                    obj = orjson.loads(payload) if isinstance(payload, bytes) else payload
                except orjson.JSONDecodeError:
                    return False
                return isinstance(obj, dict) and detect_batch_input(obj)
        return False

    return sorted(files, key=lambda p: not is_input(p))


def join_batches(
    inputs: dict[str, tuple[BatchPart, str]], outputs: list[BatchPart], file: str, stats: IngestStats
) -> ChunkResult:
    """Join a file's Batch API output lines with their input lines (same custom_id)."""
    result = ChunkResult()
    for out in outputs:
        found = inputs.pop(out.custom_id, None)
        if found is None:
            message = (
                f"custom_id '{out.custom_id}': batch output line has no input line among the files "
                "ingested together; ingest a batch's input and output files in one call"
            )
            result.quarantined.append(
                Quarantined(out.line, "batch_unmatched", message, short(out.record), "openai_batch")
            )
            continue
        try:
            result.rows.append(parse_batch_pair(found[0], out, file))
            stats.batch_requests_joined += 1
        except RecordError as exc:
            result.quarantined.append(
                Quarantined(out.line, exc.code, f"openai_batch: {exc.message}", short(out.record), "openai_batch")
            )
    return result.seal()


def duplicate_batch_input(part: BatchPart, first: BatchPart, first_file: str) -> ChunkResult:
    """A Batch API input line with the custom_id of an earlier one (which stays the one joined): `duplicate_id`."""
    message = (
        f"custom_id '{part.custom_id}': the batch input line at {first_file}:{first.line} has the same custom_id; "
        "custom_ids must be unique within a batch"
    )
    q = Quarantined(part.line, "duplicate_id", message, short(part.record), "openai_batch")
    return ChunkResult(quarantined=[q]).seal()


def unmatched_batch_inputs(inputs: dict[str, tuple[BatchPart, str]]) -> dict[str, ChunkResult]:
    """Batch API input lines that no output line joined, as quarantine entries by file."""
    out: dict[str, ChunkResult] = {}
    for custom_id, (part, file) in inputs.items():
        message = f"custom_id '{custom_id}': batch input line has no output line among the files ingested together"
        q = Quarantined(part.line, "batch_unmatched", message, short(part.record), "openai_batch")
        out.setdefault(file, ChunkResult()).quarantined.append(q)
    return {file: r.seal() for file, r in out.items()}


class RunJoiner:
    """LangSmith run halves that the parser could not pair inside one chunk, paired by run id across
    the chunks and files of one ingest call."""

    def __init__(self, excerpt_chars: int) -> None:
        self.excerpt_chars = excerpt_chars
        self.waiting: dict[str, list[RunHalf]] = {}

    def add(self, halves: list[RunHalf]) -> ChunkResult:
        """Pair new halves with waiting ones; completed runs become rows of the current file."""
        result = ChunkResult()
        for group in pair_halves(halves, self.waiting):
            add_run_group(result, group, self.excerpt_chars)
        return result.seal()

    def leftovers(self) -> dict[str, ChunkResult]:
        """What never found its other half, by file: a post is parsed alone (its missing patch is named),
        a patch is quarantined as `langsmith_unmatched_patch`."""
        out: dict[str, ChunkResult] = {}
        for run_id, group in self.waiting.items():
            if group[0].kind == "post":
                add_run_group(out.setdefault(group[-1].file, ChunkResult()), group, self.excerpt_chars)
                continue
            for h in group:
                at = f"{h.file}:{h.line}" + (f" {h.where}" if h.where != "<record>" else "")
                message = (
                    f"langsmith: run {run_id}: the patch at {at} has no post (the create payload with inputs and "
                    "run_type) with this run id among the files ingested together; ingest a run's post and patch "
                    "payloads in one call"
                )
                q = Quarantined(h.line, "langsmith_unmatched_patch", message, short(h.run), "langsmith")
                out.setdefault(h.file, ChunkResult()).quarantined.append(q)
        self.waiting = {}
        return {file: r.seal() for file, r in out.items()}


def short(obj: Any) -> str:
    try:
        return to_json(obj, "record")[:400].decode("utf-8", "replace")
    except RecordError as exc:
        return f"<{exc.message}>"
