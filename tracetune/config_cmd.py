"""`tracetune init` (a commented starter config) and `tracetune config show` (the effective config)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from schemas.config import ConfigError, config_hash, load_config
from schemas.starter import starter_yaml
from tracetune.options import ConfigOpt
from tracetune.output import emit_json, err, fail, safe

app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True, add_completion=False)


def init(
    path: Annotated[Path, typer.Argument(help="Where to write the starter config.")] = Path("tracetune.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter config: every key at its default with its description, and recipes
    for the usual fine-tuning goals (JSON output with a schema, replacing a long production prompt,
    tool use, one language, your own identifiers). It loads to exactly the built-in defaults."""
    if path.exists() and not force:
        fail(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(starter_yaml(), encoding="utf-8")
    err.print(
        f"wrote {safe(path)}; edit it, then: tracetune ingest TRACES... && tracetune curate --config {safe(path)}",
        highlight=False,
    )


@app.command("show")
def show(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of YAML.")] = False,
) -> None:
    """Print the effective configuration (defaults merged with --config) and its hash, the one every
    output (manifest, training run, eval run) records."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        fail(str(exc))
    values = cfg.model_dump(mode="json")
    digest = config_hash(cfg)
    if as_json:
        emit_json({"config_hash": digest, "source": str(config or "defaults"), "config": values})
        return
    sys.stdout.write(f"# effective config from {config or 'the built-in defaults'}; config_hash {digest}\n")
    sys.stdout.write(yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=110))
