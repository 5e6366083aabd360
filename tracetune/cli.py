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

if TYPE_CHECKING:
    from curation.ingest.run import IngestStats

# The heavy modules (DuckDB, the ingest pipeline) are imported inside the commands: parser worker
# processes re-import this module when they start, and should not pay for them.

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"

app = typer.Typer(
    help="Turn production LLM chat traces into fine-tuning datasets and LoRA adapters.\n\n"
    "Trace formats read by `ingest` (auto-detected per record):\n\n" + help_text().replace("\n", "\n\n"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, emoji=False)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


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
        _fail(str(exc))
        raise AssertionError from exc  # unreachable: _fail exits


def _summary(stats: IngestStats, db: Path) -> None:
    out = Console(emoji=False)
    out.print(
        f"[bold]ingested[/] {stats.files} file(s) into {db} in {stats.seconds:.1f}s "
        f"({stats.files_skipped} unchanged, skipped)"
    )
    t = Table(show_header=True, header_style="bold")
    t.add_column("records", justify="right")
    t.add_column("accepted", justify="right")
    t.add_column("already present", justify="right")
    t.add_column("quarantined", justify="right")
    t.add_row(str(stats.records), str(stats.accepted), str(stats.already_present), str(stats.quarantined))
    out.print(t)
    if stats.by_format:
        out.print("accepted by format: " + ", ".join(f"{k} {v}" for k, v in stats.by_format.most_common()))
    if stats.quarantine_reasons:
        out.print("quarantined by reason: " + ", ".join(f"{k} {v}" for k, v in stats.quarantine_reasons.most_common()))
        out.print(f"see them with: tracetune quarantine --db {db}")


DbOpt = Annotated[Path, typer.Option("--db", help="DuckDB database file (created if missing).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object with the counts on stdout.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config (default: data/tracetune.yaml).")]


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
        _summary(stats, db)


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
    A leak-gate hit (exit 3) or a train/holdout leak (exit 4) stops the run with the trace ids."""
    summary = _run_curate(db, config, out)
    if as_json:
        sys.stdout.write(json.dumps({"db": str(db), **summary}) + "\n")
    else:
        _curate_summary(summary)


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
        _fail(str(exc), code=3)
    except LeakageError as exc:
        _fail(str(exc), code=4)
    except (StoreError, ConfigError, ValueError, WorkerError, OSError) as exc:
        _fail(str(exc))
    raise AssertionError("unreachable")


def _curate_summary(summary: dict[str, Any]) -> None:
    out = Console(emoji=False)
    d, r, f = summary["dedupe"], summary["redact"], summary["filter"]
    t = Table(title="curation", header_style="bold")
    for col in ("stage", "in", "kept", "dropped / found", "seconds"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    dropped = d["exact_duplicates"] + d["prefix_of"] + d["near_duplicates"]
    t.add_row(
        "dedupe",
        str(d["traces"]),
        str(d["kept"]),
        f"exact {d['exact_duplicates']}, prefix_of {d['prefix_of']}, near {d['near_duplicates']} (total {dropped})",
        f"{d['seconds']:.1f}",
    )
    found = ", ".join(f"{k} {v}" for k, v in sorted(r["entities"].items(), key=lambda kv: -kv[1]))
    t.add_row(
        "redact", str(r["traces"]), str(r["redacted"] + r["already_redacted"]), found or "-", f"{r['seconds']:.1f}"
    )
    if "leak_gate" in summary:
        t.add_row(
            "leak gate", str(summary["leak_gate"]["checked"]), str(summary["leak_gate"]["checked"]), "0 leaks", ""
        )
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(f["reasons"].items(), key=lambda kv: -kv[1]))
    t.add_row("filter", str(f["traces"]), str(f["kept"]), reasons or "-", f"{f['seconds']:.1f}")
    x = summary["export_checks"]
    bad = ", ".join(f"{k} {v}" for k, v in x["reasons"].items())
    t.add_row("export checks", str(x["rows"]), str(x["valid"]), bad or "-", "")
    s = summary["split"]
    t.add_row(
        "split",
        str(s["train"] + s["holdout"]),
        f"{s['train']} / {s['holdout']}",
        f"train / holdout; {s['sticky']} kept their side; leakage check passed",
        f"{s['seconds']:.1f}",
    )
    out.print(t)
    if "dataset" in summary:
        ds = summary["dataset"]
        what = "new version" if ds["changed"] else "unchanged, still version"
        out.print(f"dataset: {what} {ds['version']} at {ds['path']} (report.html there)")


@app.command()
def rules(as_json: JsonOpt = False) -> None:
    """List the quality rules in the order they run, with their reason codes, config keys
    (section `filter:`) and defaults. The first rule that drops a trace gives its reason."""
    from curation.filters import RULES
    from schemas.config import FilterConfig

    defaults = FilterConfig().model_dump(mode="json")
    rows = [
        {
            "rule": r.name,
            "group": r.group,
            "reasons": list(r.reasons),
            "keys": {k: defaults[k] for k in r.keys},
            "description": r.description,
        }
        for r in RULES
    ]
    if as_json:
        sys.stdout.write(json.dumps({"rules": rows, "disabled_by_key": "filter.disabled"}) + "\n")
        return
    t = Table(title="quality rules (config section filter:)", header_style="bold", show_lines=True)
    for col in ("rule", "group", "reason codes", "config keys = default", "what it drops"):
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
    _print_train(result)


def _print_train(result: Any) -> None:
    r = result.run
    rows = r["rows"]["train"]
    Console(emoji=False).print(
        f"[bold]adapter[/] {escape(str(result.adapter_dir))}: {r['steps']} steps on {r['device']['type']} in "
        f"{r['wall_seconds']:.0f}s ({r['tokens_per_s'] or 0:.0f} tok/s); train loss {r['train_loss']:.3f}, "
        f"eval loss {r['eval_loss'] if r['eval_loss'] is None else round(r['eval_loss'], 3)}; "
        f"rows {rows['kept']}/{rows['rows']} (truncated {rows['truncated']}, dropped: cut off "
        f"{rows['dropped_truncated']}, nothing to learn {rows['no_trainable']})"
    )


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
        _fail(str(exc))
        raise AssertionError from exc
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
        _fail(str(exc))
        raise AssertionError from exc
    return result


def print_eval_summary(report: dict[str, Any], out_dir: Path) -> None:
    """The eval verdict and metrics table on the terminal (also the end of `tracetune demo`)."""
    v = report["verdict"]
    t = Table(title=f"base vs adapter on {report['n']} holdout examples", header_style="bold")
    for col in ("metric", "n", "base", "adapter", "adapter - base", "95% interval"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for name, m in report["metrics"].items():
        if m["base"] is None:
            t.add_row(name, str(m["n"]), "-", "-", "-", "-")
        else:
            ci = f"[{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]"
            t.add_row(name, str(m["n"]), f"{m['base']:.3f}", f"{m['adapter']:.3f}", f"{m['diff']:+.3f}", ci)
    c = Console(emoji=False)
    c.print(t)
    word = "[bold green]promote[/]" if v["promote"] else "[bold red]do not promote[/]"
    c.print(f"verdict: {word}")
    for r in v["reasons"]:
        c.print(f"  - {escape(r)}")
    c.print(f"report: {escape(str(out_dir / 'eval.html'))}")


@app.command()
def quarantine(
    db: DbOpt = DEFAULT_DB,
    code: Annotated[str | None, typer.Option("--code", help="Only this reason code (e.g. invalid_json).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List quarantined records: file, line, reason code and the message naming the field."""
    from curation.store import Store, StoreError

    try:
        with Store(db, read_only=True) as store:
            found = store.con.execute(
                "SELECT source_file, source_line, code, message, excerpt FROM quarantine "
                "WHERE ? IS NULL OR code = ? ORDER BY source_file, source_line LIMIT ?",
                [code, code, limit],
            ).fetchall()
    except StoreError as exc:
        _fail(str(exc))
    keys = ("source_file", "source_line", "code", "message", "excerpt")
    if as_json:
        for r in found:
            sys.stdout.write(json.dumps(dict(zip(keys, r, strict=True))) + "\n")
        return
    t = Table(header_style="bold")
    for col in ("file:line", "code", "message"):
        t.add_column(col)
    for f, n, c, m, _ in found:
        t.add_row(f"{f}:{n}", c, m)
    Console(emoji=False).print(t)


@app.command()
def demo(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Run the main job on the embedded sample traces (data/samples) with the default config: ingest,
    curate (dedupe, redact, leak gate, rules, split, export) into data/dataset, train a LoRA adapter
    of the embedded SmolLM2-135M-Instruct on the latest version, and evaluate base vs adapter on its
    holdout (same short system prompt on both sides)."""
    from training.evaluate import summary as eval_summary

    stats = _run_ingest([SAMPLES], db, "auto", None, quiet=False)
    summary = _run_curate(db, None, DEFAULT_OUT)
    if not as_json:
        _summary(stats, db)
        _curate_summary(summary)
    trained, result = _run_train(DEFAULT_OUT, None, None, None, db, False, False)
    if not as_json:
        _print_train(result)
    evaluated = _run_evaluate(result.adapter_dir, DEFAULT_OUT, None, None, None, db)
    if as_json:
        payload = {"db": str(db), "ingest": stats.as_dict(), **summary, "train": trained}
        payload["evaluate"] = eval_summary(evaluated.report)
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    print_eval_summary(evaluated.report, evaluated.out_dir)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
