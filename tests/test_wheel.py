"""The package as a user installs it: a wheel built from the repository, installed (not editable) into a
fresh virtual environment, runs `tracetune ingest` and `tracetune curate` outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

from tests.conftest import ROOT
from tests.varied import write_varied


def sh(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing but the venv's own paths
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)
    assert p.returncode == 0, f"{args}: {p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    return p


def test_wheel_installed_in_a_fresh_venv_runs_outside_the_checkout(tmp_path):
    src = tmp_path / "src"
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for top in sorted({p.split(".")[0] for p in packages}):
        shutil.copytree(ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    sh(*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src)
    (wheel,) = (tmp_path / "dist").glob("tracetune-*.whl")

    venv = tmp_path / "fresh"
    sh(sys.executable, "-m", "venv", "--without-pip", venv)
    sh(*pip, "--python", venv / "bin" / "python", "install", "--no-deps", wheel)
    site = Path(
        sh(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    )
    # the dependencies come from the test environment's site-packages, the package itself from the wheel
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    write_varied(work / "traces")
    where = sh(venv / "bin" / "python", "-c", "import curation, tracetune; print(curation.__file__)", cwd=work)
    assert Path(where.stdout.strip()).is_relative_to(site)
    tt = venv / "bin" / "tracetune"
    ingested = json.loads(sh(tt, "ingest", "traces", "--db", "t.duckdb", "--json", cwd=work).stdout)
    assert ingested["accepted"] == 14 and ingested["quarantined"] == 0
    curated = json.loads(sh(tt, "curate", "--db", "t.duckdb", "--out", "ds", "--json", cwd=work).stdout)
    assert curated["train"] + curated["holdout"] == 14 and curated["dataset"]["version"] == 1
    assert (work / "ds" / "latest" / "report.html").read_text().lower().startswith("<!doctype html>")
    sh(tt, "init", "tt.yaml", cwd=work)
    shown = json.loads(sh(tt, "config", "show", "--config", "tt.yaml", "--json", cwd=work).stdout)
    assert shown["config_hash"] == json.loads(sh(tt, "config", "show", "--json", cwd=work).stdout)["config_hash"]
    # the deployments ship with the package: `tracetune deploy/serve` find them outside a checkout
    served = sh(
        venv / "bin" / "python",
        "-c",
        "from pathlib import Path; from flows.deployments import read, to_served; "
        "from tracetune.commands.orchestration import PACKAGED_FILE; "
        "print(len(to_served(read(PACKAGED_FILE, Path('.'), None))))",
        cwd=work,
    )
    assert served.stdout.strip().splitlines()[-1] == "5"
