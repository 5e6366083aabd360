"""The curation stages with their partition work on a Dask cluster, through prefect-dask.

The flow process stays the only DuckDB writer: per stage it prepares each partition, hands it to the
cluster as files in the exchange folder (`curation.exchange`: Parquet + lookups, named by content
hash), and writes each result back in partition order. Each partition is one Prefect task
(`<stage>-<k>`, visible in the UI), retried when it fails; its work is idempotent, so a lost worker
only redoes its partition."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_dask import DaskTaskRunner

from curation import curate, exchange
from curation.stage import Stage
from flows.locks import writing
from schemas.config import Config, CurateConfig, load_config


class PartitionError(RuntimeError):
    """A partition failed on the cluster after its retries."""


@task(name="partition", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1, task_run_name="{stage}-{index}")
def partition_task(stage: str, index: int, config_json: str, stem: str, digest: str) -> float:
    """One partition of one stage, on a Dask worker (its result in STEM.out): returns its seconds."""
    return exchange.process_file(stage, config_json, stem, digest)


def local_workers(where: str) -> int | None:
    """N of "local:N" (a LocalCluster started for the run); None for a scheduler address."""
    return int(where.split(":", 1)[1]) if where.startswith("local:") else None


def task_runner(where: str) -> DaskTaskRunner:
    """prefect-dask's runner for `where`: "local:N" (a LocalCluster of N single-threaded worker
    processes, started for the run: no numba threads beside the worker's one, as Dask already does for
    BLAS) or a scheduler address ("tcp://host:8786")."""
    n = local_workers(where)
    if n is None:
        return DaskTaskRunner(address=where)
    kwargs = {
        "n_workers": n,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "env": {"NUMBA_NUM_THREADS": "1"},
    }
    return DaskTaskRunner(cluster_kwargs=kwargs)


class DaskRunner:
    """A `curation.stage.Runner` whose partition work runs as Prefect tasks on a DaskTaskRunner."""

    def __init__(self, runner: DaskTaskRunner, folder: Path, cfg: Config, window: int) -> None:
        self.runner, self.folder, self.window = runner, folder, window
        self.config_json = cfg.model_dump_json()
        self.seconds: list[float] = []  # each partition's work on its worker

    def map(self, stage: Stage, work: Iterator[tuple[pa.Table, Any]]) -> Iterator[Any]:
        pending: deque[tuple[int, str, Any]] = deque()
        for k, (part, prepared) in enumerate(work):
            stem, digest = exchange.put(self.folder, stage.name, k, part, prepared, self.config_json)
            params = {"stage": stage.name, "index": k, "config_json": self.config_json, "stem": stem, "digest": digest}
            pending.append((k, stem, self.runner.submit(partition_task, params)))
            if len(pending) >= self.window:
                yield self._collect(stage, pending.popleft())
        while pending:
            yield self._collect(stage, pending.popleft())

    def _collect(self, stage: Stage, item: tuple[int, str, Any]) -> Any:
        k, stem, future = item
        try:
            self.seconds.append(future.result())
        except Exception as exc:
            died = "KilledWorker" in type(exc).__name__ or "died" in str(exc)
            hint = (
                ": a Dask worker died running it, out of memory is the usual cause (lower curate.partition_rows "
                "or give the workers more memory)"
                if died
                else ""
            )
            raise PartitionError(
                f"stage {stage.name}: partition {k} failed on the Dask cluster after its retries{hint}: "
                f"{type(exc).__name__}: {str(exc)[:300]}"
            ) from exc
        return exchange.take(stem)


def stages_on_dask(db: str, config: str | None, where: str, upto: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every curation stage over the traces ingested up to `upto` (the flow's snapshot task has checked
    that there are some), its partition work on the Dask cluster `where`; returns each stage's stats
    and {"where", "partitions", "worker_seconds"} (the seconds the workers spent on partition work)."""
    cfg = load_config(config)
    CurateConfig.model_validate({**cfg.curate.model_dump(), "dask": where})  # the flow parameter, as the config key
    logger = get_run_logger()
    folder = Path(f"{db}.partitions")

    def progress(stage: str, done: int, total: int) -> None:
        logger.info("%s: %s of %s traces done", stage, done, total)

    with task_runner(where) as runner, writing(db, cfg.pipeline.writer_limit) as store:
        dask = DaskRunner(runner, folder, cfg, 2 * (local_workers(where) or 8))  # partitions in flight
        logger.info("curation partitions on Dask (%s), exchange folder %s", where, folder)
        stages = {name: curate.run_stage(store, cfg, name, progress, dask, upto) for name in curate.NAMES}
    used = {"where": where, "partitions": len(dask.seconds), "worker_seconds": round(sum(dask.seconds), 3)}
    logger.info("partition work: %s partitions, %.1f worker-seconds", used["partitions"], used["worker_seconds"])
    return stages, used
