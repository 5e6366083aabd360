"""The stage contract every curation stage follows (datatrove's pipeline steps are the model).

A stage reads the traces the stages before it kept, in partitions of at most `curate.partition_rows`
traces, and writes its results for one partition before it reads the next, so memory does not grow
with the store. Work done by an earlier run is not redone: a stage only reads the traces it has no
result for (`pending`). Per partition the base calls `prepare` (lookups in the store, flow process
only), `process` (the one entry point over a partition: no store access, so it can run anywhere) and
`write` (one transaction); then `finish` does the stage's cross-trace work in the database, and
`tally` counts the stage's outcome over its whole input: one `StageStats` shape for every stage,
which the CLI table, the flow's artifacts and the report all render (`curation.funnel`)."""

from __future__ import annotations

import ctypes
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from curation.store import Store
from curation.workers import explained, processes, spawn_pool
from schemas.config import Config


class StageError(RuntimeError):
    """A stage broke its contract (an undeclared reason code, counts that do not add up)."""


@dataclass
class StageStats:
    """What one stage did: traces in, kept, dropped by reason code, seconds; `processed` traces were
    worked on in this run (the others reused stored results); `detail` holds stage-specific counts."""

    stage: str
    traces_in: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    processed: int = 0
    partitions: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: {"stage", "in", "kept", "dropped", "seconds", "processed", "partitions", "detail"}."""
        return {
            "stage": self.stage,
            "in": self.traces_in,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "seconds": round(self.seconds, 3),
            "processed": self.processed,
            "partitions": self.partitions,
            "detail": self.detail,
        }


Tally = tuple[int, Counter[str]]  # (traces in, dropped by reason); kept = in - dropped


class Stage:
    """Base of the curation stages. Subclasses set `name` and `reasons` (the drop reason codes the stage
    may give) and override what they need; the default is a stage with no per-trace work."""

    name: ClassVar[str] = ""
    reasons: ClassVar[tuple[str, ...]] = ()
    parallel: ClassVar[bool] = False  # partitions may run in other processes at once (`process` needs no session)

    def __init__(self, cfg: Config, upstream: str = "SELECT trace_id FROM traces") -> None:
        """`upstream`: SQL selecting the ids of the traces that reach this stage (kept by the ones before)."""
        self.cfg = cfg
        self.upstream = upstream

    def drops(self) -> str:
        """SQL (trace_id, reason, detail) of the traces this stage drops, possibly beyond its input
        (the base restricts it); detail is a JSON text or NULL."""
        return "SELECT NULL::VARCHAR AS trace_id, NULL::VARCHAR AS reason, NULL::VARCHAR AS detail WHERE false"

    def output(self) -> str:
        """SQL selecting the ids this stage keeps: its input less its drops (the next stage's input)."""
        return (
            f"SELECT trace_id FROM ({self.upstream}) WHERE trace_id NOT IN "
            f"(SELECT trace_id FROM ({self.drops()}) WHERE trace_id IS NOT NULL)"
        )

    def dropped(self) -> str:
        """SQL (trace_id, reason, detail) of the drops among this stage's input."""
        return f"SELECT d.* FROM ({self.drops()}) d SEMI JOIN ({self.upstream}) i ON d.trace_id = i.trace_id"

    def declared(self) -> tuple[str, ...]:
        """The reason codes this stage may give (the base rejects any other)."""
        return self.reasons

    def pending(self) -> tuple[str, list[Any]] | None:
        """SQL (and parameters) selecting the trace ids this run must work on; None: no per-trace work."""
        return None

    def lacking(self, done: str, params: list[Any]) -> tuple[str, list[Any]]:
        """A `pending` query: the input traces not among the ids the SQL `done` selects."""
        return f"SELECT trace_id FROM ({self.upstream}) WHERE trace_id NOT IN ({done})", params

    def columns(self) -> str:
        """SQL select list over `traces t` (joined with the pending ids) that `process` reads."""
        return "t.trace_id"

    def joins(self) -> str:
        """Extra joins after `traces t` for `columns`."""
        return ""

    def session(self) -> AbstractContextManager[Any]:
        """Resources shared by the partitions of one run (a worker pool); entered once per run."""
        return nullcontext()

    def prepare(self, store: Store, part: pa.Table) -> Any:
        """Lookups for one partition in the store (runs in the process that owns the database)."""
        return None

    def process(self, part: pa.Table, prepared: Any, resources: Any) -> Any:
        """The work on one partition; must not touch the store."""
        return None

    def write(self, store: Store, out: Any) -> None:
        """Store the result of one partition (called inside a transaction)."""

    def finish(self, store: Store) -> dict[str, Any]:
        """Cross-trace work after all partitions (in the database); returns detail counts."""
        return {}

    def tally(self, store: Store) -> Tally:
        """(traces in, dropped by reason) over the stage's whole input."""
        row = store.con.execute(f"SELECT count(*) FROM ({self.upstream})").fetchone()
        reasons = store.con.execute(f"SELECT reason, count(*) FROM ({self.dropped()}) GROUP BY ALL").fetchall()
        return (int(row[0]) if row else 0), Counter({str(r): int(n) for r, n in reasons})


def release_memory() -> None:
    """Hand the heap a finished partition freed back to the system (glibc keeps it otherwise, and the
    process's memory would look like it grows with the number of partitions)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return


def rows(part: pa.Table) -> Iterator[tuple[Any, ...]]:
    """The rows of a partition as tuples, in column order."""
    return zip(*(c.to_pylist() for c in part.columns), strict=True)


def partitions(store: Store, stage: Stage, rows: int) -> tuple[int, Iterator[pa.Table]]:
    """(number of pending traces, their partitions of `rows` in trace-id order with the stage's columns).

    The pending traces' columns are copied once into a temporary table in partition order (DuckDB
    spills it beyond its memory cap), so reading a partition scans that partition only, not the
    whole store: the reads cost O(store) per run, not O(store) per partition."""
    query = stage.pending()
    if query is None:
        return 0, iter(())
    sql, params = query
    con = store.con
    con.execute("DROP TABLE IF EXISTS _pending")
    con.execute(
        f"CREATE TEMP TABLE _pending AS SELECT trace_id, row_number() OVER (ORDER BY trace_id) - 1 AS _k FROM ({sql})",
        params,
    )
    row = con.execute("SELECT count(*) FROM _pending").fetchall()
    total = int(row[0][0]) if row else 0
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _pending_rows AS SELECT p._k, {stage.columns()} FROM _pending p "
        f"JOIN traces t USING (trace_id) {stage.joins()} ORDER BY p._k"
    )
    con.execute("DROP TABLE _pending")

    def read() -> Iterator[pa.Table]:
        try:
            for start in range(0, total, rows):
                yield store.arrow(
                    "SELECT * EXCLUDE (_k) FROM _pending_rows WHERE _k >= ? AND _k < ? ORDER BY _k",
                    [start, start + rows],
                )
        finally:
            con.execute("DROP TABLE IF EXISTS _pending_rows")

    return total, read()


Progress = Callable[[str, int, int], None]  # (stage, traces done, traces pending in this run)


class Runner(Protocol):
    """Where the partition work runs: `map` returns `stage.process` of each (partition, prepared) pair,
    in order (the database writes happen in that order)."""

    def map(self, stage: Stage, work: Iterator[tuple[pa.Table, Any]]) -> Iterator[Any]: ...


class LocalRunner:
    """The partition work in this process, with the stage's session resources (its worker pool)."""

    def map(self, stage: Stage, work: Iterator[tuple[pa.Table, Any]]) -> Iterator[Any]:
        with stage.session() as resources:
            for part, prepared in work:
                yield stage.process(part, prepared, resources)


class ProcessRunner:
    """The partitions of a `parallel` stage over `workers` processes: this one and `workers` - 1
    spawned ones, each taking the next partition in turn, while this process also prepares the next
    partitions and writes the finished ones in order. Other stages, and stages with one partition or
    partitions under `min_rows` traces, run here only: a pool takes seconds to start."""

    def __init__(self, workers: int, min_rows: int = 1000) -> None:
        self.workers, self.min_rows = workers, min_rows

    def map(self, stage: Stage, work: Iterator[tuple[pa.Table, Any]]) -> Iterator[Any]:
        work = iter(work)
        head = list(itertools.islice(work, 2))
        if not stage.parallel or self.workers < 2 or len(head) < 2 or head[0][0].num_rows < self.min_rows:
            yield from LocalRunner().map(stage, itertools.chain(head, work))
            return
        with spawn_pool(self.workers - 1) as pool, explained("curate.workers"):
            pending: deque[Future[Any]] = deque()
            for k, (part, prepared) in enumerate(itertools.chain(head, work)):
                if k % self.workers == self.workers - 1:  # this process's turn, while the workers run theirs
                    done: Future[Any] = Future()
                    done.set_result(stage.process(part, prepared, None))
                    pending.append(done)
                else:
                    pending.append(pool.submit(_process, stage, part, prepared))
                while len(pending) >= self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def _process(stage: Stage, part: pa.Table, prepared: Any) -> Any:
    out = stage.process(part, prepared, None)
    release_memory()  # an idle worker does not keep the partition's heap
    return out


def default_runner(cfg: Config) -> Runner:
    """How partitions run when the caller names no runner: `curate.workers` processes (0: one per core)."""
    return ProcessRunner(processes(cfg.curate.workers))


def run(stage: Stage, store: Store, progress: Progress | None = None, runner: Runner | None = None) -> StageStats:
    """Run one stage over its pending partitions (their `process` through `runner`, in this process by
    default), then its cross-trace step; returns its counts."""
    started = time.perf_counter()
    stats = StageStats(stage.name)
    total, parts = partitions(store, stage, stage.cfg.curate.partition_rows)
    sizes: deque[int] = deque()

    def work() -> Iterator[tuple[pa.Table, Any]]:
        for part in parts:
            sizes.append(part.num_rows)
            yield part, stage.prepare(store, part)

    try:
        for out in (runner or default_runner(stage.cfg)).map(stage, work()):
            with store.transaction():
                stage.write(store, out)
            stats.processed += sizes.popleft()
            del out
            release_memory()
            stats.partitions += 1
            if progress:
                progress(stage.name, stats.processed, total)
    finally:
        close = getattr(parts, "close", None)
        if close:  # on an error too, while the store is open: the reader drops its temp table
            close()
    stats.detail = stage.finish(store)
    stats.traces_in, stats.dropped = stage.tally(store)
    stats.kept = stats.traces_in - sum(stats.dropped.values())
    undeclared = sorted(set(stats.dropped) - set(stage.declared()))
    if undeclared:
        raise StageError(f"stage {stage.name} gave reason code(s) it does not declare: {', '.join(undeclared)}")
    if stats.kept < 0:
        raise StageError(f"stage {stage.name} dropped more traces than it read ({stats.traces_in})")
    stats.seconds = time.perf_counter() - started
    return stats
