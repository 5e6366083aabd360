"""Typer option aliases and paths shared by the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DATA = Path(__file__).resolve().parent.parent / "data"  # in a checkout: the demo's samples and config
SAMPLES = DATA / "samples"
DEMO_CONFIG = DATA / "demo.yaml"

DEFAULT_OUT = Path("data/dataset")

DbOpt = Annotated[Path, typer.Option("--db", help="DuckDB database file (created if missing).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object with the counts on stdout.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="YAML config (default: the built-in defaults; `tracetune init` writes them)."),
]
OutOpt = Annotated[
    Path, typer.Option("--out", help="Dataset folder: versions go to OUT/v0001, ...; OUT/latest is the newest.")
]
