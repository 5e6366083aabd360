"""The ingest stage: stream trace files into the `traces` table, everything unusable into
`quarantine`, with counts that reconcile (records = accepted + already_present + quarantined).

Parsing runs in worker processes for big files: an uncompressed JSONL file is cut into
line-aligned byte spans that workers read themselves; other files are read here and shipped to
workers in chunks. Workers return Arrow tables; this process is the only DuckDB writer."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from curation.ingest import formats
from curation.ingest.joins import (
    RunJoiner,
    batch_inputs_first,
    duplicate_batch_input,
    join_batches,
    unmatched_batch_inputs,
)
from curation.ingest.parse import (
    COLUMNS,
    BatchPart,
    ChunkResult,
    Quarantined,
    parse_chunk,
    parse_span,
    warm_up,
)
from curation.ingest.readers import Span, TraceFile, scan, walk
from curation.ingest.rows import hash_source_ids
from curation.stats import Counts
from curation.store import Store
from curation.workers import explained, processes, spawn_pool
from schemas.config import IngestConfig

CHUNK_RECORDS = 2000
SPAN_BYTES = 4 << 20
PARALLEL_MIN_BYTES = 16 << 20
READ_AHEAD = 8  # parse jobs in flight per worker, so workers keep busy while this process writes

Progress = Callable[[str, int, int], None]  # (file, bytes done in file, file size)


@dataclass
class IngestStats(Counts):
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
        return {**super().as_dict(), "records_per_s": round(self.records / self.seconds, 1) if self.seconds else None}

    def count(self, counts: Counter[str]) -> None:
        for key in ("accepted", "already_present", "quarantined"):
            setattr(self, key, getattr(self, key) + counts[key])
        self.records += counts["accepted"] + counts["already_present"] + counts["quarantined"]


class _FileWriter:
    """Collects one file's results and writes them to DuckDB in batches, all in one transaction
    that `finish` commits with the file's `ingest_files` row (measured: half the write time of a
    commit per batch, as DuckDB writes big transactions' row groups straight to the database file
    instead of through the WAL; a failed file leaves nothing behind)."""

    def __init__(self, store: Store, file: str, stats: IngestStats, batch_size: int, hash_ids: bool) -> None:
        self.store, self.file, self.stats, self.batch_size = store, file, stats, batch_size
        self.hash_ids = hash_ids
        self.tables: list[pa.Table] = []
        self.pending_rows = 0
        self.quarantined: list[Quarantined] = []
        self.counts: Counter[str] = Counter()
        self.formats: set[str] = set()
        self.open = False

    def add(self, result: ChunkResult) -> None:
        if result.table is not None and result.table.num_rows:
            self.tables.append(result.table)
            self.pending_rows += result.table.num_rows
        self.quarantined += result.quarantined
        if self.pending_rows + len(self.quarantined) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.tables and not self.quarantined:
            return
        con = self.store.con
        self._begin()
        try:
            if self.tables:
                self._insert_rows(con, pa.concat_tables(self.tables))
            if self.quarantined:
                self._insert_quarantine(con)
        except BaseException:
            self.abort()
            raise
        self.tables, self.pending_rows, self.quarantined = [], 0, []

    def _begin(self) -> None:
        if not self.open:
            self.store.con.execute("BEGIN")
            self.open = True

    def commit(self) -> None:
        self.flush()
        if self.open:
            self.open = False
            self.store.con.execute("COMMIT")

    def abort(self) -> None:
        if self.open:
            self.open = False
            self.store.con.execute("ROLLBACK")

    def _insert_rows(self, con: Any, table: pa.Table) -> None:
        # Through a relation rather than `con.register`: a registered table stays referenced (its
        # Arrow buffers alive) until the transaction ends, which would hold the whole file in memory.
        if self.hash_ids:
            table = hash_source_ids(table)
        batch = con.from_arrow(table)
        stored = dict(
            batch.query(
                "_ingest_batch",
                "SELECT b.trace_id, t.content_hash FROM (SELECT DISTINCT trace_id FROM _ingest_batch) b "
                "JOIN traces t USING (trace_id)",
            ).fetchall()
        )
        if not stored and pc.count_distinct(table.column("trace_id")).as_py() == table.num_rows:
            # the common case: every row is new, no Python loop over the rows
            batch.query("_ingest_batch", f"INSERT INTO traces ({', '.join(COLUMNS)}) SELECT * FROM _ingest_batch")
            self.counts["accepted"] += table.num_rows
            for fmt in pc.value_counts(table.column("source_format")).to_pylist():
                self.stats.by_format[fmt["values"]] += fmt["counts"]
                self.formats.add(fmt["values"])
            return
        keep = self._sort_out(table, stored)
        con.from_arrow(table.filter(pa.array(keep))).query(
            "_ingest_new", f"INSERT INTO traces ({', '.join(COLUMNS)}) SELECT * FROM _ingest_new"
        )

    def _sort_out(self, table: pa.Table, stored: dict[str, str]) -> list[bool]:
        """Rows to insert; the others are counted as already present or quarantined as `duplicate_id`."""
        ids = table.column("trace_id").to_pylist()
        hashes = table.column("content_hash").to_pylist()
        fmts = table.column("source_format").to_pylist()
        first: dict[str, int] = {}
        for i, tid in enumerate(ids):
            first.setdefault(tid, i)  # within a batch the first row per trace_id wins
        keep = [first[tid] == i and tid not in stored for i, tid in enumerate(ids)]
        for i, tid in enumerate(ids):
            if keep[i]:
                self.counts["accepted"] += 1
                self.stats.by_format[fmts[i]] += 1
                self.formats.add(fmts[i])
            elif hashes[i] == stored.get(tid, hashes[first[tid]]):
                self.counts["already_present"] += 1
            else:
                row = table.slice(i, 1).to_pylist()[0]
                self.quarantined.append(
                    Quarantined(
                        row["source_line"],
                        "duplicate_id",
                        f"trace_id {tid} is already stored with different messages; ids must be unique per source",
                        row["messages"][:200],
                        fmts[i],
                    )
                )
        return keep

    def _insert_quarantine(self, con: Any) -> None:
        data, seen = [], Counter[str]()
        for q in self.quarantined:
            key = f"{q.code}:{q.line}:{xxhash.xxh3_64_hexdigest(q.excerpt.encode())}"
            seen[key] += 1  # several records of one line (the items of an array line) get a key each
            key += f":{seen[key]}" if seen[key] > 1 else ""
            data.append((self.file, q.line, q.code, q.message, q.excerpt, q.source_format, key))
        con.executemany(
            "INSERT OR IGNORE INTO quarantine (source_file, source_line, code, message, excerpt, source_format, "
            "record_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            data,
        )
        for q in self.quarantined:
            self.counts["quarantined"] += 1
            self.stats.quarantine_reasons[q.code] += 1

    def finish(self, path: Path, sha: str) -> None:
        """Flush and record the file in `ingest_files` so that an unchanged re-ingest is a no-op."""
        self.flush()
        self._begin()
        c = self.counts
        self.store.con.execute(
            "INSERT OR REPLACE INTO ingest_files (path, sha256, size, records, accepted, already_present, "
            "quarantined, formats) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                str(path),
                sha,
                path.stat().st_size,
                c["accepted"] + c["already_present"] + c["quarantined"],
                c["accepted"],
                c["already_present"],
                c["quarantined"],
                sorted(self.formats),
            ],
        )
        self.commit()
        self.stats.count(c)


class _Parser:
    """Runs parse work in this process or, for big files, in a pool of worker processes."""

    def __init__(self, cfg: IngestConfig, forced: str | None) -> None:
        self.cfg, self.forced = cfg, forced
        self.workers = processes(cfg.workers)
        self.pool: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor | None:
        if self.workers < 2:
            return None
        if self.pool is None:
            self.pool = spawn_pool(self.workers, initializer=warm_up)
            with explained("ingest.workers"):
                for _ in range(self.workers):  # the pool starts its processes on demand: start them all now
                    self.pool.submit(warm_up)
        return self.pool

    def start(self) -> None:
        """Start the workers now, so that their start-up overlaps the scan of the file that needs them."""
        self._pool()

    def results(self, tf: TraceFile, spans: list[Span]) -> Iterator[tuple[ChunkResult, int]]:
        """Parse results in file order, each with the bytes of the file consumed so far."""
        file, cfg = str(tf.path), self.cfg
        pool = self._pool() if tf.size >= PARALLEL_MIN_BYTES else None
        if pool is None:
            for chunk in _chunks(tf.records(), CHUNK_RECORDS):
                yield parse_chunk(chunk, file, self.forced, cfg.excerpt_chars), tf.position()
            return
        jobs: Iterator[tuple[Callable[..., ChunkResult], tuple[Any, ...], int | None]]
        if tf.layout == "lines" and not tf.compressed and max(s.end - s.start for s in spans) <= 4 * SPAN_BYTES:
            args = (self.forced, cfg.max_record_bytes, cfg.excerpt_chars)
            jobs = ((parse_span, (file, s, *args), s.end) for s in spans)
        else:
            chunks = _chunks(tf.records(), CHUNK_RECORDS)
            jobs = ((parse_chunk, (c, file, self.forced, cfg.excerpt_chars), None) for c in chunks)
        pending: list[tuple[Future[ChunkResult], int | None]] = []
        with explained("ingest.workers"):
            for fn, fn_args, done in jobs:
                pending.append((pool.submit(fn, *fn_args), done))
                if len(pending) >= READ_AHEAD * self.workers:  # bounded read-ahead keeps memory flat
                    fut, done_at = pending.pop(0)
                    yield fut.result(), done_at or tf.position()
            for fut, done_at in pending:
                yield fut.result(), done_at or tf.position()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _chunks(records: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(records, size)):
        yield chunk


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
    parser = _Parser(cfg, forced)
    batch_inputs: dict[str, tuple[BatchPart, str]] = {}
    runs = RunJoiner(cfg.excerpt_chars)
    saved = store.con.execute("SELECT current_setting('threads'), current_setting('memory_limit')").fetchone()
    store.con.execute("SET threads = 1")  # the parser workers need the cores more than the writer
    store.con.execute(f"SET memory_limit = '{cfg.memory_limit}'")  # keeps RSS flat with file size
    try:
        for path in batch_inputs_first(files, cfg):
            file = str(path)
            stats.paths.append(file)
            size = path.stat().st_size
            if (
                size >= PARALLEL_MIN_BYTES
                and not store.con.execute(
                    "SELECT 1 FROM ingest_files WHERE path = ? AND size = ?", [file, size]
                ).fetchone()
            ):
                parser.start()  # a new (or resized) big file: not one the scan will find unchanged
            sha, spans = scan(path, SPAN_BYTES)
            if store.con.execute("SELECT 1 FROM ingest_files WHERE sha256 = ?", [sha]).fetchone():
                stats.files_skipped += 1
                if progress:
                    progress(file, path.stat().st_size, path.stat().st_size)
                continue
            writer = _FileWriter(store, file, stats, cfg.batch_size, cfg.hash_source_ids)
            try:
                _ingest_file(parser, path, cfg, spans, writer, batch_inputs, runs, stats, progress)
                writer.finish(path, sha)
            finally:
                writer.abort()
    finally:
        parser.close()
        if saved:
            store.con.execute(f"SET threads = {int(saved[0])}")
            store.con.execute(f"SET memory_limit = '{saved[1]}'")
    _write_late(store, unmatched_batch_inputs(batch_inputs), stats, cfg.hash_source_ids)
    _write_late(store, runs.leftovers(), stats, cfg.hash_source_ids)
    stats.seconds = time.perf_counter() - started
    return stats


def _ingest_file(
    parser: _Parser,
    path: Path,
    cfg: IngestConfig,
    spans: list[Span],
    writer: _FileWriter,
    batch_inputs: dict[str, tuple[BatchPart, str]],
    runs: RunJoiner,
    stats: IngestStats,
    progress: Progress | None,
) -> None:
    file = str(path)
    outputs: list[BatchPart] = []
    with TraceFile(path, cfg.max_record_bytes) as tf:
        for result, done in parser.results(tf, spans):
            for part in result.batch:
                if part.kind == "output":
                    outputs.append(part)
                elif part.custom_id in batch_inputs:  # the first input line with a custom_id is the one joined
                    writer.add(duplicate_batch_input(part, *batch_inputs[part.custom_id]))
                else:
                    batch_inputs[part.custom_id] = (part, file)
            writer.add(result)
            if result.halves:
                writer.add(runs.add(result.halves))
            if progress:
                progress(file, done, tf.size)
    writer.add(join_batches(batch_inputs, outputs, file, stats))


def _write_late(store: Store, results: dict[str, ChunkResult], stats: IngestStats, hash_ids: bool) -> None:
    """Write what was decided after a file was finished (halves that never found their other half) to
    that file, and add it to the file's counts in `ingest_files`."""
    for file, result in results.items():
        writer = _FileWriter(store, file, stats, 10**9, hash_ids)
        writer.add(result)
        try:
            writer.flush()
            c = writer.counts
            n = c["accepted"] + c["already_present"] + c["quarantined"]
            store.con.execute(
                "UPDATE ingest_files SET accepted = accepted + ?, already_present = already_present + ?, "
                "quarantined = quarantined + ?, records = records + ? WHERE path = ?",
                [c["accepted"], c["already_present"], c["quarantined"], n, file],
            )
            writer.commit()
        finally:
            writer.abort()
        stats.count(writer.counts)
