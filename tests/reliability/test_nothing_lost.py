"""Promise 1 of the reliability suite, "nothing lost" (issue 15): for any input, every record ends in
`traces` or in `quarantine` (with its file, line and a reason), no exception escapes ingest, the
serial and the parallel readers agree, and after curation every trace reaches the dataset or has
exactly one first drop reason, with a funnel that reconciles.

The inputs come from `tests/reliability/corpus.py`: the valid records of every format mutated at the
JSON, byte and file level, plus random JSON."""

from __future__ import annotations

import gzip
import json
import random
import tempfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import curation.ingest.run as run
from curation import curate, funnel
from curation.ingest.parse import parse_chunk
from curation.ingest.readers import BOM, TraceFile
from curation.ingest.run import IngestStats, ingest
from curation.store import Store
from schemas.config import Config, IngestConfig
from tests.conftest import rows
from tests.reliability.corpus import KEEPERS, UNITS, corpus, dumps, nested, renamed
from tests.test_bad_input import reconciled

CODES = {
    "invalid_json", "encoding_error", "too_large", "empty_file", "corrupt_file", "unknown_format",
    "schema_error", "unknown_role", "no_messages", "not_a_generation", "duplicate_id", "batch_unmatched",
    "langsmith_unmatched_patch", "responses_no_output",
}  # fmt: skip
SMALL = IngestConfig(workers=1, batch_size=7, max_record_bytes=32 << 10, excerpt_chars=120)
# a seeded Random, not st.randoms(): hypothesis' float draws fail once a training run earlier in the same
# process has switched the CPU to flush subnormals to zero (training.sft: torch.set_flush_denormal)
SEEDED = st.integers(0, 2**32 - 1).map(random.Random)
# the fast part draws the same examples on every run (CI stays reproducible); the slow part explores
FAST = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None, derandomize=True
)
SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
# ---- the oracle --------------------------------------------------------------------------------


def write(folder: Path, files: list[tuple[str, bytes]]) -> list[Path]:
    for name, data in files:
        (folder / name).write_bytes(data)
    return [folder / name for name, _ in files]


def numbered(path: Path) -> dict[int, bytes] | None:
    """The records of a JSONL file by line number (blank lines are not records); None for other files
    (and for compressed or Parquet ones that are not, which the reader numbers as one corrupt file)."""
    if not path.name.endswith((".jsonl", ".jsonl.gz")):
        return None
    data = path.read_bytes()
    if data.startswith((b"\x28\xb5\x2f\xfd", b"PAR1")):  # the reader goes by magic bytes, not by name
        return None
    if data.startswith(b"\x1f\x8b"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return None  # not gzip after all: the reader's one corrupt_file row
    data = data.removeprefix(BOM)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return {1: data}  # read as one UTF-16 file
    return {n: line for n, line in enumerate(data.split(b"\n"), start=1) if line.strip()}


def halves(record: Any) -> set[tuple[str, str]]:
    """The join keys of a record that holds halves of a trace (Batch API input/output, LangSmith post/patch)."""
    got = parse_chunk([(1, record)], "x", None, 0)
    return {(p.kind, p.custom_id) for p in got.batch} | {("run", h.run_id) for h in got.halves}


def explained(store: Store, line: Any, stats: IngestStats, partners: Counter[tuple[str, str]]) -> bool:
    """Whether a record without a row of its own is a copy of a stored trace (counted as already present)
    or a half whose trace is located at its other half's line (one Batch output per input)."""
    got = parse_chunk([(1, line)], "x", None, 100)
    if got.quarantined:
        return False
    if got.batch or got.halves:
        for kind, key in halves(line):
            partner = ({"input": "output", "output": "input"}.get(kind, kind), key)
            if partners[partner] < 1 + (partner == (kind, key)):  # another half of the run than this one
                return False
            partners[partner] -= kind == "input"
        return True
    stored = dict(rows(store, "SELECT trace_id, content_hash FROM traces"))
    table = got.table.to_pylist() if got.table is not None else []
    return bool(stats.already_present) and all(stored.get(r["trace_id"]) == r["content_hash"] for r in table)


def check_ingest(store: Store, stats: IngestStats, paths: list[Path]) -> None:
    """Every record of `paths` is a trace or a quarantine row naming its file and line; the counts reconcile."""
    assert reconciled(stats)
    assert stats.accepted == store.count("traces") and stats.quarantined == store.count("quarantine")
    assert rows(store, "SELECT coalesce(sum(records), 0) FROM ingest_files")[0][0] == stats.records
    names = {str(p) for p in paths}
    for file, line, code, message in rows(store, "SELECT source_file, source_line, code, message FROM quarantine"):
        assert file in names and code in CODES and message, (file, line, code, message)
        assert line > 0 or code == "empty_file", (file, line, code, message)
    seen: dict[str, set[int]] = defaultdict(set)
    for file, line in rows(store, "SELECT source_file, source_line FROM traces UNION ALL "
                           "SELECT source_file, source_line FROM quarantine"):  # fmt: skip
        seen[file].add(line)
    read: dict[Path, dict[int, Any]] = {}  # the records as the reader numbers them (JSON array items)
    for p in paths:
        with TraceFile(p, SMALL.max_record_bytes) as tf:
            read[p] = dict(tf.records())
    partners = Counter(k for got in read.values() for x in got.values() for k in halves(x))
    for path in paths:
        if any(p != path and p.read_bytes() == path.read_bytes() for p in paths) and not seen[str(path)]:
            continue  # a copy of a file ingested in this call: skipped as unchanged
        lines = numbered(path)
        if lines is None:
            lines = read[path]
        elif not lines:
            assert seen[str(path)] == {0}
            continue
        assert seen[str(path)] <= set(lines), f"{path.name}: rows at lines that hold no record"
        for n in sorted(set(lines) - seen[str(path)]):
            assert explained(store, lines[n], stats, partners), f"{path.name}:{n} lost: {lines[n][:200]!r}"


def ingest_corpus(folder: Path, files: list[tuple[str, bytes]], cfg: IngestConfig = SMALL, db: str = "t") -> Store:
    """Write the files, ingest them into a new store `db`, check them; the open store."""
    paths = write(folder, files)
    store = Store(folder / f"{db}.duckdb")
    check_ingest(store, ingest(store, paths, config=cfg), paths)
    return store


# ---- ingest properties -------------------------------------------------------------------------


@FAST
@given(SEEDED, st.integers(1, 12))
def test_every_mutated_record_is_a_trace_or_a_quarantine_row(rng: random.Random, n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        ingest_corpus(Path(d), corpus(rng, n)).close()


KEYS = st.sampled_from(["messages", "role", "content", "k"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_subnormal=False)
    | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS | st.text(max_size=5), kids, max_size=4),
    max_leaves=20,
)  # fmt: skip


@FAST
@given(st.lists(JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=40), max_size=12))
@example([b"PAR1"])  # found by the suite: Parquet's magic bytes and no footer stopped ingest
@example([b"\x1f\x8b", b"null"])  # gzip's magic bytes, not gzip: one corrupt file
def test_random_lines_are_traces_or_quarantine_rows(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as d:
        ingest_corpus(Path(d), [("r.jsonl", b"".join(x.replace(b"\n", b" ") + b"\n" for x in lines))]).close()


def _table(store: Store, name: str) -> list[tuple]:
    return rows(store, f"SELECT * EXCLUDE (ingested_at) FROM {name} ORDER BY ALL")


def serial_and_parallel(folder: Path, files: list[tuple[str, bytes]]) -> None:
    """Ingest the same files through the serial reader and the parallel one (line-aligned spans, the
    worker pool as threads): the same counts, traces and quarantine rows, excerpts and keys included."""
    with ingest_corpus(folder, files, db="serial") as serial:
        expected = (_table(serial, "traces"), _table(serial, "quarantine"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run, "PARALLEL_MIN_BYTES", 0)
        mp.setattr(run, "SPAN_BYTES", 1024)
        mp.setattr(run, "spawn_pool", lambda n, initializer: ThreadPoolExecutor(n, initializer=initializer))
        with ingest_corpus(folder, files, SMALL.model_copy(update={"workers": 2}), db="parallel") as parallel:
            assert (_table(parallel, "traces"), _table(parallel, "quarantine")) == expected


@settings(FAST, max_examples=8)
@given(SEEDED, st.integers(1, 12))
def test_serial_and_parallel_readers_agree(rng: random.Random, n: int) -> None:
    files = [(name, data) for name, data in corpus(rng, n) if name.endswith(".jsonl")]
    with tempfile.TemporaryDirectory() as d:
        serial_and_parallel(Path(d), files or [("x.jsonl", b"{\n")])


# ---- regressions of the defects these properties found ------------------------------------------


def test_a_token_count_beyond_int64_quarantines_the_record(store, tmp_path) -> None:
    rec = renamed(UNITS["openai_chat"][0][0], "-big")
    rec["response"]["usage"]["prompt_tokens"] = 2**63
    paths = write(tmp_path, [("t.jsonl", dumps(rec) + b"\n" + dumps(KEEPERS[0][0]) + b"\n")])
    stats = ingest(store, paths)
    check_ingest(store, stats, paths)
    assert stats.accepted == 1 and stats.quarantine_reasons == {"schema_error": 1}
    assert "input_tokens" in rows(store, "SELECT message FROM quarantine")[0][0]


def test_serial_and_parallel_excerpts_of_invalid_json_agree(tmp_path) -> None:
    long = b'{"pad": "' + b"x" * 40_000 + b'"}'  # the too_large message counts the same bytes
    serial_and_parallel(
        tmp_path, [("t.jsonl", b'{"request": \n' + dumps(KEEPERS[0][0]) + b"\n{oops\r\n" + long + b"\n")]
    )


def _log(**changes: Any) -> dict[str, Any]:
    rec = renamed(KEEPERS[0][0], f"-{len(changes)}-{sorted(changes)}")
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = rec
        for k in parents:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[last] = value
    return rec


BATCH_IN, BATCH_OUT = (dumps(r) for r in UNITS["openai_batch"][0])
_choices = json.loads(BATCH_OUT)
_choices["response"]["body"]["choices"][0]["message"] = 1.5  # not an object: a TypeError in the join
ODD = {  # what each defect the properties found was fed, and the codes it must now end in
    "deep metadata": ([dumps(_log(metadata={"k": nested(300)}))], {"schema_error"}),
    "deep unknown record": ([dumps({"k": nested(300)})], {"unknown_format"}),
    "deep id": ([dumps(_log(session_id=nested(1000)))], {"schema_error"}),
    "deep array item": ([b"[" + dumps({"k": nested(300)}) + b"]"], {"schema_error"}),  # a .json file
    "empty array line": ([b"[]"], {"unknown_format"}),
    "same bad items": ([b'[{"k": 1}, {"k": 1}]'], {"unknown_format"}),
    "out-of-range timestamp": ([dumps(_log(**{"response.created": -1e300}))], {"schema_error"}),
    "batch message not an object": ([BATCH_IN, dumps(_choices)], {"schema_error"}),
    "two batch inputs, one custom_id": ([BATCH_IN, BATCH_IN.replace(b"4o-mini", b"x"), BATCH_OUT], {"duplicate_id"}),
}  # fmt: skip


@pytest.mark.parametrize("case", ODD)
def test_odd_records_are_quarantined_not_fatal(store, tmp_path, case: str) -> None:
    lines, codes = ODD[case]
    paths = write(tmp_path, [("t.json" if "array item" in case else "t.jsonl", b"".join(x + b"\n" for x in lines))])
    stats = ingest(store, paths, config=SMALL)
    check_ingest(store, stats, paths)
    assert set(stats.quarantine_reasons) == codes and stats.quarantined == len(rows(store, "SELECT * FROM quarantine"))


# ---- curation ----------------------------------------------------------------------------------

CURATE = Config.model_validate({"redact": {"workers": 1}, "split": {"min_holdout": 0}})


def check_curated(store: Store, stats: IngestStats, summary: dict[str, Any], out: Path) -> None:
    """Each trace is in the dataset or has exactly one first drop reason; the funnel reconciles."""
    traces = {r[0] for r in rows(store, "SELECT trace_id FROM traces")}
    decided = rows(store, "SELECT trace_id, count(*), any_value(verdict), any_value(stage), any_value(reason) "
                   "FROM decisions GROUP BY trace_id")  # fmt: skip
    assert {d[0] for d in decided} == traces and all(d[1] == 1 for d in decided)
    assert all(d[4] for d in decided if d[2] == "drop") and {d[2] for d in decided} <= {"keep", "drop"}
    ids = json.loads((out / "latest" / "trace_ids.json").read_text())
    assert sorted(ids["train"] + ids["holdout"]) == sorted(d[0] for d in decided if d[2] == "keep")
    for side in ("train", "holdout"):
        assert (out / "latest" / f"{side}.jsonl").read_bytes().count(b"\n") == len(ids[side])
    dropped: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for _, _, verdict, stage, reason in decided:
        if verdict == "drop":
            dropped[stage][reason] += 1
    for name, s in summary["stages"].items():
        assert s["dropped"] == dict(dropped.get(name, {})), name
    rows_ = funnel.rows(summary["stages"], stats.records, len(traces))
    assert funnel.reconciles(rows_) and rows_[0]["in"] == stats.accepted + stats.already_present + stats.quarantined
    report = json.loads((out / "latest" / "report.json").read_text())
    assert report["reconciled"] is True
    assert report["funnel"] == [{k: r[k] for k in ("stage", "in", "out")} for r in rows_]


def curate_corpus(folder: Path, files: list[tuple[str, bytes]]) -> None:
    paths = write(folder, files)
    with Store(folder / "t.duckdb") as store:
        stats = ingest(store, paths, config=SMALL)
        check_ingest(store, stats, paths)
        if store.count("traces"):
            check_curated(store, stats, curate.run(store, CURATE, folder / "dataset"), folder / "dataset")


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    """One store of 40 mutated units (half of them keepers), ingested and curated."""
    folder = tmp_path_factory.mktemp("curated")
    curate_corpus(folder, corpus(random.Random(15), 40, keepers=True))
    return folder


def test_every_trace_reaches_the_dataset_or_has_one_first_drop_reason(curated) -> None:
    assert (curated / "dataset" / "latest" / "report.json").exists()


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None, derandomize=True)
@given(SEEDED, st.integers(1, 20))
def test_curating_a_generated_store_loses_no_trace(rng: random.Random, n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        curate_corpus(Path(d), corpus(rng, n, keepers=True))


# ---- the longer variant --------------------------------------------------------------------------


@pytest.mark.slow
@SLOW
@given(SEEDED, st.integers(1, 60))
def test_slow_every_mutated_record_is_a_trace_or_a_quarantine_row(rng: random.Random, n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        ingest_corpus(Path(d), corpus(rng, n)).close()
