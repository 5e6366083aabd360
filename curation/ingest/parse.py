"""Turn raw records into validated trace rows or quarantine entries. Runs in worker processes, so
it takes and returns only plain picklable data."""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import xxhash
from pydantic import TypeAdapter, ValidationError

from curation.ingest import formats
from curation.ingest.adapters.langsmith import RunHalf, merge, parse_run
from curation.ingest.normalize import RecordError, to_json
from curation.ingest.readers import Problem, RawRecord, Span, read_span
from curation.ingest.rows import chat_log_row, fast_row, opt_str, trace_id
from curation.ingest.shapes import tool_roles
from schemas.trace import Feedback, Message, Trace, cut, describe_errors

# The `traces` columns an ingest batch carries (the table adds `ingested_at`). The JSON columns are
# Arrow's JSON type, which DuckDB inserts into its JSON columns as they are (stored text unchanged)
# instead of parsing every value to validate it (measured: ~30% of the insert); every value is
# written by orjson or pydantic, so it is valid JSON.
SCHEMA = pa.schema(
    [
        ("trace_id", pa.string()),
        ("source_format", pa.string()),
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
        ("content_hash", pa.string()),
        ("session_id", pa.string()),
        ("user_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("metadata", pa.json_()),
        ("messages", pa.json_()),
        ("tools", pa.json_()),
        ("finish_reason", pa.string()),
        ("error", pa.string()),
        ("latency_ms", pa.float64()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("feedback", pa.json_()),
        ("n_messages", pa.int32()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
# What an adapter raises on a value of an unexpected type, size or depth: the record is a `schema_error`.
BAD_VALUE = (TypeError, AttributeError, ValueError, KeyError, OverflowError, RecursionError)
_MESSAGES = TypeAdapter(list[Message])
_FEEDBACK = TypeAdapter(list[Feedback])


@dataclass(slots=True)
class Quarantined:
    line: int
    code: str
    message: str
    excerpt: str
    source_format: str | None = None


@dataclass(slots=True)
class BatchPart:
    """A Batch API line, joined with its other half on `custom_id` by the ingest loop."""

    kind: str  # "input" | "output"
    custom_id: str
    line: int
    record: dict[str, Any]
    raw_key: str


@dataclass(slots=True)
class ChunkResult:
    """What a chunk of raw records became: rows for `traces` (as an Arrow table), quarantine
    entries, and Batch API / LangSmith halves waiting for their other half."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    batch: list[BatchPart] = field(default_factory=list)
    halves: list[RunHalf] = field(default_factory=list)
    table: pa.Table | None = None

    def seal(self) -> ChunkResult:
        """Turn the collected rows into one Arrow table (done in the worker, so the parent only inserts)."""
        if not self.rows:  # (not `pa.array([])`: pyarrow's first list conversion imports pandas, 0.2 s)
            self.table = pa.Table.from_arrays([pa.nulls(0, f.type) for f in SCHEMA], schema=SCHEMA)
            return self
        columns = zip(*self.rows, strict=True)
        self.table = pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(columns, SCHEMA, strict=True)], schema=SCHEMA
        )
        self.rows = []
        return self


def _excerpt(payload: Any, n: int) -> str:
    if isinstance(payload, bytes):  # cut at a word boundary: no identifier cut short escapes redaction
        return cut(payload[: n + 1].decode("utf-8", "replace"), n)
    try:
        return cut(to_json(payload, "record")[: n + 1].decode("utf-8", "replace"), n)
    except RecordError as exc:
        return f"<{exc.message}>"


def build_row(rec: dict[str, Any], fmt: str, file: str, line: int, raw_key: str) -> tuple[Any, ...]:
    """Validate one partial trace from an adapter and lay it out as a `traces` row.

    Raises RecordError (`no_messages`, `unknown_role`, `schema_error`) naming the failing field."""
    try:
        return _build_row(rec, fmt, file, line, raw_key)
    except BAD_VALUE as exc:  # e.g. an id nested too deeply to print
        raise RecordError("schema_error", f"{type(exc).__name__}: {exc}") from None


def _build_row(rec: dict[str, Any], fmt: str, file: str, line: int, raw_key: str) -> tuple[Any, ...]:
    if not rec.get("messages"):
        raise RecordError("no_messages", "messages: the record holds no conversation messages")
    if (row := fast_row(rec, fmt, file, line, raw_key)) is not None:
        return row
    source_id = opt_str(rec.get("source_id"))
    meta = {k: v for k, v in (rec.get("metadata") or {}).items() if v is not None}
    fields = {
        "trace_id": trace_id(fmt, source_id, raw_key),
        "source_format": fmt,
        "source_file": file,
        "source_line": line,
        "content_hash": "",
        "session_id": opt_str(rec.get("session_id")),
        "user_id": opt_str(rec.get("user_id")),
        "created_at": rec.get("created_at"),
        "model": opt_str(rec.get("model")),
        "tags": rec.get("tags") or [],
        "metadata": meta,
        "messages": tool_roles(rec["messages"], rec.get("tools")),
        "tools": rec.get("tools"),
        "finish_reason": opt_str(rec.get("finish_reason")),
        "error": opt_str(rec.get("error")),
        "latency_ms": rec.get("latency_ms"),
        "usage": {k: v for k, v in (rec.get("usage") or {}).items() if v is not None},
        "feedback": rec.get("feedback") or [],
    }
    try:
        trace = Trace.model_validate(fields)
    except ValidationError as exc:
        unknown_role = any(e["loc"][-1] == "role" and e["type"] == "literal_error" for e in exc.errors())
        raise RecordError("unknown_role" if unknown_role else "schema_error", describe_errors(exc)) from None
    messages = _MESSAGES.dump_json(trace.messages, exclude_none=True)
    return (
        trace.trace_id,
        fmt,
        file,
        line,
        xxhash.xxh3_128_hexdigest(messages),
        trace.session_id,
        trace.user_id,
        trace.created_at,
        trace.model,
        trace.tags,
        to_json(trace.metadata, "metadata").decode(),
        messages.decode(),
        to_json(trace.tools, "tools").decode() if trace.tools is not None else None,
        trace.finish_reason,
        trace.error,
        trace.latency_ms,
        trace.usage.input_tokens,
        trace.usage.output_tokens,
        _FEEDBACK.dump_json(trace.feedback, exclude_none=True).decode() if trace.feedback else "[]",
        len(trace.messages),
    )


def _decode(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise RecordError("encoding_error", f"not valid UTF-8 at byte {uexc.start}") from None
        raise RecordError("invalid_json", f"malformed JSON at character {exc.pos}: {exc.msg}") from None


def parse_chunk(records: list[RawRecord], file: str, forced: str | None, excerpt_chars: int) -> ChunkResult:
    """Parse, detect, normalize and validate a chunk of raw records from one file."""
    # The records of a chunk hold no reference cycles; the cyclic GC would only rescan the
    # thousands of fresh dicts over and over (measured: ~40% of parse time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_chunk(records, file, forced, excerpt_chars)
    finally:
        if gc_was_enabled:
            gc.enable()


def _parse_chunk(records: list[RawRecord], file: str, forced: str | None, excerpt_chars: int) -> ChunkResult:
    out = ChunkResult()
    for line, payload in records:
        if isinstance(payload, Problem):
            out.quarantined.append(
                Quarantined(line, payload.code, payload.message, _excerpt(payload.excerpt, excerpt_chars))
            )
            continue
        try:
            obj = _decode(payload) if isinstance(payload, bytes) else payload
            key_of = payload.strip() if isinstance(payload, bytes) else to_json(obj, "record", sort_keys=True)
        except RecordError as exc:
            out.quarantined.append(Quarantined(line, exc.code, exc.message, _excerpt(payload, excerpt_chars), forced))
            continue
        raw_key = xxhash.xxh3_128_hexdigest(key_of)
        items = obj if isinstance(obj, list) else [obj]
        if not items:
            message = "an empty JSON array: no record to read"
            out.quarantined.append(
                Quarantined(line, "unknown_format", message, _excerpt(payload, excerpt_chars), forced)
            )
        for i, item in enumerate(items):
            try:
                _one(out, item, line, file, forced, raw_key if len(items) == 1 else f"{raw_key}:{i}", excerpt_chars)
            except RecordError as exc:
                out.quarantined.append(Quarantined(line, exc.code, exc.message, _excerpt(item, excerpt_chars), forced))
    if out.halves:
        halves, out.halves = out.halves, []
        waiting: dict[str, list[RunHalf]] = {}
        for group in pair_halves(halves, waiting):
            add_run_group(out, group, excerpt_chars)
        out.halves = [h for group in waiting.values() for h in group]
    return out.seal()


def pair_halves(halves: list[RunHalf], waiting: dict[str, list[RunHalf]]) -> list[list[RunHalf]]:
    """Add LangSmith run halves to `waiting` (by run id); return the groups that now hold a post and a patch."""
    done = []
    for h in halves:
        group = waiting.setdefault(h.run_id, [])
        group.append(h)
        if any(g.kind != h.kind for g in group):
            done.append(waiting.pop(h.run_id))
    return done


def add_run_group(out: ChunkResult, group: list[RunHalf], excerpt_chars: int) -> None:
    """Merge the post and patch halves of one run into a row (or a quarantine entry), located at the
    half that completed it, as a Batch API pair is located at its output line."""
    last = group[-1]
    posts = [h for h in group if h.kind == "post"]
    run = merge([h.run for h in posts] + [h.run for h in group if h.kind == "patch"])
    first = posts[0]
    at = f"line {first.line}" if first.file == last.file else f"{first.file}:{first.line}"
    where = f"{'post' if first.where == '<record>' else first.where} ({at})"
    try:
        rec = parse_run(where, run)
        try:
            out.rows.append(build_row(rec, "langsmith", last.file, last.line, last.raw_key))
        except RecordError as exc:
            exc.message = f"run {first.run_id}: {exc.message}"
            raise
    except RecordError as exc:
        q = Quarantined(last.line, exc.code, f"langsmith: {exc.message}", _excerpt(run, excerpt_chars), "langsmith")
        out.quarantined.append(q)
    except BAD_VALUE as exc:
        message = f"langsmith: {where}: {type(exc).__name__}: {exc}"
        out.quarantined.append(
            Quarantined(last.line, "schema_error", message, _excerpt(run, excerpt_chars), "langsmith")
        )


class _NoPandas:
    """An import hook that finds no pandas."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas":
            raise ImportError("an ingest worker has no use for pandas")


def warm_up() -> None:
    """Worker initializer (importing this module is most of the start-up work). pyarrow imports
    pandas on its first conversion of a Python list, only to check whether the list is a pandas
    object: 0.2 s and ~40 MB per worker. Workers never see pandas objects, so that check is made
    here with pandas out of reach, and pyarrow remembers that there is none."""
    if "pandas" in sys.modules:
        return
    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        pa.array([""])
    finally:
        sys.meta_path.remove(blocker)


def parse_span(path: str, span: Span, forced: str | None, max_record_bytes: int, excerpt_chars: int) -> ChunkResult:
    """Worker entry point: read one span of an uncompressed JSONL file and parse it."""
    return parse_chunk(read_span(Path(path), span, max_record_bytes), path, forced, excerpt_chars)


def _one(
    out: ChunkResult, obj: Any, line: int, file: str, forced: str | None, raw_key: str, excerpt_chars: int
) -> None:
    if forced:
        fmt = formats.BY_NAME[forced]
        if not isinstance(obj, dict) or not fmt.detect(obj):
            raise RecordError("unknown_format", f"record does not look like {forced} (keys: {_keys(obj)})")
    else:
        found = formats.detect(obj)
        if found is None:
            raise RecordError("unknown_format", f"no known trace format matches this record (keys: {_keys(obj)})")
        fmt = found
    if fmt.name == "openai_batch":
        kind = "input" if "body" in obj else "output"
        out.batch.append(BatchPart(kind, str(obj["custom_id"]), line, obj, raw_key))
        return
    try:
        if fmt.name == "openai_chat" and (row := chat_log_row(obj, file, line, raw_key)) is not None:
            out.rows.append(row)  # the commonest record, in one pass (same row as the general path)
            return
        parsed = fmt.parse(obj)
    except RecordError as exc:
        exc.message = f"{fmt.name}: {exc.message}"
        raise
    except BAD_VALUE as exc:
        raise RecordError("schema_error", f"{fmt.name}: {type(exc).__name__}: {exc}") from None
    for i, rec in enumerate(parsed):
        key = raw_key if len(parsed) == 1 else f"{raw_key}:{i}"
        if isinstance(rec, RunHalf):
            rec.line, rec.raw_key, rec.file = line, key, file
            out.halves.append(rec)
            continue
        try:
            if isinstance(rec, RecordError):
                raise rec
            out.rows.append(build_row(rec, fmt.name, file, line, key))
        except RecordError as exc:
            at = rec.get("where") if isinstance(rec, dict) else None  # which generation of a multi-record record
            message = f"{fmt.name}: {at}: {exc.message}" if at and at != "<record>" else f"{fmt.name}: {exc.message}"
            out.quarantined.append(Quarantined(line, exc.code, message, _excerpt(obj, excerpt_chars), fmt.name))


def _keys(obj: Any) -> str:
    if isinstance(obj, dict):
        return ", ".join(list(obj)[:8]) or "none"
    return f"a JSON {type(obj).__name__}, not an object"


def parse_batch_pair(inp: BatchPart, out: BatchPart, file: str) -> tuple[Any, ...]:
    """A joined Batch API pair to a row; its trace is located at the output line."""
    from curation.ingest.adapters.openai import join_batch

    try:
        rec = join_batch(inp.record, out.record)[0]
    except BAD_VALUE as exc:
        raise RecordError("schema_error", f"{type(exc).__name__}: {exc}") from None
    return build_row(rec, "openai_batch", file, out.line, out.raw_key)
