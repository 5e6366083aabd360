"""Promise 2 (ingest, curate, export): SIGKILL at random points, then run again. After every kill the
database is consistent (no duplicate rows, each ingested file whole or absent) and no half-written
dataset version is visible; the final outputs equal an undisturbed run's, byte for byte. The kill
windows inside dataset publishing (version folder renamed but `latest` not switched or the store not
told) are each reproduced exactly and resumed."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from curation import curate, export, versions
from curation.ingest.run import ingest
from curation.store import Store
from schemas.config import load_config
from schemas.dataset import load_manifest
from tests.conftest import TRACETUNE, rows
from tests.helpers import distinct_logs, write_jsonl

FILES = ("train.jsonl", "holdout.jsonl", "trace_ids.json")
CONFIG = "redact:\n  workers: 1\nsplit:\n  min_holdout: 0\n"


def _inputs(folder: Path, files: int, per_file: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for k in range(files):
        path = write_jsonl(folder / f"f{k}.jsonl", distinct_logs(per_file, prefix=f"f{k}-"))
        with path.open("a") as f:
            f.write('{"truncated": \n')  # one bad line a file: quarantined, never lost
        paths.append(path)
    return paths


def _run(*args: str) -> subprocess.Popen:
    return subprocess.Popen([TRACETUNE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _opened(proc: subprocess.Popen, db: Path) -> bool:
    """Wait until `proc` has the database file open; False when it finished first."""
    fds = Path(f"/proc/{proc.pid}/fd")
    while proc.poll() is None:
        try:
            if any(os.path.realpath(fd) == str(db.resolve()) for fd in fds.iterdir()):
                return True
        except (FileNotFoundError, PermissionError):
            pass
        time.sleep(0.005)
    return False


def _kill_at(proc: subprocess.Popen, db: Path, delay: float) -> bool:
    """SIGKILL `proc` `delay` seconds after it opened the database; False when it had finished by then."""
    if not _opened(proc, db):
        return False
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def _timed(db: Path, *args: str) -> float:
    """Run the CLI to completion; the seconds it worked with the database open."""
    proc = _run(*args)
    assert _opened(proc, db)
    started = time.monotonic()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return time.monotonic() - started


def _ingested(db: Path) -> dict[str, list]:
    """What ingest leaves behind, in a stable order (times and ingest dates left out)."""
    with Store(db, read_only=True) as store:
        return {
            "traces": rows(store, "SELECT trace_id, content_hash, source_file, source_line FROM traces ORDER BY 1"),
            "quarantine": rows(
                store, "SELECT source_file, source_line, code FROM quarantine WHERE stage = 'ingest' ORDER BY ALL"
            ),
            "files": rows(store, "SELECT path, sha256, records, accepted, quarantined FROM ingest_files ORDER BY 1"),
        }


def _assert_ingest_consistent(db: Path) -> None:
    """No duplicate trace; every recorded file has exactly its traces and quarantine rows, and no trace or
    quarantine row belongs to a file that is not recorded (a killed file is all or nothing)."""
    with Store(db, read_only=True) as store:
        assert rows(store, "SELECT count(*) = count(DISTINCT trace_id) FROM traces") == [(True,)]
        assert not rows(
            store,
            "SELECT f.path FROM ingest_files f LEFT JOIN (SELECT source_file, count(*) AS n FROM traces GROUP BY 1) t "
            "ON t.source_file = f.path WHERE coalesce(t.n, 0) <> f.accepted",
        )
        assert not rows(
            store, "SELECT source_file FROM traces WHERE source_file NOT IN (SELECT path FROM ingest_files)"
        )


def _assert_versions_whole(out: Path) -> None:
    """Every version folder verifies against its manifest, and `latest` (if there) is one of them."""
    if not out.exists():
        return
    folders = sorted(d for d in out.iterdir() if d.name.startswith("v") and d.is_dir() and not d.is_symlink())
    for folder in folders:
        load_manifest(folder, verify=True)
    if (out / "latest").exists():
        assert (out / "latest").resolve() in [f.resolve() for f in folders]


@pytest.mark.slow
def test_ingest_killed_at_random_points_converges(tmp_path) -> None:
    paths = _inputs(tmp_path / "in", files=4, per_file=6000)
    args = [*map(str, paths)]
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    undisturbed = _timed(a, "ingest", *args, "--db", str(a))
    rng = random.Random(15)
    killed = 0
    for _ in range(10):  # each run resumes what the killed ones left, so kills come early in the run
        if _kill_at(_run("ingest", *args, "--db", str(b)), b, rng.uniform(0, undisturbed / 3)):
            killed += 1
            _assert_ingest_consistent(b)
    print(f"ingest: {killed} of 10 runs killed, each left a consistent store")
    assert killed >= 6, killed
    _timed(b, "ingest", *args, "--db", str(b))
    assert _ingested(tmp_path / "b.duckdb") == _ingested(tmp_path / "a.duckdb")


def test_ingest_killed_once_converges(tmp_path) -> None:
    paths = _inputs(tmp_path / "in", files=3, per_file=3000)
    args = [*map(str, paths)]
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    undisturbed = _timed(a, "ingest", *args, "--db", str(a))
    for share in (0.5, 0.25, 0.1, 0.02):  # a second run can be quicker (warm caches): kill earlier until one is cut
        for leftover in (b, b.with_name(b.name + ".wal")):
            leftover.unlink(missing_ok=True)
        if _kill_at(_run("ingest", *args, "--db", str(b)), b, share * undisturbed):
            break
    else:
        pytest.fail(f"every ingest run finished before its kill point ({undisturbed:.1f} s undisturbed)")
    _assert_ingest_consistent(b)
    _timed(b, "ingest", *args, "--db", str(b))
    assert _ingested(tmp_path / "b.duckdb") == _ingested(tmp_path / "a.duckdb")


@pytest.mark.slow
def test_curate_killed_at_random_points_converges(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    src = write_jsonl(tmp_path / "a.jsonl", distinct_logs(600))
    with Store(tmp_path / "a.duckdb") as store:
        ingest(store, [src])
    shutil.copy(tmp_path / "a.duckdb", tmp_path / "b.duckdb")
    common = ["--config", str(cfg), "--partition-rows", "50"]
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    killed = 0
    undisturbed = _timed(a, "curate", "--db", str(a), "--out", str(tmp_path / "u"), *common)
    rng = random.Random(15)
    points, left = [], undisturbed
    for _ in range(8):  # each run resumes what the killed ones did: a kill at a random share of what is left
        points.append(rng.uniform(0.1, 0.6) * left)
        proc = _run("curate", "--db", str(b), "--out", str(tmp_path / "r"), *common)
        if _kill_at(proc, b, points[-1]):
            killed, left = killed + 1, left - points[-1]
        _assert_versions_whole(tmp_path / "r")
        with Store(tmp_path / "b.duckdb", read_only=True) as store:
            assert rows(store, "SELECT count(*) = count(DISTINCT trace_id) FROM decisions") == [(True,)]
            assert rows(store, "SELECT count(*) = count(DISTINCT trace_id) FROM splits") == [(True,)]
    print(f"curate: {killed} of {len(points)} runs killed at {[round(p, 1) for p in points]} s of {undisturbed:.1f} s")
    assert killed >= 5, killed
    _timed(b, "curate", "--db", str(b), "--out", str(tmp_path / "r"), *common)
    for name in FILES:
        assert (tmp_path / "r" / "latest" / name).read_bytes() == (tmp_path / "u" / "latest" / name).read_bytes()
    assert [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")] == []  # nothing a kill left
    with Store(tmp_path / "b.duckdb", read_only=True) as store:
        assert rows(store, "SELECT version FROM dataset_versions") == [(1,)]
        assert rows(store, "SELECT count(*), count(DISTINCT trace_id) FROM decisions") == [(600, 600)]


@pytest.fixture()
def curated(tmp_path):
    """A store of 60 traces curated once into `ds` (v0001), and the config."""
    cfg = load_config(None)
    cfg.redact.workers = 1
    cfg.split.min_holdout = 0
    with Store(tmp_path / "t.duckdb") as store:
        ingest(store, [write_jsonl(tmp_path / "a.jsonl", distinct_logs(60))])
        curate.run(store, cfg, tmp_path / "ds")
        ingest(store, [write_jsonl(tmp_path / "b.jsonl", distinct_logs(20, prefix="later"))])
    return tmp_path / "t.duckdb", cfg, tmp_path / "ds"


@pytest.mark.parametrize("window", ["staging", "renamed", "switched"])
def test_a_run_killed_while_publishing_a_version_resumes_to_it(curated, monkeypatch, window) -> None:
    """The publishing steps one at a time: a kill after the staging folder is written, after it is renamed
    into place (before `latest` switches), and after `latest` switches (before the store records it)."""
    db, cfg, out = curated

    class Killed(BaseException):
        """Stands for SIGKILL at that point: nothing after it runs."""

    real_publish, real_switch, real_record = export.publish, export.switch_latest, versions._record

    def publish(root, tmp, version, entries, finish):
        if window == "staging":
            finish(tmp, entries)  # the files are written; then the process dies, cleaning nothing up
            raise Killed
        return real_publish(root, tmp, version, entries, finish)

    def switch(root, final):
        if window == "renamed":
            raise Killed
        real_switch(root, final)

    def record(*args):
        raise Killed

    monkeypatch.setattr(export, "publish", publish)
    monkeypatch.setattr(export, "switch_latest", switch)
    monkeypatch.setattr(versions, "_record", record)
    with Store(db) as store, pytest.raises(Killed):
        curate.run(store, cfg, out)
    monkeypatch.undo()
    if window == "staging":  # what the killed run left, renamed to a process that is gone
        (left,) = out.glob(".staging-*")
        left.rename(out / ".staging-999999999")
    _assert_versions_whole(out)
    with Store(db) as store:
        summary = curate.run(store, cfg, out)
        recorded = rows(store, "SELECT version, train_rows + holdout_rows FROM dataset_versions ORDER BY 1")
    assert summary["dataset"]["version"] == 2 and summary["dataset"]["changed"] is True
    assert recorded == [(1, 60), (2, 80)]
    assert (out / "latest").resolve().name == "v0002"
    assert sorted(p.name for p in out.iterdir()) == ["latest", "v0001", "v0002"]
    load_manifest(out / "latest", verify=True)
    assert real_record is versions._record
