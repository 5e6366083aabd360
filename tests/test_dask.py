"""The curate flow with its partition work on a real Dask cluster (prefect-dask), against a temporary
Prefect server: the same dataset as the local run, byte for byte, also when a worker dies mid-run."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import DEMO_CONFIG, distinct_logs, write_jsonl

pytestmark = pytest.mark.usefixtures("prefect_server")


def _config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load(DEMO_CONFIG.read_text())
    cfg.setdefault("curate", {})["partition_rows"] = 40  # several partitions per stage
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _dataset(folder: Path) -> dict[str, bytes]:
    version = folder / "v0001"
    return {name: (version / name).read_bytes() for name in ("train.jsonl", "holdout.jsonl", "trace_ids.json")}


def _counts(summary: dict) -> dict:
    return {
        k: {f: v[f] for f in ("in", "kept", "dropped", "processed", "partitions")} for k, v in summary["stages"].items()
    }


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dask-src")
    return str(write_jsonl(tmp / "in.jsonl", distinct_logs(160, seed=3)))


@pytest.fixture(scope="module")
def local_run(traces, tmp_path_factory):
    from flows.curate import curate_flow

    tmp = tmp_path_factory.mktemp("dask-local")
    summary = curate_flow([traces], str(tmp / "l.duckdb"), str(_config(tmp)), out=str(tmp / "ds"), announce=False)
    return summary, _dataset(tmp / "ds")


@pytest.mark.slow
def test_two_dask_workers_write_the_dataset_of_the_local_run(traces, local_run, tmp_path):
    from flows.curate import curate_flow

    db = tmp_path / "d.duckdb"
    summary = curate_flow([traces], str(db), str(_config(tmp_path)), out=str(tmp_path / "ds"), dask="local:2")
    assert _dataset(tmp_path / "ds") == local_run[1]
    assert _counts(summary) == _counts(local_run[0])
    assert summary["stages"]["redact"]["partitions"] == 4
    assert summary["dask"]["partitions"] == sum(s["partitions"] for s in summary["stages"].values())
    assert not list(Path(f"{db}.partitions").iterdir())  # every partition's files are gone once written


@pytest.mark.slow
def test_a_worker_killed_mid_partition_is_redone_and_the_dataset_is_unchanged(traces, local_run, tmp_path):
    from distributed import Client, LocalCluster

    from flows.curate import curate_flow

    killed: list[str] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        client = Client(cluster)

        pids = client.run(os.getpid)  # {worker address: process id}

        def kill_one_busy_worker() -> None:
            deadline = time.monotonic() + 300
            while not killed and time.monotonic() < deadline:
                busy = [w for w, keys in client.processing().items() if keys and any("partition" in k for k in keys)]
                if busy:
                    time.sleep(0.5)  # inside the partition, not at its start
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
        killer.start()
        out = tmp_path / "ds"
        summary = curate_flow(
            [traces], str(tmp_path / "k.duckdb"), str(_config(tmp_path)), out=str(out), dask=cluster.scheduler_address
        )
        killer.join(timeout=5)
        client.close()
    assert killed, "no worker was busy to kill"
    assert _dataset(out) == local_run[1]
    assert _counts(summary) == _counts(local_run[0])


def test_a_malformed_dask_setting_is_refused_naming_it(tmp_path):
    from schemas.config import ConfigError, load_config

    bad = tmp_path / "c.yaml"
    bad.write_text("curate:\n  dask: 'local:zero'\n")
    with pytest.raises(ConfigError, match=r"curate\.dask"):
        load_config(bad)
