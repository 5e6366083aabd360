"""End-to-end curation benchmark: `tracetune curate` (ingest excluded) on sample-like records.

Records are made by the sample generator (data/generate_samples.py): the ticket-triage app's
e-mails with planted PII, secrets, retries, near-duplicates, sessions, tool calls, failures and
feedback, written as OpenAI chat logs. The store is filled by `tracetune ingest` first (not
timed); then `tracetune curate --json` runs in its own process and each stage's wall time and the
peak RSS of the process and of its worker processes are reported. Target on a 2-core machine:
under 5 minutes and under 4 GiB for 100,000 records.

    python benchmarks/curate.py --records 100000
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "data"))
TRACETUNE = Path(sys.executable).parent / "tracetune"


def make_records(n: int, path: Path, seed: int = 11) -> int:
    """Write about `n` sample-like OpenAI log records to `path` (JSONL); returns the count."""
    import generate_samples as g

    rng = random.Random(seed)
    clock = g.Clock(rng)
    written = 0
    with path.open("w", encoding="utf-8") as f:
        k = 0
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
            for rec in g.openai_records(rng, g.plan_calls(rng, clock, emails, allow_tools=True)):
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                written += 1
    return written


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--config", type=Path, default=None, help="tracetune YAML config (default: the embedded one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        src = t / "logs.jsonl"
        started = time.perf_counter()
        n = make_records(args.records, src)
        print(f"generated {n:,} records ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f}s")
        db = t / "bench.duckdb"
        cfg = ["--config", str(args.config)] if args.config else []
        subprocess.run(
            [str(TRACETUNE), "ingest", str(src), "--db", str(db), "--json", *cfg], check=True, capture_output=True
        )
        started = time.perf_counter()
        proc = subprocess.Popen(
            [str(TRACETUNE), "curate", "--db", str(db), "--out", str(t / "ds"), "--json", *cfg],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = {"tree": 0, "largest": 0}
        watcher = threading.Thread(target=_watch, args=(proc.pid, peak), daemon=True)
        watcher.start()
        out, err = proc.communicate()
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"curate failed ({proc.returncode}): {err[-2000:]}")
        summary = json.loads(out)
    stages = {
        "dedupe": summary["dedupe"]["seconds"],
        "redact": summary["redact"]["seconds"],
        "filter": summary["filter"]["seconds"],
        "split + leakage": summary["split"]["seconds"] + summary["split"]["leakage"]["seconds"],
        "filter+checks+split (all)": summary["select_seconds"],
        "export + report": summary.get("export_seconds", 0.0),
    }
    print(
        f"records {n:,} -> traces {summary['traces']:,} -> train {summary['train']:,} / holdout {summary['holdout']:,}"
    )
    for name, sec in stages.items():
        print(f"  {name:<28} {sec:8.1f} s")
    accounted = sum(stages[k] for k in ("dedupe", "redact", "filter+checks+split (all)", "export + report"))
    print(f"  {'start-up, leak gate, other':<28} {wall - accounted:8.1f} s")
    print(f"curate wall time {wall:.1f} s (target < 300 s): {'met' if wall < 300 else 'NOT met'}")
    print(
        f"peak RSS: whole process tree {peak['tree'] / 2**20:.0f} MiB (target < 4096 MiB), "
        f"largest single process {peak['largest'] / 2**20:.0f} MiB"
    )
    print(
        json.dumps(
            {
                "records": n,
                "wall_s": round(wall, 1),
                "stages_s": stages,
                "peak_rss_tree_mib": round(peak["tree"] / 2**20),
                "redact": {k: summary["redact"][k] for k in ("texts", "distinct_texts")},
            }
        )
    )


if __name__ == "__main__":
    main()
