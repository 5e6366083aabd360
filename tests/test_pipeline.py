"""The whole loop as one flow (`pipeline_flow`) on a tiny model, under the session's Prefect server:
dataset -> adapter -> eval -> promotion with every artifact, nothing trained without new rows, a
do-not-promote verdict leaves `current` alone, a data error fails with its reason in an artifact."""

from __future__ import annotations

import os

import pytest

from curation.store import Store
from tests.pipeline_setup import drop_traces, tiny_config
from tests.test_train import tiny_base  # noqa: F401  (session fixture)

ARTIFACTS = [
    "ingest-summary",
    "ingest-by-format",
    "curation-summary",
    "drop-reasons",
    "pii-entity-counts",
    "curation-report",
    "training-curve",
    "training-summary",
    "training-progress",
    "eval-summary",
    "eval-report",
    "evaluation-progress",
    "promotion",
    "pipeline-summary",
]


def _rows(db, sql):
    with Store(db, read_only=True) as s:
        return s.con.execute(sql).fetchall()


@pytest.mark.usefixtures("prefect_server")
def test_pipeline_trains_evaluates_promotes_then_waits_for_new_rows(tmp_path, tiny_base):  # noqa: F811
    from prefect.artifacts import Artifact

    from flows.pipeline import PipelineRun, pipeline_flow
    from training import registry

    drop_traces(tmp_path, "day1", 30, "a")
    config = tiny_config(tmp_path, tiny_base)
    run = PipelineRun(db=str(tmp_path / "t.duckdb"), out=str(tmp_path / "ds"), config=str(config))
    first = pipeline_flow(run)
    assert first["ingest"]["accepted"] == 30 and first["dataset"]["version"] == 1
    assert first["need"]["train"] and first["evaluation"]["promote"]
    promotion = first["evaluation"]["promotion"]
    assert promotion["changed"] and registry.current(tmp_path / "adapters", "tracetune") == promotion_path(promotion)
    adapter = first["adapter"]
    assert os.path.isdir(adapter) and adapter.startswith(str(tmp_path / "adapters" / "tracetune" / "v0001-"))
    for key in ARTIFACTS:
        assert Artifact.get(key) is not None, key
    assert "now current" in Artifact.get("pipeline-summary").data
    assert "(file://" in Artifact.get("curation-report").data and "report.html" in Artifact.get("curation-report").data
    runs = _rows(run.db, "SELECT dataset_version, flow_run_id FROM training_runs")
    assert len(runs) == 1 and runs[0][0] == 1 and runs[0][1]
    assert _rows(run.db, "SELECT count(*) FROM eval_runs WHERE flow_run_id IS NOT NULL") == [(1,)]

    again = pipeline_flow(run)
    assert "ingest" in again and again["ingest"]["accepted"] == 0
    assert again["stopped"] == "version 1 is already trained" and "adapter" not in again
    assert len(_rows(run.db, "SELECT * FROM training_runs")) == 1

    drop_traces(tmp_path, "day2", 12, "b")
    strict = tiny_config(tmp_path, tiny_base, evaluate={"min_examples": 1000})
    third = pipeline_flow(PipelineRun(db=run.db, out=run.out, config=str(strict)))
    assert third["dataset"]["version"] == 2 and third["need"]["new_rows"] > 0
    assert not third["evaluation"]["promote"] and not third["evaluation"]["promotion"]["changed"]
    assert registry.current(tmp_path / "adapters", "tracetune") == promotion_path(promotion)
    assert "do not promote" in Artifact.get("promotion").data


def promotion_path(promotion):
    from pathlib import Path

    return Path(promotion["current"])


@pytest.mark.usefixtures("prefect_server")
def test_pipeline_with_too_few_rows_trains_nothing(tmp_path, tiny_base):  # noqa: F811
    from flows.pipeline import PipelineRun, pipeline_flow

    drop_traces(tmp_path, "day1", 12, "c")
    config = tiny_config(tmp_path, tiny_base, pipeline={"min_train_rows": 500})
    out = pipeline_flow(PipelineRun(db=str(tmp_path / "t.duckdb"), out=str(tmp_path / "ds"), config=str(config)))
    assert out["dataset"]["version"] == 1 and "fewer than pipeline.min_train_rows (500)" in out["stopped"]


@pytest.mark.usefixtures("prefect_server")
def test_pipeline_data_error_fails_with_the_reason_in_an_artifact(tmp_path, tiny_base):  # noqa: F811
    from prefect.artifacts import Artifact

    from flows.pipeline import PipelineRun, pipeline_flow

    drop_traces(tmp_path, "day1", 20, "d")
    config = tiny_config(tmp_path, tiny_base, train={"base_model": str(tmp_path / "no-such-model")})
    state = pipeline_flow(
        PipelineRun(db=str(tmp_path / "t.duckdb"), out=str(tmp_path / "ds"), config=str(config)), return_state=True
    )
    assert state.is_failed()
    failure = Artifact.get("pipeline-failure")
    assert failure is not None and "no-such-model" in failure.data and "| curate | version 1 |" in failure.data
    assert not (tmp_path / "adapters").exists() or not any((tmp_path / "adapters").rglob("adapter_model*"))


def test_pipeline_rejects_a_parameter_of_the_wrong_type_before_running(prefect_server):
    from prefect.exceptions import ParameterTypeError

    from flows.pipeline import pipeline_flow

    with pytest.raises(ParameterTypeError, match="db"):
        pipeline_flow(run={"db": 5})
    with pytest.raises(ParameterTypeError, match="unknown"):
        pipeline_flow(run={"unknown": "x"})
