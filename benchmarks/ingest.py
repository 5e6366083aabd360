"""Ingest benchmark: tracetune's ingest vs DuckDB's own `read_json` on the same OpenAI-log file.

The peer is what a user would do by hand: load the JSONL into a raw DuckDB table with no
normalization, validation or quarantine. Both run as child processes; peak RSS is the sampled
sum over each process tree (tracetune's parser workers included).

    python benchmarks/ingest.py                      # 200,000 records, 3 runs each, medians
    python benchmarks/ingest.py --gb 2 --runs 1      # a ~2 GB input for the memory target
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

WORDS = [
    "order",
    "refund",
    "shipping",
    "package",
    "tracking",
    "delivered",
    "damaged",
    "return",
    "label",
    "account",
    "password",
    "charge",
    "card",
    "invoice",
    "exchange",
    "size",
    "color",
    "tent",
    "jacket",
    "boots",
    "backpack",
    "stove",
    "late",
    "missing",
    "warehouse",
    "courier",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def write_log(path: Path, records: int, seed: int = 7) -> int:
    """OpenAI request/response log lines with ~4 messages each; returns bytes written."""
    rng = random.Random(seed)
    system = "You are a support triage assistant. " + " ".join(sentence(rng, 12) for _ in range(6))
    with path.open("w", encoding="utf-8") as f:
        for i in range(records):
            rec = {
                "timestamp": f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
                "request": {
                    "model": "gpt-4.1",
                    "temperature": 0,
                    "user": f"cust-{i % 5000}",
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": " ".join(sentence(rng, rng.randrange(8, 20)) for _ in range(4))},
                        {"role": "assistant", "content": sentence(rng, 12)},
                    ],
                },
                "response": {
                    "id": f"chatcmpl-{i:012d}",
                    "object": "chat.completion",
                    "created": 1790000000 + i,
                    "model": "gpt-4.1-2025-04-14",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": sentence(rng, 30)},
                        }
                    ],
                    "usage": {"prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340},
                },
                "session_id": f"sess-{i // 3}",
            }
            f.write(json.dumps(rec) + "\n")
    return path.stat().st_size


def measure(cmd: list[str]) -> tuple[float, int, str]:
    """Run a command; return (wall seconds, peak RSS of its process tree in bytes, stdout)."""
    peak = 0
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    t.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{err[-2000:]}")
    return wall, peak, out


PEER = """
import duckdb, sys
con = duckdb.connect(sys.argv[2])
con.execute("SET enable_progress_bar = false")
con.execute("CREATE TABLE raw AS SELECT * FROM read_json(?, format='newline_delimited')", [sys.argv[1]])
print(con.execute("SELECT count(*) FROM raw").fetchone()[0])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--gb", type=float, default=None, help="size the input in GB instead of records")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--config", default=None, help="tracetune YAML config for the ingest side")
    args = ap.parse_args()
    tracetune = str(Path(sys.executable).with_name("tracetune"))
    with tempfile.TemporaryDirectory(prefix="tt-bench-") as tmp:
        src = Path(tmp) / "openai_logs.jsonl"
        records = args.records
        if args.gb:
            per = write_log(src, 2000) / 2000
            records = int(args.gb * 1e9 / per)
        size = write_log(src, records)
        print(f"input: {records:,} records, {size / 1e6:,.0f} MB ({src.name})")
        ours, peers = [], []
        for run in range(args.runs):
            for db in Path(tmp).glob("*.duckdb*"):
                db.unlink()
            extra = ["--config", args.config] if args.config else []
            wall, rss, out = measure([tracetune, "ingest", str(src), "--db", f"{tmp}/ours.duckdb", "--json", *extra])
            stats = json.loads(out)
            assert stats["accepted"] == records, stats
            ours.append((wall, rss))
            wall_p, rss_p, out_p = measure([sys.executable, "-c", PEER, str(src), f"{tmp}/peer.duckdb"])
            assert int(out_p) == records
            peers.append((wall_p, rss_p))
            print(
                f"run {run + 1}: tracetune {records / wall:,.0f} rec/s ({wall:.1f}s, {rss / 2**20:,.0f} MiB) | "
                f"duckdb read_json {records / wall_p:,.0f} rec/s ({wall_p:.1f}s, {rss_p / 2**20:,.0f} MiB)"
            )
        w, r = statistics.median(x[0] for x in ours), max(x[1] for x in ours)
        wp, rp = statistics.median(x[0] for x in peers), max(x[1] for x in peers)
        print(
            f"median tracetune ingest : {records / w:,.0f} records/s, peak RSS {r / 2**20:,.0f} MiB (end to end, "
            "process start included)"
        )
        print(f"median duckdb read_json : {records / wp:,.0f} records/s, peak RSS {rp / 2**20:,.0f} MiB (raw load)")
        print(f"ratio (duckdb time / tracetune time): {wp / w:.2f}  -> tracetune is {w / wp:.2f}x the raw load's time")


if __name__ == "__main__":
    main()
