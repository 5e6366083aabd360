"""Promise 3: two curate runs against one database at once. One proceeds; the other fails at once with
one line naming the holder (the CLI), or waits a bounded time and then proceeds or fails naming it (a
flow run, whose stage tasks retry on a locked store). Never a corrupt database or a mixed version."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curation.ingest.run import ingest
from curation.store import Store
from schemas.dataset import load_manifest
from tests.conftest import TRACETUNE, rows
from tests.helpers import distinct_logs, write_jsonl

TRACES = 120
CONFIG = "redact:\n  workers: 1\n  entities: [EMAIL_ADDRESS, PHONE_NUMBER, SECRET]\nsplit:\n  min_holdout: 0\n"


@pytest.fixture()
def project(tmp_path: Path) -> dict[str, Path]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    with Store(tmp_path / "t.duckdb") as store:
        ingest(store, [write_jsonl(tmp_path / "a.jsonl", distinct_logs(TRACES, prefix="c"))])
    return {"db": tmp_path / "t.duckdb", "cfg": cfg, "out": tmp_path / "ds"}


def _curate(p: dict[str, Path]) -> subprocess.Popen:
    args = ["curate", "--db", str(p["db"]), "--out", str(p["out"]), "--config", str(p["cfg"]), "--partition-rows", "20"]
    return subprocess.Popen([TRACETUNE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _holding(proc: subprocess.Popen, db: Path, timeout: float = 60) -> None:
    """Wait until `proc` has the database file open."""
    deadline = time.monotonic() + timeout
    fds = Path(f"/proc/{proc.pid}/fd")
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if any(os.path.realpath(fd) == str(db.resolve()) for fd in fds.iterdir()):
                return
        except (FileNotFoundError, PermissionError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{proc.pid} never opened {db}")


def assert_consistent(p: dict[str, Path], traces: int) -> None:
    """One decision and at most one side per trace, every version whole, `latest` one of them."""
    with Store(p["db"], read_only=True) as store:
        assert rows(store, "SELECT count(*), count(DISTINCT trace_id) FROM decisions") == [(traces, traces)]
        assert rows(store, "SELECT count(*) = count(DISTINCT trace_id) FROM splits") == [(True,)]
        versions = [v for (v,) in rows(store, "SELECT version FROM dataset_versions ORDER BY 1")]
    folders = sorted(d.name for d in p["out"].iterdir() if d.is_dir() and not d.is_symlink())
    assert folders == [f"v{v:04d}" for v in versions]  # no staging folder or half-written version left
    for name in folders:
        load_manifest(p["out"] / name, verify=True)  # every file's hash matches its manifest
    assert (p["out"] / "latest").resolve().name == folders[-1]


def test_a_second_cli_run_fails_at_once_naming_the_holder(project) -> None:
    first = _curate(project)
    _holding(first, project["db"])
    started = time.monotonic()
    second = subprocess.run(
        [
            TRACETUNE,
            "curate",
            "--db",
            str(project["db"]),
            "--out",
            str(project["out"]),
            "--config",
            str(project["cfg"]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode != 0 and time.monotonic() - started < 30
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert f"database is locked by process {first.pid}" in lines[0] and str(project["db"]) in lines[0]
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_consistent(project, TRACES)


@pytest.mark.usefixtures("prefect_server")
def test_a_flow_run_waits_for_the_holder_then_proceeds(project) -> None:
    from flows.curate import curate_flow

    holder = subprocess.Popen(  # another tracetune process holding the database for a few seconds
        [
            sys.executable,
            "-c",
            f"import time\nfrom curation.store import Store\nwith Store({str(project['db'])!r}):\n    time.sleep(4)",
        ],
    )
    _holding(holder, project["db"])
    state = curate_flow(
        db=str(project["db"]), config=str(project["cfg"]), out=str(project["out"]), announce=False, return_state=True
    )
    assert holder.wait(30) == 0
    assert state.is_completed(), state.message
    assert state.result()["dataset"]["version"] == 1
    assert_consistent(project, TRACES)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_a_flow_run_and_a_cli_run_at_once_never_mix_versions(project) -> None:
    from flows.curate import curate_flow

    cli = _curate(project)
    _holding(cli, project["db"])
    started = time.monotonic()
    state = curate_flow(
        db=str(project["db"]), config=str(project["cfg"]), out=str(project["out"]), announce=False, return_state=True
    )
    waited = time.monotonic() - started
    _, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err
    if state.is_completed():  # it waited for the CLI run, then found nothing new: no second version
        assert state.result()["dataset"]["changed"] is False
    else:  # it gave up after its bounded retries, naming the holder
        assert f"locked by process {cli.pid}" in str(state.message) + repr(state.data), state.message
        assert waited < 120
    assert_consistent(project, TRACES)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_a_flow_run_gives_up_after_its_bounded_wait_naming_the_holder(project) -> None:
    from flows.curate import curate_flow

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time\nfrom curation.store import Store\nwith Store({str(project['db'])!r}):\n    time.sleep(90)",
        ],
    )
    _holding(holder, project["db"])
    started = time.monotonic()
    state = curate_flow(
        db=str(project["db"]), config=str(project["cfg"]), out=str(project["out"]), announce=False, return_state=True
    )
    waited = time.monotonic() - started
    holder.kill()
    holder.wait()
    assert state.is_failed()
    with pytest.raises(Exception, match=rf"database is locked by process {holder.pid}"):
        state.result()
    assert 35 <= waited < 80  # two retries, 5 s and 30 s apart, then the failure
    assert not project["out"].exists() or not any(project["out"].iterdir())
    with Store(project["db"], read_only=True) as store:
        assert rows(store, "SELECT count(*) FROM decisions") == [(0,)]
