"""The ingest stage: stream trace files into the `traces` table, everything unusable into
`quarantine`, with counts that reconcile (records = accepted + already_present + quarantined)."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import xxhash

from curation.ingest import formats
from curation.ingest.adapters.openai import detect_batch_input
from curation.ingest.normalize import RecordError
from curation.ingest.parse import COLUMNS, BatchPart, ChunkResult, Quarantined, parse_batch_pair, parse_chunk
from curation.ingest.readers import TraceFile, sha256_file, walk
from curation.store import Store
from schemas.config import IngestConfig

CHUNK_RECORDS = 1000
PARALLEL_MIN_BYTES = 16 << 20

_ARROW_SCHEMA = pa.schema(
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
        ("metadata", pa.string()),
        ("messages", pa.string()),
        ("tools", pa.string()),
        ("finish_reason", pa.string()),
        ("error", pa.string()),
        ("latency_ms", pa.float64()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("feedback", pa.string()),
        ("n_messages", pa.int32()),
    ]
)


@dataclass
class IngestStats:
    """What one ingest call did. `records` = accepted + already_present + quarantined."""

    files: int = 0
    files_skipped: int = 0
    records: int = 0
    accepted: int = 0
    already_present: int = 0
    quarantined: int = 0
    batch_requests_joined: int = 0
    by_format: Counter[str] = field(default_factory=Counter)
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    paths: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["by_format"] = dict(self.by_format)
        d["quarantine_reasons"] = dict(self.quarantine_reasons)
        d["records_per_s"] = round(self.records / self.seconds, 1) if self.seconds else None
        d["seconds"] = round(self.seconds, 3)
        return d


Progress = Callable[[str, int, int], None]  # (file, bytes done in file, file size)


class _FileWriter:
    """Accumulates one file's results and writes them to DuckDB in batches, one transaction each."""

    def __init__(self, store: Store, file: str, stats: IngestStats, batch_size: int) -> None:
        self.store, self.file, self.stats, self.batch_size = store, file, stats, batch_size
        self.rows: list[tuple[Any, ...]] = []
        self.row_formats: list[str] = []
        self.quarantined: list[Quarantined] = []
        self.counts: Counter[str] = Counter()
        self.formats: set[str] = set()

    def add(self, result: ChunkResult) -> None:
        self.rows += result.rows
        self.row_formats += result.formats
        self.quarantined += result.quarantined
        if len(self.rows) + len(self.quarantined) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows and not self.quarantined:
            return
        con = self.store.con
        con.execute("BEGIN")
        try:
            if self.rows:
                self._insert_rows(con)
            if self.quarantined:
                self._insert_quarantine(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        self.rows, self.row_formats, self.quarantined = [], [], []

    def _insert_rows(self, con: Any) -> None:
        # Within a batch, keep the first row per trace_id; later copies are duplicates or conflicts.
        first: dict[str, int] = {}
        keep: list[int] = []
        for i, row in enumerate(self.rows):
            j = first.setdefault(row[0], i)
            if j == i:
                keep.append(i)
            else:
                self._duplicate(row, self.rows[j][4], i)
        columns = list(zip(*(self.rows[i] for i in keep), strict=True)) if keep else [[] for _ in COLUMNS]
        table = pa.Table.from_arrays(
            [pa.array(c, type=t.type) for c, t in zip(columns, _ARROW_SCHEMA, strict=True)], schema=_ARROW_SCHEMA
        )
        con.register("_ingest_batch", table)
        existing = dict(
            con.execute(
                "SELECT b.trace_id, t.content_hash FROM _ingest_batch b JOIN traces t USING (trace_id)"
            ).fetchall()
        )
        con.execute(
            f"INSERT INTO traces ({', '.join(COLUMNS)}) SELECT * FROM _ingest_batch "
            "WHERE trace_id NOT IN (SELECT trace_id FROM traces)"
        )
        con.unregister("_ingest_batch")
        for i in keep:
            row = self.rows[i]
            if row[0] in existing:
                self._duplicate(row, existing[row[0]], i)
            else:
                self.counts["accepted"] += 1
                self.stats.by_format[self.row_formats[i]] += 1
                self.formats.add(self.row_formats[i])

    def _duplicate(self, row: tuple[Any, ...], stored_hash: str, i: int) -> None:
        if row[4] == stored_hash:
            self.counts["already_present"] += 1
            return
        self.quarantined.append(
            Quarantined(
                row[3],
                "duplicate_id",
                f"trace_id {row[0]} is already stored with different messages; ids must be unique per source",
                row[11][:200],
                self.row_formats[i],
            )
        )

    def _insert_quarantine(self, con: Any) -> None:
        data = [
            (
                self.file,
                q.line,
                q.code,
                q.message,
                q.excerpt,
                q.source_format,
                f"{q.code}:{q.line}:{xxhash.xxh3_64_hexdigest(q.excerpt.encode())}",
            )
            for q in self.quarantined
        ]
        con.executemany(
            "INSERT OR IGNORE INTO quarantine (source_file, source_line, code, message, excerpt, "
            "source_format, record_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            data,
        )
        for q in self.quarantined:
            self.counts["quarantined"] += 1
            self.stats.quarantine_reasons[q.code] += 1


def _chunks(records: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(records, size)):
        yield chunk


def _results(
    tf: TraceFile, file: str, forced: str | None, cfg: IngestConfig, pool: ProcessPoolExecutor | None
) -> Iterator[ChunkResult]:
    """Parse a file's chunks, in worker processes when a pool is given (bounded read-ahead)."""
    chunks = _chunks(tf.records(), CHUNK_RECORDS)
    if pool is None:
        for chunk in chunks:
            yield parse_chunk(chunk, file, forced, cfg.excerpt_chars)
        return
    pending: list[Future[ChunkResult]] = []
    depth = 2 * (pool._max_workers or 1)
    for chunk in chunks:
        pending.append(pool.submit(parse_chunk, chunk, file, forced, cfg.excerpt_chars))
        if len(pending) >= depth:
            yield pending.pop(0).result()
    for fut in pending:
        yield fut.result()


def ingest(
    store: Store,
    paths: list[str | Path],
    fmt: str = "auto",
    config: IngestConfig | None = None,
    progress: Progress | None = None,
) -> IngestStats:
    """Ingest trace files or directories into the store and return reconciled counts."""
    cfg = config or IngestConfig()
    forced = None if fmt == "auto" else fmt
    if forced is not None and forced not in formats.BY_NAME:
        raise ValueError(f"unknown format '{fmt}' (choose from: auto, {', '.join(formats.NAMES)})")
    started = time.perf_counter()
    stats = IngestStats()
    files = walk(paths)
    stats.files = len(files)
    workers = cfg.workers or os.cpu_count() or 1
    pool: ProcessPoolExecutor | None = None
    batch_inputs: dict[str, tuple[BatchPart, str]] = {}
    batch_outputs: list[tuple[BatchPart, str, _FileWriter]] = []
    try:
        for path in _batch_inputs_first(files, cfg):
            sha = sha256_file(path)
            file = str(path)
            stats.paths.append(file)
            if store.con.execute("SELECT 1 FROM ingest_files WHERE sha256 = ?", [sha]).fetchone():
                stats.files_skipped += 1
                if progress:
                    progress(file, path.stat().st_size, path.stat().st_size)
                continue
            if pool is None and workers > 1 and path.stat().st_size >= PARALLEL_MIN_BYTES:
                pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            writer = _FileWriter(store, file, stats, cfg.batch_size)
            with TraceFile(path, cfg.max_record_bytes) as tf:
                use_pool = pool if tf.size >= PARALLEL_MIN_BYTES else None
                for result in _results(tf, file, forced, cfg, use_pool):
                    for part in result.batch:
                        if part.kind == "input":
                            batch_inputs[part.custom_id] = (part, file)
                        else:
                            batch_outputs.append((part, file, writer))
                    writer.add(result)
                    if progress:
                        progress(file, tf.position(), tf.size)
            _join_batches(batch_inputs, [b for b in batch_outputs if b[2] is writer], stats)
            batch_outputs = [b for b in batch_outputs if b[2] is not writer]
            writer.flush()
            _record_file(store, path, sha, writer)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if batch_inputs:
        _quarantine_unmatched_inputs(store, batch_inputs, stats)
    stats.seconds = time.perf_counter() - started
    return stats


def _batch_inputs_first(files: list[Path], cfg: IngestConfig) -> list[Path]:
    """Order files so Batch API input files come before the output files that join onto them."""

    def is_input(p: Path) -> bool:
        try:
            with TraceFile(p, cfg.max_record_bytes) as tf:
                for _, payload in islice(tf.records(), 1):
                    obj = orjson.loads(payload) if isinstance(payload, bytes) else payload
                    return isinstance(obj, dict) and detect_batch_input(obj)
        except orjson.JSONDecodeError:
            return False
        except OSError:
            return False
        return False

    return sorted(files, key=lambda p: not is_input(p))


def _join_batches(
    inputs: dict[str, tuple[BatchPart, str]], outputs: list[tuple[BatchPart, str, _FileWriter]], stats: IngestStats
) -> None:
    for out, file, writer in outputs:
        found = inputs.pop(out.custom_id, None)
        result = ChunkResult()
        if found is None:
            result.quarantined.append(
                Quarantined(
                    out.line,
                    "batch_unmatched",
                    f"custom_id '{out.custom_id}': batch output line has no input line among the files ingested "
                    "together; ingest a batch's input and output files in one call",
                    _short(out.record),
                    "openai_batch",
                )
            )
        else:
            try:
                result.rows.append(parse_batch_pair(found[0], out, file))
                result.formats.append("openai_batch")
                stats.batch_requests_joined += 1
            except RecordError as exc:
                result.quarantined.append(
                    Quarantined(out.line, exc.code, f"openai_batch: {exc.message}", _short(out.record), "openai_batch")
                )
        writer.add(result)


def _quarantine_unmatched_inputs(store: Store, inputs: dict[str, tuple[BatchPart, str]], stats: IngestStats) -> None:
    by_file: dict[str, _FileWriter] = {}
    for custom_id, (part, file) in inputs.items():
        writer = by_file.setdefault(file, _FileWriter(store, file, stats, 10**9))
        writer.quarantined.append(
            Quarantined(
                part.line,
                "batch_unmatched",
                f"custom_id '{custom_id}': batch input line has no output line among the files ingested together",
                _short(part.record),
                "openai_batch",
            )
        )
    for writer in by_file.values():
        writer.flush()
        _tally(stats, writer.counts)
        store.con.execute(
            "UPDATE ingest_files SET quarantined = quarantined + ?, records = records + ? WHERE path = ?",
            [writer.counts["quarantined"], writer.counts["quarantined"], writer.file],
        )


def _short(obj: Any) -> str:
    return orjson.dumps(obj, default=str)[:400].decode("utf-8", "replace")


def _tally(stats: IngestStats, counts: Counter[str]) -> None:
    for key in ("accepted", "already_present", "quarantined"):
        setattr(stats, key, getattr(stats, key) + counts[key])
    stats.records += counts["accepted"] + counts["already_present"] + counts["quarantined"]


def _record_file(store: Store, path: Path, sha: str, writer: _FileWriter) -> None:
    c = writer.counts
    _tally(writer.stats, c)
    store.con.execute(
        "INSERT OR REPLACE INTO ingest_files (path, sha256, size, records, accepted, already_present, quarantined, "
        "formats) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            str(path),
            sha,
            path.stat().st_size,
            c["accepted"] + c["already_present"] + c["quarantined"],
            c["accepted"],
            c["already_present"],
            c["quarantined"],
            sorted(writer.formats),
        ],
    )
