"""Scale-out benchmark: the curate flow with its partition work on a real Dask LocalCluster of 1 and of
2 single-threaded workers (prefect-dask, a temporary Prefect server), beside the same flow run
locally (this machine's processes), on the same sample-shaped records ingested once.

For each Dask run it prints the wall seconds of the stages, the seconds the workers spent inside the
partition work (`curation.exchange.process_file`), the orchestration overhead (wall time of the
stages not covered by partition work or by the flow's own database work, as a share of the wall
time), and whether train/holdout are byte-identical to the local run's. The peer is the 1-worker run:
the speed-up 1 -> 2 workers is the figure, in all and per stage.

    python benchmarks/scale.py --records 200000 [--partition-rows 5000]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
if "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="tt-scale-prefect-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], True)
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

COMPARED = ("train.jsonl", "holdout.jsonl", "trace_ids.json")


class CpuMeter:
    """Core-seconds used by this process and by each kind of descendant while it runs (the
    descendants' last sample before they exit: at most 0.5 s of each is missed)."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.seen: dict[int, tuple[str, float]] = {}
        self.before = {p.pid: _cpu(p) for p in self.me.children(recursive=True)}
        self.own = _cpu(self.me)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        import psutil

        while not self.done.is_set():
            for p in self.me.children(recursive=True):
                try:
                    kind = "server" if "uvicorn" in " ".join(p.cmdline()) or "server" in p.name() else "workers"
                    self.seen[p.pid] = (kind, _cpu(p) - self.before.get(p.pid, 0.0))
                except psutil.Error:
                    continue
            time.sleep(0.5)

    def stop(self) -> dict[str, float]:
        """{"flow", "workers", "server"} core-seconds since the meter started."""
        self.done.set()
        self.thread.join()
        used = {"flow": _cpu(self.me) - self.own, "workers": 0.0, "server": 0.0}
        for kind, sec in self.seen.values():
            used[kind] += sec
        return used


def _cpu(p: Any) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def run(db: Path, out: Path, dask: str, config: str) -> dict[str, Any]:
    from flows.curate import curate_flow

    meter = CpuMeter()
    started = time.perf_counter()
    summary = curate_flow(None, str(db), config, out=str(out), announce=False, dask=dask)
    wall = time.perf_counter() - started
    cpu = meter.stop()
    stages = sum(s["seconds"] for s in summary["stages"].values())
    used = summary.get("dask", {"worker_seconds": 0.0, "partitions": 0})
    return {
        "wall": wall,
        "stages": stages,
        "per_stage": {name: s["seconds"] for name, s in summary["stages"].items()},
        "compute": used["worker_seconds"],
        "partitions": used["partitions"],
        "cpu": cpu,
        "analyzed": summary["stages"]["redact"]["detail"].get("analyzed", 0),
    }


def same(a: Path, b: Path) -> bool:
    return all((a / "latest" / n).read_bytes() == (b / "latest" / n).read_bytes() for n in COMPARED)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--partition-rows", type=int, default=5000, help="curate.partition_rows (partitions per stage)")
    args = ap.parse_args()
    from curate import ingest, make_records
    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory(prefix="tt-scale-") as tmp_name, prefect_test_harness(server_startup_timeout=180):
        tmp = Path(tmp_name)
        src = tmp / "records.jsonl"
        make_records(args.records, src)
        config = tmp / "config.yaml"
        config.write_text(f"curate:\n  partition_rows: {args.partition_rows}\n")
        ingest([src], tmp / "base.duckdb", [])
        results, cores = {}, os.cpu_count() or 1
        for label, dask in (("local", ""), ("dask-1", "local:1"), ("dask-2", "local:2")):
            db = tmp / f"{label}.duckdb"
            shutil.copy(tmp / "base.duckdb", db)
            results[label] = r = run(db, tmp / f"{label}-ds", dask, str(config))
            line = f"{label:7s}: stages {r['stages']:8.1f}s (flow wall {r['wall']:.1f}s)"
            if dask:
                workers = int(dask.split(":")[1])
                r["overhead"] = max(0.0, 1 - r["compute"] / (r["stages"] * workers))
                line += (
                    f", partition work {r['compute']:.1f} worker-s in {r['partitions']} partitions, idle or "
                    f"orchestration share {r['overhead']:.1%}, dataset identical to local: "
                    f"{same(tmp / 'local-ds', tmp / f'{label}-ds')}"
                )
            print(line, flush=True)
            print("         " + ", ".join(f"{name} {sec:.1f}s" for name, sec in r["per_stage"].items()), flush=True)
            cpu = r["cpu"]
            r["cpu_total"] = total = sum(cpu.values())
            print(
                f"         CPU core-s: flow process {cpu['flow']:.1f}, workers {cpu['workers']:.1f}, Prefect server "
                f"{cpu['server']:.1f}; total {total:.1f} = {total / (cores * r['wall']):.0%} of {cores} cores x wall; "
                f"texts analyzed for PII {r['analyzed']:,}",
                flush=True,
            )
        one, two = results["dask-1"], results["dask-2"]
        print(f"speed-up 1 -> 2 workers: {one['stages'] / two['stages']:.2f}x")
        floor = two["cpu_total"] / cores
        print(
            f"  the 2-worker run needed {two['cpu_total']:.1f} core-s: on {cores} cores no less than "
            f"{floor:.1f}s of wall, a speed-up of at most {one['wall'] / floor:.2f}x over the 1-worker run's wall"
        )
        ratios = {n: one["per_stage"][n] / max(two["per_stage"][n], 1e-9) for n in one["per_stage"]}
        print("  per stage: " + ", ".join(f"{n} {x:.2f}x" for n, x in ratios.items()))


if __name__ == "__main__":
    main()
