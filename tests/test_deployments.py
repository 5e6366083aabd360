"""prefect.yaml on a real `prefect server start` with a real process worker: `tracetune deploy` loads
every deployment (schedules, triggers, the writer limit), a wrong parameter type is refused, the dataset
event makes the trigger train (and the adapter event evaluate and promote), and the review gate
suspends the pipeline until `tracetune review` approves (with an exclusion) or rejects."""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import pytest

from curation.store import Store
from tests.conftest import ROOT, rows
from tests.live_prefect import PREFECT, TRACETUNE, LivePrefect
from tests.pipeline_setup import drop_traces, tiny_config
from tests.test_train import tiny_base  # noqa: F401  (session fixture)

DEPLOYMENTS = {
    "pipeline/pipeline-nightly": ("cron", True),
    "ingest/ingest": ("interval", False),
    "curate/curate-nightly": ("cron", False),
    "train/train-on-new-dataset": (None, None),
    "evaluate/evaluate": (None, None),
}


def curate_and_announce(server, project, name, n):
    """Curate `n` new traces into data/dataset in-process, then emit the dataset event from a subprocess."""
    from curation import curate
    from curation.ingest.run import ingest
    from schemas.config import load_config
    from schemas.dataset import event_payload

    drop_traces(project, name, n, name[0])
    db, out = project / "data" / "tracetune.duckdb", project / "data" / "dataset"
    with Store(db) as store:
        ingest(store, [project / "inbox" / f"{name}.jsonl"])
        version = curate.run(store, load_config(project / "tracetune.yaml"), out)["dataset"]["version"]
    payload = event_payload(out / f"v{version:04d}", str(db))
    resource = f"tracetune.dataset.tracetune.{version}"
    emitted = server.run(
        PREFECT,
        "event",
        "emit",
        "tracetune.dataset.created",
        "--resource-id",
        resource,
        "--payload",
        json.dumps(payload),
    )
    assert emitted.returncode == 0, emitted.stderr
    return version, payload


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_base):  # noqa: F811
    home, project = tmp_path_factory.mktemp("prefect-home"), tmp_path_factory.mktemp("project")
    shutil.copy(tiny_config(project, tiny_base), project / "tracetune.yaml")
    server = LivePrefect(home)
    try:
        server.start_server()
        done = server.run(TRACETUNE, "deploy", "--root", str(project), "--file", str(ROOT / "prefect.yaml"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "deployed 5 deployment(s)" in done.stdout and "created work pool tracetune-local" in done.stdout
        server.start_worker()
        yield server, project
    finally:
        server.stop()


def test_deploy_loads_every_deployment_with_schedules_triggers_and_the_writer_limit(live):
    server, project = live

    async def read(client):
        deps = {n: await client.read_deployment_by_name(n) for n in DEPLOYMENTS}
        autos = {a.name: a for a in await client.read_automations()}
        gcl = await client.read_global_concurrency_limit_by_name("tracetune-duckdb-writer")
        return deps, autos, gcl

    deps, autos, gcl = server.call(read)
    assert gcl.limit == 1
    for name, (kind, active) in DEPLOYMENTS.items():
        d = deps[name]
        assert d.job_variables == {"working_dir": str(project)} and d.global_concurrency_limit.limit == 1
        assert d.parameters.get("config", d.parameters.get("run", {}).get("config")) == str(project / "tracetune.yaml")
        if kind is None:
            assert not d.schedules
        else:
            (s,) = d.schedules
            assert s.active is active and (hasattr(s.schedule, "cron") if kind == "cron" else s.schedule.interval)
    assert deps["pipeline/pipeline-nightly"].schedules[0].schedule.cron == "30 2 * * *"
    train = autos["train-on-new-dataset__automation_1"]
    assert train.trigger.expect == {"tracetune.dataset.created", "tracetune.dataset.approved"}
    assert "evaluate__automation_1" in autos


def test_a_parameter_of_the_wrong_type_creates_no_run(live):
    from prefect.exceptions import PrefectHTTPStatusError

    server, _ = live

    async def bad(client):
        dep = await client.read_deployment_by_name("pipeline/pipeline-nightly")
        return await client.create_flow_run_from_deployment(dep.id, parameters={"run": {"db": 5}})

    with pytest.raises(PrefectHTTPStatusError, match="409"):
        server.call(bad)


def test_the_dataset_event_trains_then_the_adapter_event_evaluates_and_promotes(live):
    from training import registry

    server, project = live
    db = project / "data" / "tracetune.duckdb"
    version, payload = curate_and_announce(server, project, "event", 24)
    (trained,) = server.wait("train/train-on-new-dataset", {"COMPLETED", "FAILED", "CRASHED"})
    assert trained.state.type.value == "COMPLETED", server.log("worker.log")
    assert trained.parameters["dataset"] == payload["path"] and trained.parameters["version"] == version
    (evaluated,) = server.wait("evaluate/evaluate", {"COMPLETED", "FAILED", "CRASHED"})
    assert evaluated.state.type.value == "COMPLETED", server.log("worker.log")
    with Store(db, read_only=True) as store:
        ((adapter, run_id),) = store.con.execute("SELECT adapter_dir, flow_run_id FROM training_runs").fetchall()
        ((eval_run,),) = store.con.execute("SELECT flow_run_id FROM eval_runs").fetchall()
    assert run_id == str(trained.id) and eval_run == str(evaluated.id)
    assert registry.current(project / "adapters", "tracetune") == __import__("pathlib").Path(adapter)


def test_the_review_gate_suspends_until_approved_and_a_rejection_stops_before_training(live):
    server, project = live
    inbox = project / "gated"
    cfg = tiny_config(project, tiny_base_path(project), pipeline={"require_approval": True, "inbox": str(inbox)})
    drop_traces(project / "g", "day1", 24, "g")
    shutil.move(project / "g" / "inbox", inbox)
    params = {"run": {"db": "data/gated.duckdb", "out": "data/gated", "config": str(cfg)}}

    async def start(client):
        dep = await client.read_deployment_by_name("pipeline/pipeline-nightly")
        return await client.create_flow_run_from_deployment(dep.id, parameters=params)

    first = server.call(start)
    server.wait_run(first.id, {"PAUSED"})
    ids = json.loads((project / "data" / "gated" / "v0001" / "trace_ids.json").read_text())
    gone = ids["train"][0]
    db, out = str(project / "data" / "gated.duckdb"), str(project / "data" / "gated")
    approved = server.run(
        TRACETUNE, "review", "approve", "1", "--exclude", gone, "--note", "ok", "--db", db, "--out", out
    )
    assert approved.returncode == 0 and f"resumed the waiting pipeline run {first.id}" in approved.stdout, (
        approved.stderr
    )
    done = server.wait_run(first.id, {"COMPLETED", "FAILED", "CRASHED"})
    assert done.state.type.value == "COMPLETED", server.log("worker.log")
    v2 = json.loads((project / "data" / "gated" / "v0002" / "trace_ids.json").read_text())
    assert gone not in v2["train"] + v2["holdout"] and len(v2["train"]) == len(ids["train"]) - 1
    manifest = json.loads((project / "data" / "gated" / "v0002" / "manifest.json").read_text())
    assert manifest["review"]["decision"] == "approve" and manifest["review"]["approved_from"] == 1
    with Store(db, read_only=True) as store:
        assert store.con.execute("SELECT dataset_version FROM training_runs").fetchall() == [(2,)]

    drop_traces(project / "g2", "day2", 10, "h")
    shutil.move(project / "g2" / "inbox" / "day2.jsonl", inbox / "day2.jsonl")
    second = server.call(start)
    server.wait_run(second.id, {"PAUSED"})
    rejected = server.run(TRACETUNE, "review", "reject", "3", "--note", "too noisy", "--db", db, "--out", out)
    assert rejected.returncode == 0 and "resumed" in rejected.stdout, rejected.stderr
    done = server.wait_run(second.id, {"COMPLETED", "FAILED", "CRASHED"})
    assert done.state.type.value == "COMPLETED", server.log("worker.log")
    with Store(db, read_only=True) as store:
        assert store.con.execute("SELECT dataset_version FROM training_runs").fetchall() == [(2,)]
        assert store.con.execute(
            "SELECT decision FROM reviews WHERE version = 3 AND decision <> 'pending'"
        ).fetchall() == [("reject",)]


def writer_holds(server, runs) -> list[tuple[Any, str, str]]:
    """(occurred, phase, flow run id) of every acquisition and release of the DuckDB writer limit by `runs`,
    in order; waits (bounded) until every run's events, each acquisition with its release, reached the server."""
    from prefect.events.filters import EventFilter, EventNameFilter

    async def read(client):
        page = await client.read_events(
            EventFilter(event=EventNameFilter(prefix=["prefect.concurrency-limit."])), limit=50
        )
        events = list(page.events)
        while page.next_page:
            page = await client.read_events_page(page.next_page)
            events += page.events
        return events

    ids = {f"prefect.flow-run.{r.id}": str(r.id) for r in runs}
    deadline = time.monotonic() + 60
    while True:
        held = []
        for e in server.call(read):
            owner = [ids[r.id] for r in e.related if r.id in ids]
            if e.resource.get("prefect.resource.name") == "tracetune-duckdb-writer" and owner:
                held.append((e.occurred, e.event.rsplit(".", 1)[-1], owner[0]))
        phases = [h[1] for h in held]
        every_run = {h[2] for h in held} == set(ids.values())  # the server persists events in batches, late
        if (every_run and phases.count("acquired") == phases.count("released")) or time.monotonic() > deadline:
            return sorted(held, key=lambda h: (h[0], h[1] == "acquired"))  # a release at the same instant first
        time.sleep(1)


def test_two_deployments_triggered_together_take_turns_on_the_database(live):
    """ingest and curate-nightly started at once on one store: both complete, the DuckDB writer limit is
    never held by both, and the store and the dataset version they leave are consistent."""
    from curation.ingest.run import ingest
    from schemas.dataset import load_manifest

    server, project = live
    db, out = project / "data" / "race.duckdb", project / "data" / "race"
    drop_traces(project / "race", "first", 30, "r")
    with Store(db) as store:
        ingest(store, [project / "race" / "inbox" / "first.jsonl"])
    drop_traces(project / "race", "second", 30, "s")  # ingested by the deployment, racing the curation

    async def start(client):
        ing = await client.read_deployment_by_name("ingest/ingest")
        cur = await client.read_deployment_by_name("curate/curate-nightly")
        return [
            await client.create_flow_run_from_deployment(
                cur.id, parameters={"db": str(db), "out": str(out), "announce": False}
            ),
            await client.create_flow_run_from_deployment(
                ing.id, parameters={"paths": [str(project / "race" / "inbox")], "db": str(db)}
            ),
        ]

    runs = server.call(start)
    for run in runs:
        done = server.wait_run(run.id, {"COMPLETED", "FAILED", "CRASHED"})
        assert done.state.type.value == "COMPLETED", (done.state.message, server.log("worker.log"))
    held, holders = writer_holds(server, runs), 0
    assert {h[2] for h in held} == {str(r.id) for r in runs}  # both wrote, each under the limit
    for _, phase, _ in held:
        holders += 1 if phase == "acquired" else -1
        assert 0 <= holders <= 1, held
    print(f"writer limit: {len(held)} acquisitions and releases by {len(runs)} runs, never two holders")
    with Store(db, read_only=True) as store:
        assert rows(store, "SELECT count(*), count(DISTINCT trace_id) FROM traces") == [(60, 60)]
        decided = rows(store, "SELECT count(*), count(DISTINCT trace_id) FROM decisions")[0]
        assert decided[0] == decided[1] and decided[0] in (30, 60), decided  # the store as one writer left it
        print(f"curate decided {decided[0]} traces")
        versions = rows(store, "SELECT version FROM dataset_versions")
    assert versions == [(1,)] and (out / "latest").resolve().name == "v0001"
    _, manifest = load_manifest(out / "v0001", verify=True)  # every file whole
    ids = json.loads((out / "v0001" / "trace_ids.json").read_text())
    assert [manifest.files[f"{side}.jsonl"].rows for side in ("train", "holdout")] == [
        len(ids["train"]),
        len(ids["holdout"]),
    ]


def tiny_base_path(project):
    import yaml

    return yaml.safe_load((project / "tracetune.yaml").read_text())["train"]["base_model"]


@pytest.mark.slow
def test_serve_runs_the_same_deployments_from_one_process(live):
    """`tracetune serve` (no pool, no worker): same schedules and trigger, and the trigger runs in it."""
    import subprocess
    import time

    server, project = live
    serving = subprocess.Popen(
        [TRACETUNE, "serve", "--root", str(project), "--file", str(ROOT / "prefect.yaml")],
        env=server.env,
        stdout=(project / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        async def served(client):
            from prefect.exceptions import ObjectNotFound

            try:  # deleted, then created again by serve
                d = await client.read_deployment_by_name("train/train-on-new-dataset")
                p = await client.read_deployment_by_name("pipeline/pipeline-nightly")
            except ObjectNotFound:
                return "not yet", None
            return d.work_pool_name, p

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.call(served)[0] is not None:
            time.sleep(1)
        pool, pipeline = server.call(served)
        assert pool is None, (project / "serve.log").read_text()[-2000:]
        assert pipeline.schedules[0].schedule.cron == "30 2 * * *" and pipeline.schedules[0].active
        before = len(server.runs_of("train/train-on-new-dataset"))
        version, _ = curate_and_announce(server, project, "served", 8)
        runs = server.wait("train/train-on-new-dataset", {"COMPLETED", "FAILED", "CRASHED"}, count=before + 1)
        latest = max(runs, key=lambda r: r.created)
        assert latest.state.type.value == "COMPLETED" and latest.parameters["version"] == version
        log = (project / "serve.log").read_text()
        assert "serving 5 deployments" in log and "replacing the worker deployment train/train-on-new-dataset" in log
    finally:
        import os

        os.killpg(serving.pid, 15)
        serving.wait(timeout=30)
