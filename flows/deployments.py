"""The deployments of `prefect.yaml`, read once for both ways of running them: `prefect deploy` (a work
pool and workers) and `prefect.serve` (one process, `tracetune serve`)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import EntrypointType
from prefect.events import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron, Interval, Schedule
from prefect.utilities.templating import apply_values

ROOT_ENV, CONFIG_ENV = "TRACETUNE_ROOT", "TRACETUNE_CONFIG"
POOL = "tracetune-local"


def read(path: str | Path, root: Path, config: Path | None) -> list[dict[str, Any]]:
    """The deployments of a prefect.yaml with `{{ $TRACETUNE_ROOT }}` and `{{ $TRACETUNE_CONFIG }}` filled in
    (Prefect's templating reads them from this process's environment, where they are set)."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    os.environ.update(deploy_env(root, config))
    return list(apply_values(raw.get("deployments") or [], {}, remove_notset=False))


def deploy_env(root: Path, config: Path | None) -> dict[str, str]:
    """The variables prefect.yaml reads: the project folder and the config file (absolute), '' for none."""
    return {ROOT_ENV: str(root.resolve()), CONFIG_ENV: str(config.resolve()) if config else ""}


def _schedule(s: dict[str, Any]) -> Schedule:
    active = bool(s.get("active", True))
    if "cron" in s:
        return Cron(s["cron"], timezone=s.get("timezone"), active=active)
    return Interval(timedelta(seconds=float(s["interval"])), timezone=s.get("timezone"), active=active)


def _limit(value: Any) -> int | ConcurrencyLimitConfig | None:
    return ConcurrencyLimitConfig(**value) if isinstance(value, dict) else value


def to_served(deployments: list[dict[str, Any]]) -> list[Any]:
    """RunnerDeployments for `prefect.serve`: same flows, parameters, schedules, triggers and limits."""
    out = []
    for d in deployments:
        flow = load_flow_from_entrypoint(d["entrypoint"])
        triggers = [
            DeploymentEventTrigger(**{k: v for k, v in t.items() if k != "type"}) for t in d.get("triggers", [])
        ]
        out.append(
            flow.to_deployment(
                name=d["name"],
                description=d.get("description"),
                parameters=d.get("parameters") or {},
                schedules=[_schedule(s) for s in d.get("schedules", [])],
                triggers=triggers,
                concurrency_limit=_limit(d.get("concurrency_limit")),
                entrypoint_type=EntrypointType.MODULE_PATH,  # runs start in ROOT, not in the code's folder
            )
        )
    return out
