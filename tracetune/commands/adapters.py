"""`tracetune adapters`: the registry of adapters per dataset name, its `current` pointer, promotion and rollback."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer

from schemas.config import DEFAULT_DB, ConfigError, load_config
from tracetune.options import ConfigOpt, DbOpt, JsonOpt
from tracetune.output import emit_json, fail, records_table, say

app = typer.Typer(
    help="Adapters trained per dataset name: which one is current (ADAPTERS/<name>/current), promotion after a "
    "winning evaluation, rollback to the previous one (which is always kept).",
    no_args_is_help=True,
)
NameOpt = Annotated[str, typer.Option("--name", help="Dataset name (export.name of the config).")]
RootOpt = Annotated[
    Path | None, typer.Option("--adapters", help="Adapters folder (default: the config's pipeline.adapters_dir).")
]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (required with --force; kept in the history).")]


def _root(adapters: Path | None, config: Path | None) -> Path:
    if adapters is not None:
        return adapters
    try:
        return Path(load_config(config).pipeline.adapters_dir)
    except ConfigError as exc:
        fail(str(exc))


def _call(db: Path, fn: Any, *args: Any, **kw: Any) -> Any:
    from curation.store import Store, StoreError
    from training.registry import RegistryError

    try:
        with Store(db) as store:
            return fn(store, *args, **kw)
    except (StoreError, RegistryError) as exc:
        fail(str(exc))


@app.command("list")
def list_cmd(
    name: Annotated[str | None, typer.Option("--name", help="Only this dataset name.")] = None,
    db: DbOpt = DEFAULT_DB,
    adapters: RootOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Registered adapters, newest first, with their latest evaluation verdict and which one is current."""
    from training import registry

    rows = _call(db, registry.listing, _root(adapters, config), name)
    if as_json:
        emit_json({"adapters": rows})
        return
    for r in rows:
        r["current"] = "current" if r["current"] else ""
        r["verdict"] = {True: "promote", False: "do not promote", None: "not evaluated"}[r["promote"]]
    records_table(rows, ["name", "adapter_dir", "dataset_version", "verdict", "current", "registered_at"], "adapters")


@app.command()
def promote(
    adapter: Annotated[Path, typer.Argument(help="Adapter folder (written by `tracetune train` or the pipeline).")],
    force: Annotated[bool, typer.Option("--force", help="Promote without a promote verdict (needs --reason).")] = False,
    reason: ReasonOpt = None,
    db: DbOpt = DEFAULT_DB,
    adapters: RootOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make ADAPTER the current one of its dataset name; only after its latest evaluation said promote
    (`tracetune evaluate --db`), unless --force --reason."""
    from training import registry

    done = _call(
        db, registry.promote, _root(adapters, config), adapter, force=force, reason=reason, actor=getpass.getuser()
    )
    if as_json:
        emit_json(done)
    elif done["changed"]:
        say(f"{done['name']}: current is now {done['current']} (previous: {done['previous'] or 'none'}, kept)")
    else:
        say(f"{done['name']}: {done['current']} is already current")


@app.command()
def rollback(
    name: NameOpt = "tracetune",
    reason: ReasonOpt = None,
    db: DbOpt = DEFAULT_DB,
    adapters: RootOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point `current` back at the adapter that was current before this one."""
    from training import registry

    done = _call(db, registry.rollback, _root(adapters, config), name, reason=reason, actor=getpass.getuser())
    if as_json:
        emit_json(done)
    else:
        say(f"{done['name']}: current is now {done['current']} (was {done['previous']})")
