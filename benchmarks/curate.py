"""End-to-end curation benchmark: `tracetune curate` (ingest excluded) on two corpora, full and incremental.

Corpora (--corpus, default both), written as OpenAI chat-completions logs:
  sample    the sample generator's records (data/generate_samples.py): the ticket-triage app's
            templated e-mails with planted PII, secrets, retries, near-duplicates, sessions, tool
            calls, failures and feedback. Most texts repeat, which flatters redaction.
  distinct  benchmarks/distinct_corpus.py: real English sentences (Python's documentation and
            docstrings, one word swapped per sentence), about 96 % of the non-system message texts
            distinct, 3 long shared system prompts, 1-4 exchanges, long-tailed lengths, PII in about
            a quarter of the traces, a few % retries, near-duplicates and prefix chains.

Per corpus, --records N records are generated and ingested by `tracetune ingest` (not timed); then
`tracetune curate --json` runs in its own process, and its wall time, records/s, each stage's
seconds (the summary's `stages`, or the older per-stage keys) and the peak RSS of the process tree
and of its largest single process (the redaction workers are child processes) are reported.

With --incremental K, K new records (new ids, later timestamps) are then ingested into the same
store and curated again into the same output folder, timed the same way and given as a % of the
full run; then a fresh store is built from both files (the union) and curated from scratch, and
train.jsonl, holdout.jsonl and trace_ids.json of the latest version of both output folders are
compared byte for byte. One JSON line per corpus ends the output.
Target on a 2-core machine: under 5 minutes and under 4 GiB for 100,000 records.

    python benchmarks/curate.py --records 100000
    python benchmarks/curate.py --records 20000 --corpus distinct --incremental 2000 --partition-rows 5000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "data"))
sys.path.insert(0, str(ROOT / "benchmarks"))
TRACETUNE = Path(sys.executable).parent / "tracetune"
COMPARED = ("train.jsonl", "holdout.jsonl", "trace_ids.json")


def make_records(n: int, path: Path, seed: int = 11, start: int = 0) -> int:
    """Write `n` sample-like OpenAI log records to `path` (JSONL); returns the count.

    `start` > 0 continues a corpus of `start` records: another random stream (so new response ids,
    which are the trace ids), e-mail numbers (user ids) from `start` on and a clock that begins after
    the first corpus's last call (a call advances it by at most 600 s)."""
    import generate_samples as g

    rng = random.Random(seed if start == 0 else f"{seed}/{start}")
    clock = g.Clock(rng)
    clock.t = g.START + timedelta(seconds=600 * start)
    written = 0
    with path.open("w", encoding="utf-8") as f:
        k = start
        while written < n:
            emails = []
            for _ in range(1000):
                e = g.make_email(rng, k)
                emails.append(e)
                if rng.random() < 0.08:
                    d = g.near_duplicate(rng, e, k)
                    d.key = e.key + "n"
                    emails.append(d)
                k += 1
            for rec in g.openai_records(rng, g.plan_calls(rng, clock, emails, allow_tools=True))[: n - written]:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                written += 1
    return written


def generate(corpus: str, n: int, path: Path, start: int = 0) -> int:
    if corpus == "distinct":
        from distinct_corpus import make_distinct_records

        return make_distinct_records(n, path, start=start)
    return make_records(n, path, start=start)


def _watch(pid: int, peak: dict[str, int]) -> None:
    """Sample the RSS of a process and its descendants (the redaction workers) every 0.2 s."""
    import psutil

    try:
        root = psutil.Process(pid)
        while root.is_running():
            procs = [root, *root.children(recursive=True)]
            rss = []
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    rss.append(p.memory_info().rss)
            peak["tree"] = max(peak["tree"], sum(rss))
            peak["largest"] = max(peak["largest"], max(rss, default=0))
            time.sleep(0.2)
    except psutil.Error:
        return


def ingest(paths: list[Path], db: Path, cfg: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [str(TRACETUNE), "ingest", *map(str, paths), "--db", str(db), "--json", *cfg], capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"ingest failed ({proc.returncode}): {proc.stderr[-2000:]}")
    res = json.loads(proc.stdout)
    print(
        f"  ingested {res.get('records', 0):,} records: accepted {res.get('accepted', 0):,}, "
        f"quarantined {res.get('quarantined', 0):,}, already present {res.get('already_present', 0):,}"
    )
    return res


def curate(db: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    """Run `tracetune curate --json` in a child process; its summary, wall seconds and peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(TRACETUNE), "curate", "--db", str(db), "--out", str(out), "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = {"tree": 0, "largest": 0}
    threading.Thread(target=_watch, args=(proc.pid, peak), daemon=True).start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"curate failed ({proc.returncode}): {stderr[-2000:]}")
    return {"summary": json.loads(stdout), "wall": wall, "peak": peak}


def stage_seconds(summary: dict[str, Any]) -> dict[str, float]:
    """Seconds per stage: from `stages` (name -> {..., "seconds"}) when present, else the older keys."""
    stages = summary.get("stages")
    if isinstance(stages, dict):
        return {name: float(st.get("seconds", 0.0)) for name, st in stages.items() if isinstance(st, dict)}

    def sec(key: str) -> float:
        return float((summary.get(key) or {}).get("seconds", 0.0))

    split = summary.get("split") or {}
    return {
        "dedupe": sec("dedupe"),
        "redact": sec("redact"),
        "filter": sec("filter"),
        "split + leakage": sec("split") + float((split.get("leakage") or {}).get("seconds", 0.0)),
        "filter+checks+split (all)": float(summary.get("select_seconds", 0.0)),
        "export + report": float(summary.get("export_seconds", 0.0)),
    }


def _accounted(summary: dict[str, Any], stages: dict[str, float]) -> float:
    if isinstance(summary.get("stages"), dict):
        return sum(stages.values())
    return sum(stages[k] for k in ("dedupe", "redact", "filter+checks+split (all)", "export + report"))


def report(label: str, records: int, run: dict[str, Any]) -> dict[str, Any]:
    """Print one curate run's figures; return them for the JSON line."""
    s, wall, peak = run["summary"], run["wall"], run["peak"]
    stages = stage_seconds(s)
    print(
        f"  {label}: records {records:,} -> traces {s.get('traces', 0):,} -> train {s.get('train', 0):,} / "
        f"holdout {s.get('holdout', 0):,}"
    )
    print(f"    curate wall {wall:.1f} s, {records / wall:,.0f} records/s")
    for name, sec in stages.items():
        print(f"    {name:<28} {sec:8.1f} s")
    print(f"    {'start-up, other':<28} {wall - _accounted(s, stages):8.1f} s")
    print(
        f"    peak RSS: process tree {peak['tree'] / 2**20:.0f} MiB, largest single process "
        f"{peak['largest'] / 2**20:.0f} MiB"
    )
    redact = (s.get("stages") or {}).get("redact") or s.get("redact") or {}
    return {
        "records": records,
        "traces": s.get("traces"),
        "train": s.get("train"),
        "holdout": s.get("holdout"),
        "wall_s": round(wall, 1),
        "records_per_s": round(records / wall, 1),
        "stages_s": {k: round(v, 2) for k, v in stages.items()},
        "peak_rss_tree_mib": round(peak["tree"] / 2**20),
        "peak_rss_largest_mib": round(peak["largest"] / 2**20),
        "redact": {k: redact[k] for k in ("texts", "distinct_texts") if k in redact},
    }


def compare(a: Path, b: Path) -> dict[str, bool]:
    """Byte-for-byte equality of the compared files of the latest versions of two dataset folders."""
    out = {}
    for name in COMPARED:
        fa, fb = a / "latest" / name, b / "latest" / name
        out[name] = fa.is_file() and fb.is_file() and fa.read_bytes() == fb.read_bytes()
    return out


def bench(corpus: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    print(f"[{corpus}]")
    cfg = ["--config", str(args.config)] if args.config else []
    extra = [*cfg, *(["--partition-rows", str(args.partition_rows)] if args.partition_rows is not None else [])]
    src, db, out = tmp / f"{corpus}.jsonl", tmp / f"{corpus}.duckdb", tmp / f"{corpus}-ds"
    started = time.perf_counter()
    n = generate(corpus, args.records, src)
    print(f"  generated {n:,} records ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s")
    ingest([src], db, cfg)
    full = curate(db, out, extra)
    result = {"corpus": corpus, **report("full", n, full)}
    print(
        f"  curate wall time {result['wall_s']:.1f} s (target < 300 s for 100,000 records): "
        f"{'met' if result['wall_s'] < 300 else 'NOT met'}; peak RSS target < 4096 MiB: "
        f"{'met' if result['peak_rss_tree_mib'] < 4096 else 'NOT met'}"
    )
    if args.incremental > 0:
        src2 = tmp / f"{corpus}-more.jsonl"
        k = generate(corpus, args.incremental, src2, start=n)
        ingest([src2], db, cfg)
        again = curate(db, out, extra)
        inc = report("incremental", k, again)
        inc["pct_of_full"] = round(100 * again["wall"] / full["wall"], 1)
        print(f"    incremental curate took {inc['pct_of_full']} % of the full run's time")
        union_db, union_out = tmp / f"{corpus}-union.duckdb", tmp / f"{corpus}-union-ds"
        ingest([src, src2], union_db, cfg)
        union = report("union from scratch", n + k, curate(union_db, union_out, extra))
        files = compare(out, union_out)
        inc.update(union_wall_s=union["wall_s"], union_traces=union["traces"], files_identical=files)
        inc["identical"] = all(files.values())
        print(
            f"  incremental vs union from scratch: {'IDENTICAL' if inc['identical'] else 'DIFFERENT'} "
            + ", ".join(f"{name} {'same' if same else 'differs'}" for name, same in files.items())
        )
        if not inc["identical"]:
            explain_difference(db, out, union_db, union_out)
        result["incremental"] = inc
    return result


def explain_difference(db_a: Path, out_a: Path, db_b: Path, out_b: Path, shown: int = 5) -> None:
    """Print the traces whose side differs between two dataset versions, with their decisions."""
    import duckdb

    ids_a, ids_b = (json.loads((o / "latest" / "trace_ids.json").read_text()) for o in (out_a, out_b))
    for side in sorted(set(ids_a) | set(ids_b)):
        a, b = set(ids_a.get(side, [])), set(ids_b.get(side, []))
        for label, only in (("incremental only", a - b), ("from scratch only", b - a)):
            if not only:
                continue
            print(f"    {side}: {len(only)} trace(s) {label}")
            for tid in sorted(only)[:shown]:
                for name, db in (("incremental", db_a), ("from scratch", db_b)):
                    with duckdb.connect(str(db), read_only=True) as con:
                        row = con.execute(
                            "SELECT stage, verdict, reason, detail FROM decisions WHERE trace_id = ?", [tid]
                        ).fetchall()
                    print(f"      {tid} {name}: {row}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=["sample", "distinct", "both"], default="both")
    ap.add_argument("--records", type=int, default=100_000, help="records per corpus (default 100000)")
    ap.add_argument(
        "--incremental",
        type=int,
        default=0,
        metavar="K",
        help="then ingest K new records, curate again and compare with a union run (default 0: off)",
    )
    ap.add_argument(
        "--partition-rows",
        type=int,
        default=None,
        metavar="R",
        help="passed to `tracetune curate --partition-rows` (default: not passed)",
    )
    ap.add_argument("--config", type=Path, default=None, help="tracetune YAML config (default: the embedded one)")
    args = ap.parse_args()
    corpora = ["sample", "distinct"] if args.corpus == "both" else [args.corpus]
    results = []
    for corpus in corpora:
        with tempfile.TemporaryDirectory(prefix=f"tracetune-bench-{corpus}-") as tmp:
            results.append(bench(corpus, args, Path(tmp)))
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
