"""`tracetune deploy` and `tracetune serve`: the deployments of prefect.yaml on a Prefect server, run by a
process work pool's workers, or served from this one process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

import flows
from schemas.config import ConfigError, load_config
from tracetune.output import err, fail, say

PACKAGED_FILE = Path(flows.__file__).resolve().parent / "prefect.yaml"  # the repository root links to it
RootOpt = Annotated[
    Path, typer.Option("--root", help="Project folder: the working directory of every run (data/, config).")
]
ConfigArg = Annotated[
    Path | None,
    typer.Option(
        "--config", help="Config file the runs read (default: ROOT/tracetune.yaml if present, else defaults)."
    ),
]
FileOpt = Annotated[
    Path | None, typer.Option("--file", help="prefect.yaml to deploy (default: ./prefect.yaml, else tracetune's).")
]
NO_SERVER = (
    "PREFECT_API_URL is not set: start a server (`prefect server start`) and "
    "`export PREFECT_API_URL=http://127.0.0.1:4200/api` (or log in to Prefect Cloud)"
)


def _inputs(root: Path, config: Path | None, file: Path | None) -> tuple[Path, Path | None, Path]:
    if not os.environ.get("PREFECT_API_URL"):
        fail(NO_SERVER)
    root = root.resolve()
    if not root.is_dir():
        fail(f"{root}: project folder not found")
    config = config or (root / "tracetune.yaml" if (root / "tracetune.yaml").is_file() else None)
    try:
        load_config(config)
    except ConfigError as exc:
        fail(str(exc))
    file = file or (Path("prefect.yaml") if Path("prefect.yaml").is_file() else PACKAGED_FILE)
    if not file.is_file():
        fail(f"{file}: prefect.yaml not found (pass --file)")
    return root, config.resolve() if config else None, file.resolve()


async def _ensure_pool_and_limit(pool: str, limit: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    made = []
    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            made.append(f"work pool {pool} (process)")
        except ObjectAlreadyExists:
            pass
        try:
            await client.read_global_concurrency_limit_by_name(limit)
        except Exception:
            await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=1))
            made.append(f"global concurrency limit {limit} (1 slot: the single DuckDB writer)")
    return made


def setup(config: Path | None) -> None:
    """Create the process work pool and the DuckDB writer limit where they are missing."""
    from flows.deployments import POOL

    for what in asyncio.run(_ensure_pool_and_limit(POOL, load_config(config).pipeline.writer_limit)):
        say(f"created {what}")


def deploy(root: RootOpt = Path("."), config: ConfigArg = None, file: FileOpt = None) -> None:
    """Create the work pool and the writer limit, then deploy every deployment of prefect.yaml
    (`prefect --no-prompt deploy --all`) for the project ROOT; start a worker with
    `prefect worker start --pool tracetune-local`."""
    from flows.deployments import deploy_env

    root, config, file = _inputs(root, config, file)
    setup(config)
    cmd = [
        str(Path(sys.executable).with_name("prefect")),
        "--no-prompt",
        "deploy",
        "--all",
        "--prefect-file",
        str(file),
    ]
    done = subprocess.run(cmd, cwd=root, env={**os.environ, **deploy_env(root, config)}, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        fail(f"prefect deploy failed (exit {done.returncode}) for {file}")
    names = [line.split("'")[1] for line in done.stdout.splitlines() if "successfully created" in line and "'" in line]
    say(f"deployed {len(names)} deployment(s) from {file} for {root}: {', '.join(names)}")
    say("next: prefect worker start --pool tracetune-local")


async def _drop_pool_deployments(names: list[str]) -> list[str]:
    """Delete the work-pool deployments that the served ones replace (else a worker would run their runs too)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    dropped = []
    async with get_client() as client:
        for name in names:
            try:
                d = await client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if d.work_pool_name:
                await client.delete_deployment(d.id)
                dropped.append(f"{name} (work pool {d.work_pool_name})")
    return dropped


def serve(root: RootOpt = Path("."), config: ConfigArg = None, file: FileOpt = None) -> None:
    """Serve the deployments of prefect.yaml (schedules and event triggers) from this process, without a
    work pool or worker; runs execute here with ROOT as working directory. Stop with Ctrl-C."""
    from prefect import serve as prefect_serve

    from flows.deployments import read, to_served

    root, config, file = _inputs(root, config, file)
    setup(config)
    deployments = to_served(read(file, root, config))
    for what in asyncio.run(_drop_pool_deployments([f"{d.flow_name}/{d.name}" for d in deployments])):
        err.print(f"replacing the worker deployment {what} by the served one", highlight=False)
    os.chdir(root)
    err.print(f"serving {len(deployments)} deployments for {root}", highlight=False)
    prefect_serve(*deployments)
