"""`tracetune review`: approve or reject a dataset version before it is trained, from the shell."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from schemas.config import DEFAULT_DB
from tracetune.options import DEFAULT_OUT, DbOpt, JsonOpt, OutOpt
from tracetune.output import emit_json, err, fail, records_table, safe, say

app = typer.Typer(
    help="Review dataset versions: a pipeline run with pipeline.require_approval waits (suspended) until a "
    "version is approved or rejected here or in the Prefect UI's form. Exclusions hold for every later version.",
    no_args_is_help=True,
)

VersionArg = Annotated[int, typer.Argument(help="Dataset version number (the N of OUT/vNNNN).", min=1)]
NoteOpt = Annotated[str, typer.Option("--note", help="Why; kept in the manifest and the lineage.")]
ReviewerOpt = Annotated[str | None, typer.Option("--reviewer", help="Who decides (default: your login name).")]


def _decide(
    version: int, approve: bool, exclude: list[str], note: str, reviewer: str | None, db: Path, out: Path
) -> dict[str, Any]:
    from curation import review
    from curation.store import Store, StoreError

    who = reviewer or getpass.getuser()
    try:
        with Store(db) as store:
            waiting = review.pending_run(store, version)
            done = review.record(
                store, out, version, "approve" if approve else "reject", reviewer=who, note=note, exclude=exclude
            )
    except (StoreError, review.ReviewError) as exc:
        fail(str(exc))
    result: dict[str, Any] = {"version": version, **done.model_dump(mode="json"), "resumed": None, "event": None}
    if not os.environ.get("PREFECT_API_URL"):
        if waiting:  # recorded, but the suspended run cannot be told: say so instead of leaving it waiting silently
            err.print(
                f"warning: recorded, but the pipeline run {waiting} that waits for v{version} was not resumed: "
                "PREFECT_API_URL is not set; resume it in the Prefect UI (it takes this recorded decision)",
                highlight=False,
                soft_wrap=True,
            )
        return result
    try:
        if waiting:
            from uuid import UUID

            from prefect.flow_runs import resume_flow_run

            resume_flow_run(
                UUID(waiting), run_input={"approve": approve, "exclude": done.excluded, "note": note, "reviewer": who}
            )
            result["resumed"] = waiting
        elif approve:
            from flows.events import DATASET_APPROVED, announce_dataset
            from schemas.dataset import version_dir

            announce_dataset(version_dir(out, version), str(db), DATASET_APPROVED)
            result["event"] = DATASET_APPROVED
    except Exception as exc:  # the decision is recorded; only the notification failed
        err.print(f"warning: recorded, but Prefect was not told: {type(exc).__name__}: {safe(exc)}", highlight=False)
    return result


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    excluded = f", {len(result['excluded'])} trace(s) excluded from later versions" if result["excluded"] else ""
    say(f"dataset v{result['version']}: {result['decision']} by {result['reviewer']}{excluded}")
    if result["resumed"]:
        say(f"resumed the waiting pipeline run {result['resumed']}")
    elif result["event"]:
        say(f"no pipeline run was waiting; emitted {result['event']} (the train-on-new-dataset deployment reacts)")


@app.command()
def approve(
    version: VersionArg,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Trace id to leave out (repeatable).")] = None,
    note: NoteOpt = "",
    reviewer: ReviewerOpt = None,
    db: DbOpt = DEFAULT_DB,
    out: OutOpt = DEFAULT_OUT,
    as_json: JsonOpt = False,
) -> None:
    """Approve VERSION for training (with --exclude, the next version leaves those traces out and carries the
    approval); a pipeline run waiting for it resumes."""
    _report(_decide(version, True, exclude or [], note, reviewer, db, out), as_json)


@app.command()
def reject(
    version: VersionArg,
    note: NoteOpt = "",
    reviewer: ReviewerOpt = None,
    db: DbOpt = DEFAULT_DB,
    out: OutOpt = DEFAULT_OUT,
    as_json: JsonOpt = False,
) -> None:
    """Reject VERSION: a pipeline run waiting for it stops before training."""
    _report(_decide(version, False, [], note, reviewer, db, out), as_json)


@app.command("list")
def list_cmd(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Dataset versions with their rows and review state (pending = a pipeline run waits for it)."""
    from curation import review
    from curation.store import Store, StoreError

    try:
        with Store(db, read_only=True) as store:
            rows = review.listing(store)
    except StoreError as exc:
        fail(str(exc))
    if as_json:
        emit_json({"versions": rows})
        return
    records_table(rows, ["version", "train_rows", "holdout_rows", "review", "reviewer", "note"], "dataset versions")
