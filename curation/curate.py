"""A curation run: the stages after ingest, in order, each reading what the one before it kept.

dedupe -> redact -> leak gate -> review -> filter -> export checks -> split (+ leakage check), then
`decisions` (one row per trace: kept with its side, or its first drop reason) and, with an output
folder, a dataset version (train/holdout JSONL, manifest, dataset card and the curation report).
Each stage follows the contract of `curation.stage`; the flow turns this list into tasks."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from curation import decisions, export, filters, rule_base, stage, tokens, versions
from curation.dedupe import DedupeStage
from curation.gates import LeakGateStage, ReviewStage
from curation.quality import ExportCheckStage, FilterStage
from curation.redact_stage import RedactStage
from curation.split_stage import SplitStage
from curation.store import Store
from schemas.config import Config

STAGES: tuple[type[stage.Stage], ...] = (
    DedupeStage,
    RedactStage,
    LeakGateStage,
    ReviewStage,
    FilterStage,
    ExportCheckStage,
    SplitStage,
)
NAMES = tuple(s.name for s in STAGES)


class EmptyStoreError(ValueError):
    """The store holds no traces: there is nothing to curate yet."""


def require_traces(store: Store, how: str) -> int:
    """The number of traces in the store; EmptyStoreError (saying `how` to ingest) when there are none."""
    n = store.count("traces")
    if not n:
        raise EmptyStoreError(f"{store.path}: no traces to curate yet; ingest some first: {how}")
    return n


def preflight(cfg: Config, out: Path | None = None) -> None:
    """Check what only a run can check before any stage works: the rules named in filter.disabled, the
    tokenizer, the JSON schema file and (with `out`) a writable dataset folder. Errors name the key or path."""
    filters.active_rules(cfg.filter)
    rule_base.load_schema(cfg.filter.expect_json_schema)
    if cfg.filter.tokenizer != "approx":
        try:
            tokens.counter(cfg.filter.tokenizer)
        except (OSError, ValueError) as exc:
            raise ValueError(f"filter.tokenizer: {cfg.filter.tokenizer}: cannot be loaded ({exc})") from None
    if out is not None:
        export.check_writable(out)


def snapshot(store: Store) -> str | None:
    """The instant of the store's latest ingest (ISO 8601): a run whose stages are separate tasks curates
    the traces ingested up to it, whatever is ingested between its tasks. None for an empty store."""
    (last,) = store.con.execute("SELECT max(ingested_at) FROM traces").fetchone() or (None,)
    return last.isoformat() if last is not None else None


def pipeline(cfg: Config, upto: str | None = None) -> list[stage.Stage]:
    """The stages of a run under `cfg`, each reading what the previous one keeps; with `upto` (a
    `snapshot`), over the traces ingested up to that instant only."""
    stages: list[stage.Stage] = []
    upstream = "SELECT trace_id FROM traces"
    if upto is not None:
        upstream += f" WHERE ingested_at <= '{datetime.fromisoformat(upto).isoformat()}'::TIMESTAMPTZ"
    for cls in STAGES:
        stages.append(cls(cfg, upstream))
        upstream = stages[-1].output()
    return stages


def run_stage(
    store: Store,
    cfg: Config,
    name: str,
    progress: stage.Progress | None = None,
    runner: stage.Runner | None = None,
    upto: str | None = None,
) -> dict[str, Any]:
    """Run one stage by name (the stages before it must have run, with the same `upto`), its partition
    work through `runner` (in this process by default); returns its stats as a dict."""
    store.con.execute(f"SET memory_limit = '{cfg.curate.memory_limit}'")
    return stage.run(stage_named(cfg, name, upto), store, progress, runner).as_dict()


def stage_named(cfg: Config, name: str, upto: str | None = None) -> stage.Stage:
    """The stage called `name` in the pipeline under `cfg` (over the traces ingested up to `upto`)."""
    for chosen in pipeline(cfg, upto):
        if chosen.name == name:
            return chosen
    raise ValueError(f"no curation stage named {name!r}")


def run(
    store: Store, config: Config, out: Path | None = None, progress: stage.Progress | None = None
) -> dict[str, Any]:
    """Run every curation stage; with `out`, write a dataset version there. Returns the run summary
    (the `--json` output): traces, each stage's stats, train/holdout rows, the dataset version."""
    started = time.perf_counter()
    summary: dict[str, Any] = {"traces": require_traces(store, f"tracetune ingest PATH... --db {store.path}")}
    preflight(config, out)
    summary["stages"] = {name: run_stage(store, config, name, progress) for name in NAMES}
    return finish(store, config, out, summary, started)


def finish(
    store: Store,
    config: Config,
    out: Path | None,
    summary: dict[str, Any],
    started: float | None = None,
    upto: str | None = None,
) -> dict[str, Any]:
    """After the stages (run with the same `upto`): `decisions`, the train/holdout counts and (with
    `out`) the dataset version."""
    begun = time.perf_counter()
    stages = pipeline(config, upto)
    decisions.record(store, stages, config)
    split = summary["stages"]["split"]["detail"]
    summary["train"], summary["holdout"] = split["train"], split["holdout"]
    if out is not None:
        summary["dataset"] = versions.write(store, config, stages[-1].upstream, summary, out)
    summary["export_seconds"] = round(time.perf_counter() - begun, 3)
    summary["seconds"] = round(time.perf_counter() - (started or begun), 3)
    return summary
