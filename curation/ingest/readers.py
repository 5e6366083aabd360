"""Streaming readers: turn a trace file (JSONL, JSON array or object, gzip/zstd, Parquet) into
numbered raw records without ever loading the whole file."""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import ijson
import numpy as np
import orjson
import pyarrow as pa
import zstandard

from curation.ingest.normalize import maybe_json

SUFFIXES = (".jsonl", ".ndjson", ".json", ".gz", ".zst", ".zstd", ".parquet")
BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_PARQUET_MAGIC = b"PAR1"
# Decompressed read size: small enough that a corrupt stream loses little of what precedes the break.
_STREAM_BUFFER = 64 << 10


@dataclass(slots=True)
class Problem:
    """A record (or a whole file) that could not be read: it goes to quarantine with this code."""

    code: str
    message: str
    excerpt: bytes = b""


# A raw record is (number, payload): bytes of one JSONL line, an already-decoded object
# (JSON array item, Parquet row), or a Problem. `number` is the 1-based line, item or row.
RawRecord = tuple[int, "bytes | dict[str, Any] | list[Any] | Problem"]


def walk(paths: list[str | Path]) -> list[Path]:
    """Expand directories (recursively, sorted, hidden files skipped) into trace files."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.name.lower().endswith(SUFFIXES)
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


@dataclass(frozen=True, slots=True)
class Span:
    """A byte range of an uncompressed JSONL file that starts at a line boundary."""

    start: int
    end: int
    first_line: int


def _newlines(block: bytes, start: int, end: int | None = None) -> int:
    """`block.count(b"\\n", start, end)` in half the time (measured: 0.26 s -> 0.12 s on 369 MB)."""
    view = np.frombuffer(block, np.uint8)[start:end]
    return int(np.count_nonzero(view == 10))


def scan(path: Path, span_bytes: int = 8 << 20) -> tuple[str, list[Span]]:
    """One pass over a file: its sha256, and line-aligned byte spans of about `span_bytes` each
    (used to parse an uncompressed JSONL file in parallel without shipping its lines around)."""
    h = hashlib.sha256()
    spans: list[Span] = []
    start, line, pos, lines_in_span = 0, 1, 0, 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            off = 0  # bytes of this block already counted
            while (target := start + span_bytes - pos) < len(block):
                cut = block.find(b"\n", max(off, target))
                if cut < 0:
                    break
                lines_in_span += _newlines(block, off, cut + 1)
                spans.append(Span(start, pos + cut + 1, line))
                line, lines_in_span, start, off = line + lines_in_span, 0, pos + cut + 1, cut + 1
            lines_in_span += _newlines(block, off)
            pos += len(block)
    if pos > start:
        spans.append(Span(start, pos, line))
    return h.hexdigest(), spans


def read_span(path: Path, span: Span, max_record_bytes: int) -> list[RawRecord]:
    """The numbered lines of one span (see `scan`); over-long lines become `too_large` problems."""
    with path.open("rb") as f:
        f.seek(span.start)
        data = f.read(span.end - span.start)
    if span.start == 0 and data.startswith(BOM):
        data = data[len(BOM) :]
    out: list[RawRecord] = []
    for n, line in enumerate(data.split(b"\n"), start=span.first_line):
        if len(line) > max_record_bytes:
            out.append((n, _too_large(len(line), max_record_bytes, line[:200])))
        elif line.strip():
            out.append((n, line))
    return out


def _too_large(size: int, limit: int, excerpt: bytes) -> Problem:
    return Problem("too_large", f"record is {size:,} bytes; the limit is {limit:,} (ingest.max_record_bytes)", excerpt)


class TraceFile:
    """An open trace file: decompresses by magic bytes, sniffs its layout, reports progress in on-disk bytes."""

    def __init__(self, path: Path, max_record_bytes: int) -> None:
        self.path = path
        self.max_record_bytes = max_record_bytes
        self.size = path.stat().st_size
        self._raw = path.open("rb", buffering=1 << 20)
        name = path.name.lower().removesuffix(".gz").removesuffix(".zst").removesuffix(".zstd")
        self.line_delimited = name.endswith((".jsonl", ".ndjson"))
        magic = self._raw.peek(4)[:4]
        self.stream: IO[bytes] = self._raw
        if magic[:2] == _GZIP_MAGIC:
            self.stream = io.BufferedReader(gzip.GzipFile(fileobj=self._raw), _STREAM_BUFFER)
        elif magic == _ZSTD_MAGIC:
            self.stream = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(self._raw), _STREAM_BUFFER)
        self.compressed = self.stream is not self._raw
        self._broken = ""
        self.layout = "parquet" if magic == _PARQUET_MAGIC else self._sniff()

    def _sniff(self) -> str:
        """The file's layout: lines (JSONL), array, document, empty, utf16 or corrupt."""
        try:
            head = self.stream.peek(_STREAM_BUFFER)
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            self._broken = str(exc)
            return "corrupt"
        if head.startswith(BOM):
            self.stream.read(len(BOM))
            head = head[len(BOM) :]
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return "utf16"
        first = head.lstrip()[:1]
        if not first:
            return "empty"
        if self.line_delimited or first not in (b"[", b"{") or _parses_as_line(head):
            return "lines"
        return "array" if first == b"[" else "document"

    def position(self) -> int:
        """Bytes of the file on disk consumed so far (for progress bars)."""
        try:
            return self._raw.tell()
        except ValueError:
            return self.size

    def close(self) -> None:
        self.stream.close()
        self._raw.close()

    def __enter__(self) -> TraceFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def records(self) -> Iterator[RawRecord]:
        """Yield numbered raw records; a corrupt stream ends with one `corrupt_file` problem."""
        if self.layout == "utf16":
            yield 1, Problem("encoding_error", "file is UTF-16 (byte-order mark FF FE); re-save it as UTF-8")
            return
        if self.layout == "empty":
            yield 0, Problem("empty_file", "file has no records")
            return
        if self.layout == "corrupt":
            yield 1, Problem("corrupt_file", f"cannot decompress: {self._broken}")
            return
        readers = {"parquet": self._parquet, "lines": self._lines, "array": self._array, "document": self._document}
        last = 0
        try:
            for n, payload in readers[self.layout]():
                last = n
                yield n, payload
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            yield last + 1, Problem("corrupt_file", f"stream broken after record {last}: {exc}")

    def _lines(self) -> Iterator[RawRecord]:
        limit = self.max_record_bytes
        n = 0
        readline = self.stream.readline
        while True:
            line = readline(limit + 1)
            if not line:
                return
            n += 1
            if len(line) > limit and not line.endswith(b"\n"):
                size, excerpt = len(line), line[:200]
                while line and not line.endswith(b"\n"):
                    line = readline(1 << 20)
                    size += len(line)
                yield n, _too_large(size - line.endswith(b"\n"), limit, excerpt)
                continue
            if line.strip():
                yield n, line.removesuffix(b"\n")  # as `read_span` cuts lines: same excerpts and keys

    def _array(self) -> Iterator[RawRecord]:
        n = 0
        try:
            for n, item in enumerate(ijson.items(self.stream, "item", use_float=True), start=1):
                yield n, item
        except ijson.JSONError as exc:
            yield n + 1, Problem("invalid_json", f"JSON array item {n + 1}: {exc}; the rest of the file is unreadable")
        except UnicodeDecodeError as exc:
            yield n + 1, Problem("encoding_error", f"JSON array item {n + 1}: not valid UTF-8 ({exc.reason})")
        if n == 0:
            yield 0, Problem("empty_file", "JSON array has no records")

    def _document(self) -> Iterator[RawRecord]:
        data = self.stream.read(self.max_record_bytes + 1)
        if len(data) > self.max_record_bytes:
            size = len(data) + sum(len(c) for c in iter(lambda: self.stream.read(1 << 20), b""))
            yield 1, _too_large(size, self.max_record_bytes, data[:200])
            return
        yield 1, data

    def _parquet(self) -> Iterator[RawRecord]:
        import pyarrow.parquet as pq

        n = 0
        try:
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=2048):
                for row in batch.to_pylist():
                    n += 1
                    yield n, {k: maybe_json(v) for k, v in row.items()}
        except (pa.ArrowException, OSError) as exc:  # truncated or not Parquet after all (it starts with PAR1)
            yield n + 1, Problem("corrupt_file", f"Parquet unreadable after row {n}: {exc}")
            return
        if n == 0:
            yield 0, Problem("empty_file", "Parquet file has no rows")


def _parses_as_line(head: bytes) -> bool:
    """True when the first line is a complete JSON value followed by more lines (JSONL), rather
    than the start of one JSON document."""
    end = head.find(b"\n")
    if end < 0 or not head[end:].strip():
        return False
    try:
        orjson.loads(head[:end])
    except orjson.JSONDecodeError:
        return False
    return True
