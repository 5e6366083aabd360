"""What the commands print: summaries, tables, JSON lines, progress bars (plain progress lines off a terminal)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from training.progress_lines import ProgressLog

if TYPE_CHECKING:
    from curation.ingest.run import IngestStats

err = Console(stderr=True, emoji=False)

# C0/C1 controls (ESC starts ANSI CSI/OSC sequences), DEL, and the bidi controls that reorder what a terminal shows
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def plain(value: object, newlines: bool = True) -> str:
    """`value` as text safe for a terminal: control and bidi characters shown as escapes (`\\x1b`, `\\u202e`),
    so trace text, file names and ids print as data; without `newlines`, line breaks are escaped too."""
    text = str(value)
    if not newlines:
        text = text.replace("\r\n", "\n").replace("\n", "\\n").replace("\r", "\\r")
    return _CONTROLS.sub(lambda m: ascii(m.group())[1:-1], text)


def safe(value: object) -> str:
    """`plain(value)` with rich markup escaped: for interpolating data into a rich `print`."""
    return escape(plain(value))


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear error line on stderr (controls and line breaks escaped) and exit with `code`."""
    err.print(f"[bold red]error:[/] {escape(plain(message, newlines=False))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def emit_json(obj: Any) -> None:
    """Write `obj` as one JSON line on stdout."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


def _bar(*columns: ProgressColumn | str, quiet: bool = False) -> Progress:
    """A transient progress bar on stderr, shown only on a terminal."""
    return Progress(*columns, console=err, transient=True, disable=quiet or not err.is_terminal)


def _plain_log() -> ProgressLog | None:
    """Plain progress lines on stderr when it is not a terminal (CI, a worker's log), else None (the bar)."""
    if err.is_terminal:
        return None

    def write(line: str) -> None:
        err.file.write(line + "\n")
        err.file.flush()

    return ProgressLog(write)


def ingest_progress(quiet: bool) -> tuple[Progress, Callable[[str, int, int], None]]:
    """The ingest bar (one task per file, in bytes) and its callback `progress(file, done, total)`."""
    bar = _bar(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        quiet=quiet,
    )
    tasks: dict[str, TaskID] = {}

    def progress(file: str, done: int, total: int) -> None:
        if file not in tasks:
            tasks[file] = bar.add_task(Path(file).name[-40:], total=total)
        bar.update(tasks[file], completed=done)

    return bar, progress


def curate_progress() -> tuple[Progress, Callable[[str, int, int], None]]:
    """The curation bar (one task per stage that has work, in traces) and its callback
    `progress(stage, done, total)`; plain lines on stderr when it is not a terminal."""
    bar = _bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    tasks: dict[str, TaskID] = {}
    plain = _plain_log()

    def progress(stage: str, done: int, total: int) -> None:
        if plain is not None:
            plain.write(f"curate: {stage} {done:,}/{total:,} traces")
            return
        if stage not in tasks:
            tasks[stage] = bar.add_task(f"curate: {stage}", total=total)
        bar.update(tasks[stage], completed=done)

    return bar, progress


def train_progress() -> tuple[Progress, Callable[[dict[str, Any]], None]]:
    """The training bar (step, loss, tokens/s) and its callback `progress(p)`; off a terminal, plain lines."""
    bar = _bar(
        TextColumn("training"),
        BarColumn(),
        TextColumn("step {task.completed}/{task.total} loss {task.fields[loss]} {task.fields[tps]} tok/s"),
        TimeRemainingColumn(),
    )
    task = bar.add_task("train", total=None, loss="-", tps="-")
    plain = _plain_log()

    def progress(p: dict[str, Any]) -> None:
        loss = f"{p['loss']:.3f}" if p["loss"] is not None else "-"
        bar.update(task, completed=p["step"], total=p["max_steps"], loss=loss, tps=f"{p['tokens_per_s']:.0f}")
        if plain:
            plain.training(p)

    return bar, progress


def eval_progress() -> tuple[Progress, Callable[[str, int, int], None]]:
    """The evaluation bar (stage and count) and its callback `progress(stage, done, total)`; off a terminal,
    plain lines."""
    bar = _bar(
        TextColumn("generating ({task.fields[stage]})"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
    )
    task = bar.add_task("eval", total=None, stage="-")
    plain = _plain_log()

    def progress(stage: str, done: int, total: int) -> None:
        bar.update(task, completed=done, total=total, stage=stage)
        if plain:
            plain.evaluation(stage, done, total)

    return bar, progress


def rules_table(rows: list[dict[str, Any]]) -> None:
    """The quality rules, in the order they run, as a table on stdout."""
    t = Table(title="quality rules (config section filter:)", header_style="bold", show_lines=True)
    for col in ("rule", "group", "reason codes", "config keys = value", "what it drops"):
        t.add_column(col)
    for row in rows:
        keys = "\n".join(f"{k} = {json.dumps(v)[:60]}" for k, v in row["keys"].items()) or "-"
        t.add_row(row["rule"], row["group"], "\n".join(row["reasons"]), safe(keys), row["description"])
    Console(emoji=False).print(t)
    Console(emoji=False).print("Switch a rule off with filter.disabled: [name, ...].")


def quarantine_table(found: list[tuple[Any, ...]]) -> None:
    """Quarantined records (file, line, code, message, excerpt) as a table, then the folders they are in."""
    t = Table(header_style="bold")
    t.add_column("file:line", overflow="fold")
    t.add_column("code", no_wrap=True)
    t.add_column("message", overflow="fold")
    for f, n, c, m, _ in found:
        t.add_row(safe(f"{Path(f).name}:{n}"), safe(c), safe(m))
    Console(emoji=False).print(t)
    folders = sorted({str(Path(f).parent) for f, *_ in found})
    if folders:
        Console(emoji=False).print(f"in: {safe(', '.join(folders))} (full paths with --json)", highlight=False)


def leak_warning(gate: dict[str, Any]) -> None:
    """Warn on stderr about the traces the leak gate quarantined: ids and entity types, never values."""
    listed = gate["listed"]
    err.print(
        f"[bold yellow]warning:[/] the leak gate quarantined {gate['leaks']} trace(s) whose redacted text still "
        "holds PII or secrets (stage leak_gate; the run went on without them):",
        highlight=False,
    )
    for q in listed:
        err.print(f"  {safe(q['trace_id'])}: {safe(', '.join(q['types']))}", highlight=False)
    if gate["leaks"] > len(listed):
        err.print(f"  ... and {gate['leaks'] - len(listed)} more (tracetune quarantine --code ...)", highlight=False)


def ingest_summary(stats: IngestStats, db: Path) -> None:
    """The ingest counts on the terminal."""
    out = Console(emoji=False)
    out.print(
        f"[bold]ingested[/] {stats.files} file(s) into {safe(db)} in {stats.seconds:.1f}s "
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
        out.print(f"see them with: tracetune quarantine --db {safe(db)}", highlight=False)


def curate_summary(summary: dict[str, Any]) -> None:
    """The curation funnel, stage by stage, on the terminal; leak-gate hits listed by id and type."""
    from curation import funnel

    out = Console(emoji=False)
    t = Table(title="curation", header_style="bold")
    for col in ("stage", "in", "kept", "dropped", "seconds"):
        t.add_column(col, justify="left" if col in ("stage", "dropped") else "right")
    stages = summary["stages"]
    seconds = {funnel.LABELS.get(k, k): v["seconds"] for k, v in stages.items()}
    for row in funnel.rows(stages):
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(row["dropped"].items(), key=lambda kv: -kv[1]))
        sec = seconds.get(row["stage"], stages["split"]["seconds"] if row["stage"] == "train" else None)
        t.add_row(row["stage"], str(row["in"]), str(row["out"]), safe(dropped) or "-", f"{sec:.1f}" if sec else "")
    out.print(t)
    found = stages["redact"]["detail"].get("entities") or {}
    if found:
        out.print("redacted: " + ", ".join(f"{k} {v}" for k, v in sorted(found.items(), key=lambda kv: -kv[1])))
    gate = stages["leak_gate"]["detail"]
    if gate.get("leaks"):
        leak_warning(gate)
    if "dataset" in summary:
        ds = summary["dataset"]
        what = "new version" if ds["changed"] else "unchanged, still version"
        out.print(f"dataset: {what} {ds['version']} at {safe(ds['path'])} (report.html there)", highlight=False)
    out.print(f"curated in {summary['seconds']:.1f}s", highlight=False)


def train_summary(result: Any) -> None:
    """One line on the trained adapter."""
    r = result.run
    rows = r.rows["train"]
    eval_loss = "-" if r.eval_loss is None else round(r.eval_loss, 3)
    Console(emoji=False).print(
        f"[bold]adapter[/] {safe(str(result.adapter_dir))}: {r.steps} steps on {r.device.type} ({r.device.dtype}) "
        f"in {r.wall_seconds:.0f}s ({r.tokens_per_s or 0:.0f} tok/s, peak RSS {r.peak_rss_mb or 0:.0f} MiB); "
        f"train loss {r.train_loss:.3f}, eval loss {eval_loss}; rows {rows.kept}/{rows.rows} (truncated "
        f"{rows.truncated}, dropped: cut off {rows.dropped_truncated}, nothing to learn {rows.no_trainable})"
    )


def print_eval_summary(report: Any, out_dir: Path) -> None:
    """The eval verdict and metrics table of an `EvalRun` on the terminal (also the end of `tracetune demo`)."""
    v = report.verdict
    t = Table(title=f"base vs adapter on {report.n} holdout examples", header_style="bold")
    for col in ("metric", "n", "base", "adapter", "adapter - base", "95% interval"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for name, m in report.metrics.items():
        if m.base is None:
            t.add_row(name, str(m.n), "-", "-", "-", "-")
        else:
            ci = f"[{m.ci[0]:+.3f}, {m.ci[1]:+.3f}]"
            t.add_row(name, str(m.n), f"{m.base:.3f}", f"{m.adapter:.3f}", f"{m.diff:+.3f}", ci)
    c = Console(emoji=False)
    c.print(t)
    word = "[bold green]promote[/]" if v.promote else "[bold red]do not promote[/]"
    c.print(f"verdict: {word}")
    for r in v.reasons:
        c.print(f"  - {safe(r)}")
    c.print(f"report: {safe(str(out_dir / 'eval.html'))}")


def records_table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    """Rows (dicts) as a table with the given columns; None shows as '-'. Nothing to show: a one-line note."""
    out = Console(emoji=False)
    if not rows:
        out.print(f"{title or 'nothing'}: none yet", highlight=False)
        return
    t = Table(title=title, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(safe("-" if row.get(c) is None else str(row.get(c))) for c in columns))
    out.print(t)


def say(message: str) -> None:
    """One line of plain output on stdout (markup-free)."""
    Console(emoji=False).print(safe(message), highlight=False, soft_wrap=True)
