"""Near-duplicate benchmark: tracetune's MinHash + LSH path vs the straightforward datasketch path.

Synthetic conversations (user + assistant text) with planted near-duplicate clusters whose exact
word-3-gram Jaccard similarity is known. Both sides get the same texts, threshold 0.8 and 128
permutations; each runs in its own process (peak RSS measured there).

  peer:      datasketch `MinHash(num_perm=128)` + `update_batch` per document, `MinHashLSH.insert`
             for every document, then `lsh.query` for every document (pairs = query results)
  rensa:     rensa's bulk path (Rust): `RMinHash.from_token_sets` (128 permutations) over the same
             word 3-grams, `RMinHashLSH` with 16 bands of 8 rows, `insert_pairs` then `query_all`, each
             candidate pair checked by its signature Jaccard (`jaccard` >= threshold), as tracetune does
  tracetune: `curation.dedupe.near_duplicate_clusters` (numba shingling + signatures, LSH by
             sorting band keys, signature-verified candidates, union-find; pairs = within clusters)

    python benchmarks/dedupe.py                         # 100,000 records
    python benchmarks/dedupe.py --records 1000000 --only tracetune    # the 8 GiB check
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

THRESHOLD, NUM_PERM, K = 0.8, 128, 3
SIDES = ("tracetune", "datasketch", "rensa")


def shingle_set(text: str) -> set[str]:
    w = text.split()
    return {" ".join(w[i : i + K]) for i in range(len(w) - K + 1)} or {text}


def jaccard(a: str, b: str) -> float:
    x, y = shingle_set(a), shingle_set(b)
    return len(x & y) / len(x | y)


def make_corpus(n: int, seed: int = 11) -> tuple[list[str], list[list[int]]]:
    """n documents; ~18% of them belong to planted clusters of 2-4 near-copies of one base text."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(30000)])
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 0.8
    weights /= weights.sum()
    docs: list[str] = []
    clusters: list[list[int]] = []
    while len(docs) < n:
        length = int(rng.integers(60, 160))
        base = list(rng.choice(vocab, length, p=weights))
        if rng.random() < 0.08 and len(docs) + 4 <= n:
            members = [len(docs)]
            docs.append(" ".join(base))
            for _ in range(int(rng.integers(1, 4))):
                target = float(rng.choice([0.95, 0.9, 0.85, 0.8, 0.7]))
                # replacing m separated words removes ~K*m shingles of ~length: J ~ (L-Km)/(L+Km)
                m = max(1, round(length * (1 - target) / (K * (1 + target))))
                copy = list(base)
                for pos in rng.choice(length, m, replace=False):
                    copy[pos] = f"x{rng.integers(1_000_000)}"
                members.append(len(docs))
                docs.append(" ".join(copy))
            clusters.append(members)
        else:
            docs.append(" ".join(base))
    return docs[:n], clusters


def truth_pairs(docs: list[str], clusters: list[list[int]]) -> dict[tuple[int, int], float]:
    return {(a, b): jaccard(docs[a], docs[b]) for members in clusters for a, b in combinations(members, 2)}


def run_peer(docs: list[str]) -> set[tuple[int, int]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    sigs = []
    for i, text in enumerate(docs):
        w = text.split()
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([" ".join(w[j : j + K]).encode() for j in range(len(w) - K + 1)] or [text.encode()])
        lsh.insert(i, m)
        sigs.append(m)
    pairs = set()
    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    return pairs


def run_rensa(docs: list[str]) -> set[tuple[int, int]]:
    from rensa import RMinHash, RMinHashLSH

    shingles = []
    for text in docs:
        w = text.split()
        shingles.append([" ".join(w[j : j + K]) for j in range(len(w) - K + 1)] or [text])
    sigs = RMinHash.from_token_sets(shingles, NUM_PERM, 42)
    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=16)
    lsh.insert_pairs(list(enumerate(sigs)))
    pairs = set()
    for i, candidates in enumerate(lsh.query_all(sigs)):
        for j in candidates:
            if j > i and sigs[i].jaccard(sigs[j]) >= THRESHOLD:
                pairs.add((i, j))
    return pairs


def run_ours(docs: list[str]) -> set[tuple[int, int]]:
    from curation.dedupe import near_duplicate_clusters
    from schemas.config import DedupeConfig

    cfg = DedupeConfig(threshold=THRESHOLD, num_perm=NUM_PERM, shingle_size=K, verify="signature")
    labels = near_duplicate_clusters(docs, cfg).labels
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(i)
    return {(a, b) for g in groups.values() if len(g) > 1 for a, b in combinations(g, 2)}


def _child(which: str, path: str, out: str) -> None:
    docs = json.loads(Path(path).read_text())
    if which == "tracetune":
        run_ours(docs[:100])  # compile the numba kernels outside the timed region
    start = time.perf_counter()
    pairs = {"tracetune": run_ours, "datasketch": run_peer, "rensa": run_rensa}[which](docs)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    Path(out).write_text(json.dumps({"seconds": seconds, "rss": rss, "pairs": sorted(pairs)}))


def measure(which: str, path: str, tmp: str) -> dict:
    out = f"{tmp}/{which}.json"
    proc = multiprocessing.get_context("spawn").Process(target=_child, args=(which, path, out))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"{which} failed (exit {proc.exitcode})")
    return json.loads(Path(out).read_text())


def score(pairs: set[tuple[int, int]], truth: dict[tuple[int, int], float], docs: list[str]) -> dict[str, float]:
    """Recall on planted pairs by Jaccard band; precision two ways: a predicted pair is right when
    both documents come from the same planted cluster (the planted truth), and, stricter, only when
    their exact Jaccard also reaches the threshold (pairs joined through a third copy count wrong)."""
    high = [p for p, j in truth.items() if j >= 0.9]
    mid = [p for p, j in truth.items() if 0.8 <= j < 0.9]
    planted = sum(p in truth for p in pairs)
    strict = sum(truth[p] >= THRESHOLD if p in truth else jaccard(docs[p[0]], docs[p[1]]) >= THRESHOLD for p in pairs)
    return {
        "pairs": len(pairs),
        "recall_j>=0.9": sum(p in pairs for p in high) / max(1, len(high)),
        "recall_0.8<=j<0.9": sum(p in pairs for p in mid) / max(1, len(mid)),
        "precision": planted / max(1, len(pairs)),
        "precision_j>=0.8": strict / max(1, len(pairs)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--only", choices=SIDES, default=None)
    args = ap.parse_args()
    docs, clusters = make_corpus(args.records)
    truth = truth_pairs(docs, clusters)
    print(
        f"corpus: {len(docs):,} records, {len(clusters):,} planted clusters, {len(truth):,} planted pairs "
        f"({sum(j >= 0.9 for j in truth.values()):,} with J>=0.9, "
        f"{sum(0.8 <= j < 0.9 for j in truth.values()):,} with 0.8<=J<0.9, "
        f"{sum(j < 0.8 for j in truth.values()):,} below the threshold)"
    )
    with tempfile.TemporaryDirectory(prefix="tt-dedupe-") as tmp:
        path = f"{tmp}/docs.json"
        Path(path).write_text(json.dumps(docs))
        results = {}
        for which in SIDES:
            if args.only and which != args.only:
                continue
            r = measure(which, path, tmp)
            s = score({tuple(p) for p in r["pairs"]}, truth, docs)
            results[which] = r
            print(
                f"{which:10s}: {len(docs) / r['seconds']:>9,.0f} records/s ({r['seconds']:.1f}s), peak RSS "
                f"{r['rss'] / 2**20:,.0f} MiB, pairs {s['pairs']:,}, precision {s['precision']:.4f} "
                f"(J>=0.8: {s['precision_j>=0.8']:.4f}), "
                f"recall J>=0.9 {s['recall_j>=0.9']:.4f}, recall 0.8-0.9 {s['recall_0.8<=j<0.9']:.4f}"
            )
        for peer in [w for w in results if w != "tracetune"]:
            if "tracetune" in results:
                print(
                    f"throughput ratio (tracetune / {peer}): "
                    f"{results[peer]['seconds'] / results['tracetune']['seconds']:.2f}x"
                )


if __name__ == "__main__":
    main()
