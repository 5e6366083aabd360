"""Curation over partitions, incrementally: the sample data curated in two steps with tiny partitions
gives the same files as one unpartitioned run from scratch; a run after new traces only works on them;
a trace that breaks a stage is quarantined while its partition completes; a killed run resumes and
converges; memory does not follow the number of partitions."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import tracemalloc

import numpy as np
import pyarrow as pa
import pytest

from curation import curate
from curation.ingest.run import ingest
from curation.stage import LocalRunner, ProcessRunner, Stage
from curation.store import Store
from schemas.config import load_config
from tests.conftest import ROOT, TRACETUNE, rows
from tests.helpers import DEMO_CONFIG, distinct_logs, write_jsonl

FILES = ("train.jsonl", "holdout.jsonl", "trace_ids.json")


def same_files(a, b) -> bool:
    return all((a / "latest" / f).read_bytes() == (b / "latest" / f).read_bytes() for f in FILES)


@pytest.fixture(scope="module")
def in_two_steps(tmp_path_factory):
    """data/samples curated with partitions of 97 traces: two files first, then the other two."""
    tmp = tmp_path_factory.mktemp("steps")
    cfg = load_config(DEMO_CONFIG)
    cfg.curate.partition_rows = 97
    files = sorted((ROOT / "data" / "samples").iterdir())
    with Store(tmp / "s.duckdb") as store:
        ingest(store, files[:2])
        first = curate.run(store, cfg, tmp / "ds")
        ingest(store, files[2:])
        second = curate.run(store, cfg, tmp / "ds")
        third = curate.run(store, cfg, tmp / "ds")
        new_traces = store.count("traces") - first["traces"]
    return {"first": first, "second": second, "third": third, "new": new_traces, "ds": tmp / "ds"}


@pytest.mark.slow  # the samples curated twice over (~2 min); the fast suite has the generated-store variant
def test_two_partitioned_steps_equal_one_run_from_scratch(in_two_steps, curated_samples) -> None:
    _, whole, dataset = curated_samples
    assert whole["stages"]["dedupe"]["partitions"] == 1 and in_two_steps["second"]["stages"]["dedupe"]["partitions"] > 5
    ids = {
        f: json.loads((d / "latest" / "trace_ids.json").read_text())
        for f, d in (("steps", in_two_steps["ds"]), ("whole", dataset))
    }
    moved = set(ids["steps"]["train"]) ^ set(ids["whole"]["train"])
    # the sample files are four formats over the same weeks: a trace of the second step can be older than a
    # group the first step already placed, and a placed trace keeps its side (counted, and nothing else differs)
    assert len(moved) == in_two_steps["second"]["stages"]["split"]["detail"]["sticky_overrides"] <= 2
    assert set(ids["steps"]["train"] + ids["steps"]["holdout"]) == set(ids["whole"]["train"] + ids["whole"]["holdout"])
    steps_rows = sorted(
        (in_two_steps["ds"] / "latest" / "train.jsonl").read_bytes().splitlines()
        + (in_two_steps["ds"] / "latest" / "holdout.jsonl").read_bytes().splitlines()
    )
    whole_rows = sorted(
        (dataset / "latest" / "train.jsonl").read_bytes().splitlines()
        + (dataset / "latest" / "holdout.jsonl").read_bytes().splitlines()
    )
    assert steps_rows == whole_rows
    ours = {k: {x: v[x] for x in ("in", "kept", "dropped")} for k, v in in_two_steps["second"]["stages"].items()}
    assert ours == {k: {x: v[x] for x in ("in", "kept", "dropped")} for k, v in whole["stages"].items()}


@pytest.mark.slow  # the samples curated twice over (~2 min); the fast suite has the generated-store variant
def test_the_second_step_only_works_on_the_new_traces(in_two_steps) -> None:
    second = in_two_steps["second"]["stages"]
    assert second["dedupe"]["processed"] == in_two_steps["new"]
    assert second["redact"]["processed"] < second["redact"]["in"]
    assert second["redact"]["detail"]["reused"] > 0  # texts seen in the first step (the system prompt) are not redone
    for name in ("leak_gate", "filter", "export"):
        assert second[name]["processed"] < second[name]["in"]


@pytest.mark.slow  # the samples curated twice over (~2 min); the fast suite has the generated-store variant
def test_a_run_with_nothing_new_does_no_work_and_writes_no_version(in_two_steps) -> None:
    third = in_two_steps["third"]
    assert all(s["processed"] == 0 for name, s in third["stages"].items() if name != "split")
    assert third["dataset"]["changed"] is False


def _batches(tmp_path):
    """300 traces, then 60 created later: sessions of three, and later thumbs-up copies of earlier traces."""
    first, later = distinct_logs(300, prefix="a"), distinct_logs(54, prefix="b")
    for i, rec in enumerate(first):
        rec["session_id"] = f"s{i // 3}" if i % 2 else None
    for rec in later:
        rec["response"]["created"] += 100_000
    copies = []
    for k, rec in enumerate(first[:6]):
        copy = json.loads(json.dumps(rec))
        copy["response"]["id"], copy["response"]["created"] = f"copy{k}", rec["response"]["created"] + 200_000
        copy["feedback"] = [{"name": "thumbs", "value": 1}]
        copies.append(copy)
    return write_jsonl(tmp_path / "first.jsonl", first), write_jsonl(tmp_path / "later.jsonl", later + copies)


def test_later_traces_curated_incrementally_give_exactly_the_from_scratch_files(tmp_path) -> None:
    first, later = _batches(tmp_path)
    cfg = load_config(None)
    cfg.redact.workers = 1
    cfg.curate.partition_rows = 37
    with Store(tmp_path / "inc.duckdb") as store:
        ingest(store, [first])
        curate.run(store, cfg, tmp_path / "inc")
        ingest(store, [later])
        second = curate.run(store, cfg, tmp_path / "inc")
    cfg.curate.partition_rows = 10_000
    with Store(tmp_path / "all.duckdb") as store:
        ingest(store, [first, later])
        whole = curate.run(store, cfg, tmp_path / "all")
    assert same_files(tmp_path / "inc", tmp_path / "all")
    assert second["stages"]["dedupe"]["dropped"] == {"exact_duplicate": 6} == whole["stages"]["dedupe"]["dropped"]
    assert (
        second["stages"]["dedupe"]["processed"] == 60 and second["stages"]["split"]["detail"]["sticky_overrides"] == 0
    )
    ids = json.loads((tmp_path / "inc" / "latest" / "trace_ids.json").read_text())
    kept = set(ids["train"] + ids["holdout"])
    assert {f"openai_chat:copy{k}" for k in range(6)} <= kept  # the better copies took over their clusters


class _WhereStage(Stage):
    """A parallel stage whose result says which process worked on the partition."""

    name = "where"
    parallel = True

    def process(self, part, prepared, resources):
        return part.num_rows, prepared, os.getpid()


def test_the_process_runner_works_partitions_in_other_processes_and_keeps_their_order() -> None:
    stage = _WhereStage(load_config(None))
    work = [(pa.table({"trace_id": [str(i)] * (i + 1)}), i) for i in range(7)]
    out = list(ProcessRunner(2, min_rows=0).map(stage, iter(work)))
    assert [(rows, k) for rows, k, _ in out] == [(i + 1, i) for i in range(7)]
    here = [pid == os.getpid() for *_, pid in out]
    assert here == [k % 2 == 1 for k in range(7)]  # this process takes every other partition, a worker the rest
    small = list(ProcessRunner(2, min_rows=1000).map(stage, iter(work)))  # not worth starting a pool
    assert {pid for *_, pid in small} == {os.getpid()}


def test_partitions_in_worker_processes_give_the_files_of_a_run_in_one_process(tmp_path) -> None:
    first, later = _batches(tmp_path)
    cfg = load_config(None)
    cfg.redact.workers = 1
    cfg.curate.partition_rows = 50
    summaries = {}
    for name, runner in (("local", LocalRunner()), ("processes", ProcessRunner(2, min_rows=0))):
        with Store(tmp_path / f"{name}.duckdb") as store:
            ingest(store, [first, later])
            stages = {s: curate.run_stage(store, cfg, s, runner=runner) for s in curate.NAMES}
            curate.finish(store, cfg, tmp_path / name, {"traces": store.count("traces"), "stages": stages})
        summaries[name] = {s: (v["in"], v["kept"], v["dropped"], v["partitions"]) for s, v in stages.items()}
    assert same_files(tmp_path / "local", tmp_path / "processes")
    assert summaries["local"] == summaries["processes"] and summaries["local"]["filter"][3] == 8


def test_a_trace_that_breaks_a_stage_is_quarantined_and_its_partition_completes(store, tmp_path) -> None:
    cfg = load_config(None)
    cfg.curate.partition_rows = 4
    cfg.redact.workers = 1
    ingest(store, [write_jsonl(tmp_path / "a.jsonl", distinct_logs(10))])
    curate.run_stage(store, cfg, "dedupe")
    curate.run_stage(store, cfg, "redact")
    store.con.execute(  # a redacted turn whose content is not text: the rules cannot read it
        'UPDATE redacted_messages SET messages = \'[{"role": "user", "content": 7}, '
        '{"role": "assistant", "content": "ok"}]\' WHERE trace_id = \'openai_chat:r3\''
    )
    summary = curate.run(store, cfg, tmp_path / "ds")
    assert summary["train"] + summary["holdout"] == 9
    ((stage, reason),) = rows(store, "SELECT stage, reason FROM decisions WHERE trace_id = 'openai_chat:r3'")
    assert reason == f"{stage}_error" and summary["stages"][stage]["dropped"] == {reason: 1}
    (code, message) = rows(store, "SELECT code, message FROM quarantine WHERE trace_id = 'openai_chat:r3'")[0]
    assert code == reason and "Error" in message


def _curate(db, out, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [TRACETUNE, "curate", "--db", str(db), "--out", str(out), "--partition-rows", "40", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_a_killed_run_resumes_and_converges_to_the_undisturbed_outputs(tmp_path) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", distinct_logs(400))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("redact:\n  workers: 1\n")
    with Store(tmp_path / "a.duckdb") as store:
        ingest(store, [src])
    shutil.copy(tmp_path / "a.duckdb", tmp_path / "b.duckdb")
    started = time.monotonic()
    assert _curate(tmp_path / "a.duckdb", tmp_path / "undisturbed", "--config", str(cfg)).wait(300) == 0
    undisturbed, killed = time.monotonic() - started, 0
    for share in (0.6, 0.4, 0.25, 0.1):  # each run resumes the killed ones' work: kill earlier each time
        proc = _curate(tmp_path / "b.duckdb", tmp_path / "resumed", "--config", str(cfg))
        time.sleep(share * undisturbed)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
    assert killed >= 2, f"{killed} of 4 runs killed ({undisturbed:.1f} s undisturbed)"
    done = _curate(tmp_path / "b.duckdb", tmp_path / "resumed", "--config", str(cfg))
    assert done.wait(300) == 0, done.stderr.read() if done.stderr else ""
    assert same_files(tmp_path / "resumed", tmp_path / "undisturbed")
    with Store(tmp_path / "b.duckdb", read_only=True) as store:
        assert rows(store, "SELECT count(*), count(DISTINCT trace_id) FROM redacted_messages") == [(400, 400)]
        assert rows(store, "SELECT count(*) FROM decisions") == [(400,)]


def _peak_of_stages(tmp_path, n: int) -> int:
    """Python's peak allocation (tracemalloc) while curating a store of `n` traces in partitions of 100."""
    cfg = load_config(None)
    cfg.curate.partition_rows = 100
    cfg.redact.workers = 1
    cfg.redact.entities = ["EMAIL_ADDRESS", "PHONE_NUMBER", "SECRET"]  # pattern recognizers: the model still loads
    with Store(tmp_path / f"m{n}.duckdb") as store:
        ingest(store, [write_jsonl(tmp_path / f"m{n}.jsonl", distinct_logs(n, prefix=f"m{n}-"))])
        tracemalloc.start()
        try:
            curate.run(store, cfg, tmp_path / f"ds{n}")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_memory_does_not_follow_the_number_of_partitions(tmp_path) -> None:
    _peak_of_stages(tmp_path, 50)  # loads the analyzer model once (cached in the process), compiles the kernels
    small, large = _peak_of_stages(tmp_path, 400), _peak_of_stages(tmp_path, 1600)
    # 4x the traces in 4x the partitions: the peak grows by the ids and token counts the split and the export
    # keep (about 150 bytes a trace), not by the traces' messages (all of them held at once: several KB a trace)
    assert large - small < 1200 * 500, (small, large)


def _near_copy(messages: list[dict]) -> list[dict]:
    """A copy of a conversation whose MinHash similarity to it is in [0.72, 0.78]: near for the split
    (0.7), not a duplicate for dedupe (0.8)."""
    from curation import dedupe, minhash
    from schemas.config import DedupeConfig

    cfg = DedupeConfig()
    hasher = minhash.MinHasher(cfg.num_perm)
    words = messages[-1]["content"].split()
    for k in range(1, len(words)):
        copy = [
            *messages[:-1],
            {"role": "assistant", "content": " ".join(words[:-k] + [f"other{i}" for i in range(k)])},
        ]
        texts = [dedupe.shingle_text(m, cfg) for m in (messages, copy)]
        sig = hasher.signatures(minhash.shingle(texts, cfg.shingle_size))
        if 0.72 <= minhash.estimated_jaccard(sig, np.array([[0, 1]]))[0] <= 0.78:
            return copy
    raise AssertionError("no near copy found")


def test_a_new_trace_joining_groups_on_both_sides_is_left_out_with_its_reason(store, tmp_path) -> None:
    from tests.helpers import chat_log

    cfg = load_config(None)
    cfg.redact.workers = 1
    cfg.split.min_holdout = 0
    ingest(store, [write_jsonl(tmp_path / "a.jsonl", distinct_logs(40))])
    curate.run(store, cfg, tmp_path / "ds")
    (train_id, holdout_id) = (
        rows(store, "SELECT min(trace_id) FROM splits WHERE split = ?", side)[0][0] for side in ("train", "holdout")
    )
    store.con.execute("UPDATE traces SET session_id = 'shared' WHERE trace_id = ?", [train_id])
    (held,) = rows(store, "SELECT messages FROM redacted_messages WHERE trace_id = ?", holdout_id)[0]
    copy = _near_copy(json.loads(held))  # near the holdout trace, in the train trace's session
    rec = chat_log("bridge", copy[:-1], copy[-1]["content"], session="shared", created=1790009999)
    ingest(store, [write_jsonl(tmp_path / "b.jsonl", [rec])])
    summary = curate.run(store, cfg, tmp_path / "ds")
    assert summary["stages"]["split"]["dropped"] == {"joins_train_and_holdout": 1}
    assert rows(store, "SELECT stage, reason FROM decisions WHERE trace_id = 'openai_chat:bridge'") == [
        ("split", "joins_train_and_holdout")
    ]
    ids = json.loads((tmp_path / "ds" / "latest" / "trace_ids.json").read_text())
    assert train_id in ids["train"] and holdout_id in ids["holdout"] and "openai_chat:bridge" not in str(ids)


def test_traces_ingested_between_two_stage_tasks_wait_for_the_next_run(tmp_path) -> None:
    """A flow run's stages are separate tasks, and a CLI ingest can get in between two of them: the run
    curates the traces of its snapshot only (no stage sees a trace the stages before it did not), and the
    next run writes exactly the files of a run from scratch over both files."""
    cfg = load_config(None)
    cfg.redact.workers = 1
    cfg.split.min_holdout = 0
    later_logs = distinct_logs(30, prefix="b")
    for rec in later_logs:
        rec["response"]["created"] += 1000  # logged after the first file's traces
    first = write_jsonl(tmp_path / "a.jsonl", distinct_logs(30, prefix="a"))
    later = write_jsonl(tmp_path / "b.jsonl", later_logs)
    with Store(tmp_path / "t.duckdb") as store:
        ingest(store, [first])
        upto = curate.snapshot(store)
        stages = {}
        for name in curate.NAMES:
            stages[name] = curate.run_stage(store, cfg, name, upto=upto)
            if name == "dedupe":
                ingest(store, [later])  # between the dedupe task and the redact task
        done = curate.finish(store, cfg, tmp_path / "ds", {"traces": 30, "stages": stages}, upto=upto)
        assert all(s["in"] <= 30 for s in stages.values()) and done["dataset"]["version"] == 1
        assert rows(store, "SELECT count(*), count(*) FILTER (trace_id LIKE 'openai_chat:a%') FROM decisions") == [
            (30, 30)
        ]
        ids = json.loads((tmp_path / "ds" / "latest" / "trace_ids.json").read_text())
        assert all(t.startswith("openai_chat:a") for t in ids["train"] + ids["holdout"])
        assert curate.run(store, cfg, tmp_path / "ds")["dataset"]["version"] == 2
        assert rows(store, "SELECT count(*), count(DISTINCT trace_id) FROM decisions") == [(60, 60)]
    with Store(tmp_path / "u.duckdb") as store:
        ingest(store, [first])
        ingest(store, [later])
        curate.run(store, cfg, tmp_path / "scratch")
    assert same_files(tmp_path / "ds", tmp_path / "scratch")
