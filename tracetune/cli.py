"""The `tracetune` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from curation.ingest.formats import NAMES, help_text
from schemas.config import DEFAULT_DB, ConfigError, load_config
from tracetune import config_cmd
from tracetune.output import (
    curate_summary,
    err,
    fail,
    ingest_summary,
    leak_warning,
    print_eval_summary,
    train_summary,
)

if TYPE_CHECKING:
    from curation.ingest.run import IngestStats

# The heavy modules (DuckDB, the ingest pipeline) are imported inside the commands: parser worker
# processes re-import this module when they start, and should not pay for them.

DATA = Path(__file__).resolve().parent.parent / "data"  # in a checkout: the demo's samples and config
SAMPLES = DATA / "samples"
DEMO_CONFIG = DATA / "demo.yaml"

app = typer.Typer(
    help="Turn production LLM chat traces into fine-tuning datasets and LoRA adapters.\n\n"
    "Trace formats read by `ingest` (auto-detected per record):\n\n" + help_text().replace("\n", "\n\n"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("init")(config_cmd.init)
app.add_typer(config_cmd.app, name="config")


def _run_ingest(paths: list[Path], db: Path, fmt: str, config: Path | None, quiet: bool) -> IngestStats:
    from curation.ingest.run import ingest
    from curation.store import Store, StoreError
    from curation.workers import WorkerError

    try:
        cfg = load_config(config)
        with Store(db) as store:
            bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
                disable=quiet or not err.is_terminal,
            )
            tasks: dict[str, Any] = {}

            def progress(file: str, done: int, total: int) -> None:
                if file not in tasks:
                    tasks[file] = bar.add_task(Path(file).name[-40:], total=total)
                bar.update(tasks[file], completed=done)

            with bar:
                return ingest(store, [str(p) for p in paths], fmt, cfg.ingest, progress)
    except (StoreError, ConfigError, FileNotFoundError, ValueError, WorkerError) as exc:
        fail(str(exc))


DbOpt = Annotated[Path, typer.Option("--db", help="DuckDB database file (created if missing).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object with the counts on stdout.")]
ConfigOpt = config_cmd.ConfigOpt


@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Trace files or directories (walked recursively).")],
    db: DbOpt = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help=f"auto, or force one of: {', '.join(NAMES)}.")] = "auto",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Read trace files into the DuckDB store; unusable records go to `quarantine` with a reason.

    Files may be .jsonl, .json (one object or an array), .parquet, and gzip or zstd compressed; a
    directory is walked. Re-ingesting an unchanged file is a no-op (its sha256 is recorded); a changed
    file adds only records not already stored. Counts reconcile:
    records = accepted + already_present + quarantined.

    Batch API input and output files are joined on custom_id: ingest them in the same call.
    """
    stats = _run_ingest(paths, db, fmt, config, quiet=False)
    if as_json:
        sys.stdout.write(json.dumps({"db": str(db), **stats.as_dict()}) + "\n")
    else:
        ingest_summary(stats, db)


OutOpt = Annotated[
    Path, typer.Option("--out", help="Dataset folder: versions go to OUT/v0001, ...; OUT/latest is the newest.")
]
DEFAULT_OUT = Path("data/dataset")


@app.command()
def curate(
    db: DbOpt = DEFAULT_DB, config: ConfigOpt = None, out: OutOpt = DEFAULT_OUT, as_json: JsonOpt = False
) -> None:
    """Curate the ingested traces into a dataset version: dedupe (exact, prefix chains, MinHash
    near-duplicates), redact PII and secrets with presidio, run the leak gate, apply the quality
    rules (`tracetune rules`), check every row against OpenAI's fine-tuning format, split
    train/holdout by session/user/duplicate cluster (a trace once in holdout stays there) and
    check the split for leakage.

    Writes OUT/vNNNN/{train,holdout}.jsonl, trace_ids.json, manifest.json, README.md (dataset
    card), report.html and report.json, only when the rows changed since the latest version.
    A trace the leak gate flags (PII or a secret left after redaction) is quarantined, listed by id
    and entity type, and the run goes on (exit 0 with a warning); with redact.leak_gate: fail it
    stops the run (exit 3). A train/holdout leak (exit 4) stops the run with the trace ids.
    An empty store (nothing ingested yet) is an error (exit 2)."""
    summary = _run_curate(db, config, out)
    if as_json:
        sys.stdout.write(json.dumps({"db": str(db), **summary}) + "\n")
        if summary.get("leak_gate", {}).get("leaks"):
            leak_warning(summary["leak_gate"])
    else:
        curate_summary(summary)


def _run_curate(db: Path, config: Path | None, out: Path | None) -> dict[str, Any]:
    from curation import curate as curate_lib
    from curation.leakgate import LeakError
    from curation.split import LeakageError
    from curation.store import Store, StoreError
    from curation.workers import WorkerError

    try:
        cfg = load_config(config)
        with Store(db) as store, err.status("curating: dedupe, redact, leak gate, rules, split, export..."):
            return curate_lib.run(store, cfg, out)
    except LeakError as exc:
        fail(str(exc), code=3)
    except LeakageError as exc:
        fail(str(exc), code=4)
    except (StoreError, ConfigError, ValueError, WorkerError, OSError) as exc:
        fail(str(exc))


@app.command()
def rules(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List the quality rules in the order they run, with their reason codes, config keys
    (section `filter:`) and the values in effect (the defaults, or those of --config). The first
    rule that drops a trace gives its reason."""
    from curation.filters import RULES

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        fail(str(exc))
    values = cfg.filter.model_dump(mode="json")
    rows = [
        {
            "rule": r.name,
            "group": r.group,
            "reasons": list(r.reasons),
            "keys": {k: values[k] for k in r.keys},
            "description": r.description,
        }
        for r in RULES
    ]
    if as_json:
        sys.stdout.write(json.dumps({"rules": rows, "disabled_by_key": "filter.disabled"}) + "\n")
        return
    t = Table(title="quality rules (config section filter:)", header_style="bold", show_lines=True)
    for col in ("rule", "group", "reason codes", "config keys = value", "what it drops"):
        t.add_column(col)
    for row in rows:
        keys = "\n".join(f"{k} = {json.dumps(v)[:60]}" for k, v in row["keys"].items()) or "-"
        t.add_row(row["rule"], row["group"], "\n".join(row["reasons"]), escape(keys), row["description"])
    Console(emoji=False).print(t)
    Console(emoji=False).print("Switch a rule off with filter.disabled: [name, ...].")


@app.command()
def train(
    dataset: Annotated[Path, typer.Option("--dataset", help="Dataset version folder, or a dataset root (its latest).")],
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Adapter folder (default: <version>/adapter).")] = None,
    base: Annotated[str | None, typer.Option("--base", help="Base model: folder, .gguf or hub id.")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="Record the run in this DuckDB store.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")] = False,
    merge: Annotated[bool, typer.Option("--merge", help="Also write base+adapter merged into <out>/merged.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """LoRA SFT of the base model (default: embedded SmolLM2-135M-Instruct) on a dataset version.

    Loss only on assistant turns whose weight is not 0; settings from the config's train: section.
    Writes the PEFT adapter, tokenizer and training_run.json (lineage, metrics curve, tokens/s)."""
    summary, result = _run_train(dataset, config, out, base, db, resume, merge)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    train_summary(result)


def _run_train(
    dataset: Path, config: Path | None, out: Path | None, base: str | None, db: Path | None, resume: bool, merge: bool
) -> tuple[dict[str, Any], Any]:
    from schemas.dataset import DatasetError, resolve_version_dir
    from training.model import ModelError
    from training.sft import TrainError
    from training.sft import train as train_lib

    bar = Progress(
        TextColumn("training"),
        BarColumn(),
        TextColumn("step {task.completed}/{task.total} loss {task.fields[loss]} {task.fields[tps]} tok/s"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task("train", total=None, loss="-", tps="-")

    def progress(p: dict[str, Any]) -> None:
        loss = f"{p['loss']:.3f}" if p["loss"] is not None else "-"
        bar.update(task, completed=p["step"], total=p["max_steps"], loss=loss, tps=f"{p['tokens_per_s']:.0f}")

    import datasets
    import transformers

    datasets.disable_progress_bars()  # the training bar below says what happens; theirs only repeat "100%"
    transformers.utils.logging.disable_progress_bar()
    try:
        cfg = load_config(config)
        target = out or resolve_version_dir(dataset) / "adapter"
        with bar:
            result = train_lib(dataset, target, cfg, base=base, db=db, resume=resume, merge=merge, progress=progress)
    except (TrainError, DatasetError, ModelError, ConfigError) as exc:
        fail(str(exc))
    r = result.run
    summary = {
        "adapter": str(result.adapter_dir),
        "merged": r.get("merged_dir"),
        "steps": r["steps"],
        "train_loss": r["train_loss"],
        "eval_loss": r["eval_loss"],
        "eval_token_accuracy": r["eval_token_accuracy"],
        "tokens_per_s": r["tokens_per_s"],
        "wall_seconds": r["wall_seconds"],
        "device": r["device"]["type"],
        "rows": r["rows"],
    }
    return summary, result


@app.command()
def evaluate(
    adapter: Annotated[Path, typer.Option("--adapter", help="Adapter folder written by `tracetune train`.")],
    dataset: Annotated[Path, typer.Option("--dataset", help="Dataset version folder, or a dataset root (its latest).")],
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: <adapter>/eval).")] = None,
    base: Annotated[str | None, typer.Option("--base", help="Base model: folder, .gguf or hub id.")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="Record the run in this DuckDB store (eval_runs).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare the base model and the adapter on the dataset's holdout, paired (one load, adapter off vs on).

    Teacher-forced loss and token accuracy on the assistant tokens; greedy answers scored by exact match, JSON
    parse rate, schema validity, per-field accuracy, ROUGE-L, refusal rate, length and latency; paired bootstrap
    intervals of adapter minus base; a promotion verdict from the config's evaluate: section.
    Writes eval.json and eval.html; the verdict is reported, not an exit code."""
    from training.evaluate import summary

    result = _run_evaluate(adapter, dataset, config, out, base, db)
    short = {"eval_json": str(result.out_dir / "eval.json"), "eval_html": str(result.out_dir / "eval.html")}
    short.update(summary(result.report))
    if as_json:
        sys.stdout.write(json.dumps(short) + "\n")
        return
    print_eval_summary(result.report, result.out_dir)


def _run_evaluate(
    adapter: Path, dataset: Path, config: Path | None, out: Path | None, base: str | None, db: Path | None
) -> Any:
    from training.evaluate import EvalError
    from training.evaluate import evaluate as evaluate_lib

    bar = Progress(
        TextColumn("generating ({task.fields[stage]})"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task("eval", total=None, stage="-")

    def progress(stage: str, done: int, total: int) -> None:
        bar.update(task, completed=done, total=total, stage=stage)

    try:
        cfg = load_config(config)
        with bar:
            result = evaluate_lib(adapter, dataset, cfg, out=out, base=base, db=db, progress=progress)
    except (EvalError, ConfigError) as exc:
        fail(str(exc))
    return result


@app.command()
def quarantine(
    db: DbOpt = DEFAULT_DB,
    code: Annotated[str | None, typer.Option("--code", help="Only this reason code (e.g. invalid_json).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List quarantined records: file name and line first, then the reason code and the message naming
    the field (ingest) or the stage's reason (redact, leak gate). --json gives full paths and excerpts."""
    from curation.store import Store, StoreError

    try:
        with Store(db, read_only=True) as store:
            found = store.con.execute(
                "SELECT source_file, source_line, code, message, excerpt FROM quarantine "
                "WHERE ? IS NULL OR code = ? ORDER BY source_file, source_line LIMIT ?",
                [code, code, limit],
            ).fetchall()
    except StoreError as exc:
        fail(str(exc))
    keys = ("source_file", "source_line", "code", "message", "excerpt")
    if as_json:
        for r in found:
            sys.stdout.write(json.dumps(dict(zip(keys, r, strict=True))) + "\n")
        return
    t = Table(header_style="bold")
    t.add_column("file:line", overflow="fold")
    t.add_column("code", no_wrap=True)
    t.add_column("message", overflow="fold")
    for f, n, c, m, _ in found:
        t.add_row(escape(f"{Path(f).name}:{n}"), c, escape(m))
    Console(emoji=False).print(t)
    folders = sorted({str(Path(f).parent) for f, *_ in found})
    if folders:
        Console(emoji=False).print(f"in: {escape(', '.join(folders))} (full paths with --json)", highlight=False)


@app.command()
def demo(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Run the main job on the embedded sample traces (data/samples of a checkout) with the demo's config
    (data/demo.yaml: the sample app's JSON schema, prompt, language and ids): ingest, curate (dedupe,
    redact, leak gate, rules, split, export) into data/dataset, train a LoRA adapter of the embedded
    SmolLM2-135M-Instruct on the latest version, and evaluate base vs adapter on its holdout (same short
    system prompt on both sides)."""
    from training.evaluate import summary as eval_summary

    if not (SAMPLES.is_dir() and DEMO_CONFIG.is_file()):
        fail(f"{SAMPLES} or {DEMO_CONFIG} not found: the demo runs from a checkout of the repository (make demo)")
    stats = _run_ingest([SAMPLES], db, "auto", DEMO_CONFIG, quiet=False)
    summary = _run_curate(db, DEMO_CONFIG, DEFAULT_OUT)
    if not as_json:
        ingest_summary(stats, db)
        curate_summary(summary)
    trained, result = _run_train(DEFAULT_OUT, DEMO_CONFIG, None, None, db, False, False)
    if not as_json:
        train_summary(result)
    evaluated = _run_evaluate(result.adapter_dir, DEFAULT_OUT, DEMO_CONFIG, None, None, db)
    if as_json:
        payload = {"db": str(db), "ingest": stats.as_dict(), "curate": summary, "training": trained}
        payload["evaluate"] = eval_summary(evaluated.report)
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    print_eval_summary(evaluated.report, evaluated.out_dir)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
