"""A real Prefect server (`prefect server start`) and process worker on 127.0.0.1 for one test module,
in their own PREFECT_HOME; every wait is bounded."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PREFECT = str(Path(sys.executable).with_name("prefect"))
TRACETUNE = str(Path(sys.executable).with_name("tracetune"))
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LivePrefect:
    """Server + worker subprocesses; `env` is what a client subprocess needs to talk to them."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.url = f"http://127.0.0.1:{_free_port()}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            "PREFECT_LOGGING_TO_API_ENABLED": "false",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def _spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        out = (self.home / log).open("wb")
        proc = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_server(self, timeout: float = 120) -> None:
        port = self.url.split(":")[2].split("/")[0]
        self._spawn(PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port, log="server.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"prefect server did not answer in {timeout}s: {self.log('server.log')}")

    def start_worker(self) -> None:
        self._spawn(PREFECT, "worker", "start", "--pool", "tracetune-local", "--type", "process", log="worker.log")

    def log(self, name: str) -> str:
        path = self.home / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout)

    @contextmanager
    def settings(self) -> Any:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.url}):
            yield

    def call(self, fn: Any) -> Any:
        """Run `fn(client)` (a coroutine function) against this server."""
        from prefect.client.orchestration import get_client

        async def go() -> Any:
            async with get_client() as client:
                return await fn(client)

        with self.settings():
            return asyncio.run(go())

    def runs_of(self, deployment: str) -> list[Any]:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        async def go(client: Any) -> list[Any]:
            dep = await client.read_deployment_by_name(deployment)
            return await client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))

        return self.call(go)

    def wait(self, deployment: str, states: set[str], count: int = 1, timeout: float = 240) -> list[Any]:
        """Poll until `count` runs of `deployment` are in one of `states`; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.runs_of(deployment) if r.state and r.state.type.value in states]
            if len(found) >= count:
                return found
            time.sleep(1)
        seen = [(r.name, r.state and r.state.name) for r in self.runs_of(deployment)]
        raise TimeoutError(
            f"{deployment}: no {count} run(s) in {states} after {timeout}s: {seen}\n{self.log('worker.log')}"
        )

    def wait_run(self, run_id: Any, states: set[str], timeout: float = 240) -> Any:
        """Poll one flow run until its state type is in `states`; returns the run."""
        deadline = time.monotonic() + timeout
        run = None
        while time.monotonic() < deadline:
            run = self.call(lambda c: c.read_flow_run(run_id))
            if run.state and run.state.type.value in states:
                return run
            time.sleep(1)
        state = run.state.name if run and run.state else None
        raise TimeoutError(f"flow run {run_id} not in {states} after {timeout}s (is {state})\n{self.log('worker.log')}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
