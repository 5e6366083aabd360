"""The dedupe stage: exact duplicates, prefix chains of multi-turn calls, and near-duplicates
(MinHash + LSH), with a configurable policy for which copy survives.

Reads `traces`, writes `dup_clusters` (one row per trace in a cluster of two or more) and
`dup_signatures` (stored so later runs only hash new traces, and so that a trace kept by an
earlier run keeps winning against new near-copies of it)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import xxhash

from curation import minhash
from curation.stats import StageStats
from curation.store import Store
from schemas.config import DedupeConfig

_WS = re.compile(r"\s+")


@dataclass
class DedupeStats(StageStats):
    """Counts of one dedupe run; traces = kept + exact + prefix + near + quarantined."""

    traces: int = 0
    kept: int = 0
    exact_duplicates: int = 0
    prefix_of: int = 0
    near_duplicates: int = 0
    quarantined: int = 0
    clusters: int = 0
    signatures_computed: int = 0
    seconds: float = 0.0
    bands: int = 0
    rows: int = 0


@dataclass
class _Trace:
    trace_id: str
    exact: str
    prefixes: list[str]
    text: str
    n_messages: int
    length: int
    feedback: float
    created: float
    sticky: bool = False
    representative: str | None = None
    kind: str | None = None
    similarity: float | None = None


def normalize(text: str, cfg: DedupeConfig) -> str:
    if cfg.collapse_whitespace:
        text = _WS.sub(" ", text).strip()
    return text.lower() if cfg.lowercase else text


def message_key(m: dict[str, Any], cfg: DedupeConfig) -> bytes:
    """A message's identity for exact and prefix comparison: role, normalized text, tool calls."""
    calls = [(c.get("name"), normalize(c.get("arguments", ""), cfg)) for c in m.get("tool_calls") or []]
    return orjson.dumps([m["role"], normalize(m.get("content", ""), cfg), calls, m.get("tool_call_id")])


def shingle_text(messages: list[dict[str, Any]], cfg: DedupeConfig) -> str:
    """The text that near-duplicate detection compares: user and assistant turns (and tool-call
    arguments); the system prompt only when configured, since every trace of an app shares it."""
    roles = ("system", "user", "assistant") if cfg.include_system else ("user", "assistant")
    parts = []
    for m in messages:
        if m["role"] in roles:
            parts.append(m.get("content", ""))
            parts += [c.get("arguments", "") for c in m.get("tool_calls") or []]
    return normalize(" ".join(parts), cfg)


def feedback_score(feedback: list[dict[str, Any]]) -> float:
    """+1 for positive feedback (thumbs up, true, score above 0.5), -1 for negative, 0 for none."""
    score = 0.0
    for f in feedback:
        v = f.get("value")
        if isinstance(v, bool):
            score += 1 if v else -1
        elif isinstance(v, int | float):
            score += 1 if v > 0.5 else -1
        elif isinstance(v, str) and v.lower() in ("up", "good", "positive", "thumbs_up"):
            score += 1
        elif isinstance(v, str) and v.lower() in ("down", "bad", "negative", "thumbs_down"):
            score -= 1
    return max(-1.0, min(1.0, score))


def _policy(rules: list[str]) -> Callable[[_Trace], tuple[Any, ...]]:
    """Sort key: the survivor of a cluster sorts first. Traces kept by earlier runs always win."""
    keys: dict[str, Callable[[_Trace], Any]] = {
        "feedback": lambda t: -t.feedback,
        "newest": lambda t: -t.created,
        "oldest": lambda t: t.created,
        "longest": lambda t: -t.length,
        "shortest": lambda t: t.length,
    }
    chosen = [keys[r] for r in rules]
    return lambda t: (not t.sticky, *(k(t) for k in chosen), t.trace_id)


def _load(store: Store, cfg: DedupeConfig) -> tuple[list[_Trace], list[tuple[str, str]]]:
    rows = store.con.execute(
        "SELECT t.trace_id, t.messages, t.feedback, t.created_at, coalesce(s.kept, false) "
        "FROM traces t LEFT JOIN dup_signatures s USING (trace_id) ORDER BY t.trace_id"
    ).fetchall()
    out, failed = [], []
    for trace_id, messages_json, feedback_json, created, sticky in rows:
        try:
            messages = orjson.loads(messages_json)
            keys = [message_key(m, cfg) for m in messages]
            h = xxhash.xxh3_128()
            prefixes = []
            for k in keys:
                h.update(len(k).to_bytes(4, "little") + k)
                prefixes.append(h.hexdigest())
            created_ts = created.timestamp() if isinstance(created, datetime) else 0.0
            out.append(
                _Trace(
                    trace_id,
                    prefixes[-1] if prefixes else "",
                    prefixes[:-1],
                    shingle_text(messages, cfg),
                    len(messages),
                    sum(len(m.get("content", "")) for m in messages),
                    feedback_score(orjson.loads(feedback_json or "[]")),
                    created_ts,
                    bool(sticky),
                )
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            failed.append((trace_id, f"{type(exc).__name__}: {exc}"))
    return out, failed


def _exact(traces: list[_Trace], key: Callable[[_Trace], Any]) -> list[_Trace]:
    groups: dict[str, list[_Trace]] = {}
    for t in traces:
        groups.setdefault(t.exact, []).append(t)
    survivors = []
    for members in groups.values():
        members.sort(key=key)
        survivors.append(members[0])
        for t in members[1:]:
            t.kind, t.representative, t.similarity = "exact", members[0].trace_id, 1.0
    return survivors


def _prefix(traces: list[_Trace]) -> list[_Trace]:
    """A trace whose messages are the start of another trace's messages is `prefix_of` the longest one."""
    by_full = {t.exact: t for t in traces}
    longest: dict[str, _Trace] = {}
    for t in traces:
        for p in t.prefixes:
            short = by_full.get(p)
            if short is not None and short is not t:
                best = longest.get(short.trace_id)
                if best is None or (t.n_messages, t.trace_id) > (best.n_messages, best.trace_id):
                    longest[short.trace_id] = t
    survivors = []
    for t in traces:
        ext = longest.get(t.trace_id)
        if ext is None:
            survivors.append(t)
        else:
            t.kind, t.representative, t.similarity = "prefix", ext.trace_id, None
    return survivors


def lsh_layout(cfg: DedupeConfig) -> tuple[int, int]:
    """(bands, rows): as configured, else chosen from the threshold."""
    if cfg.bands and cfg.rows:
        return cfg.bands, cfg.rows
    return minhash.optimal_bands(cfg.threshold, cfg.num_perm, verified=cfg.verify != "none")


def near_duplicate_clusters(
    texts: list[str], cfg: DedupeConfig, signatures: np.ndarray | None = None
) -> minhash.Clusters:
    """Cluster texts whose word-shingle Jaccard similarity reaches `cfg.threshold` (MinHash + LSH,
    candidates verified as configured). `signatures`, when given, are the texts' stored signatures."""
    bands, rows = lsh_layout(cfg)
    if bands * rows > cfg.num_perm:
        raise ValueError(f"dedupe.bands * dedupe.rows = {bands * rows} exceeds dedupe.num_perm = {cfg.num_perm}")
    shingles = minhash.shingle(texts, cfg.shingle_size) if signatures is None or cfg.verify == "exact" else None
    sig = signatures if signatures is not None else minhash.MinHasher(cfg.num_perm).signatures(shingles)
    pairs = minhash.candidate_pairs(sig, bands, rows)
    if cfg.verify == "exact":
        sim = minhash.exact_jaccard(shingles, pairs)
    elif cfg.verify == "signature":
        sim = minhash.estimated_jaccard(sig, pairs)
    else:
        sim = np.ones(len(pairs))
    return minhash.cluster(len(texts), pairs, sim, cfg.threshold if cfg.verify != "none" else 0.0)


def _params(cfg: DedupeConfig) -> str:
    return (
        f"perm={cfg.num_perm};k={cfg.shingle_size};lower={cfg.lowercase};ws={cfg.collapse_whitespace};"
        f"system={cfg.include_system};seed=1"
    )


def _signatures(store: Store, traces: list[_Trace], cfg: DedupeConfig) -> tuple[np.ndarray, int]:
    """Signatures of the given traces: stored ones reused, missing ones computed and stored."""
    params = _params(cfg)
    stored = dict(
        store.con.execute("SELECT trace_id, signature FROM dup_signatures WHERE params = ?", [params]).fetchall()
    )
    sig = np.zeros((len(traces), cfg.num_perm), dtype=np.uint32)
    missing = []
    for i, t in enumerate(traces):
        blob = stored.get(t.trace_id)
        if blob is not None and len(blob) == 4 * cfg.num_perm:
            sig[i] = np.frombuffer(blob, dtype=np.uint32)
        else:
            missing.append(i)
    if missing:
        fresh = minhash.MinHasher(cfg.num_perm).signatures(
            minhash.shingle([traces[i].text for i in missing], cfg.shingle_size)
        )
        sig[missing] = fresh
        table = pa.table(
            {
                "trace_id": [traces[i].trace_id for i in missing],
                "signature": [fresh[k].tobytes() for k in range(len(missing))],
            }
        )
        store.con.register("_new_sigs", table)
        store.con.execute(
            "INSERT OR REPLACE INTO dup_signatures (trace_id, params, signature, kept) "
            "SELECT trace_id, ?, signature, false FROM _new_sigs",
            [params],
        )
        store.con.unregister("_new_sigs")
    return sig, len(missing)


def signatures_for(store: Store, trace_ids: list[str], cfg: DedupeConfig) -> np.ndarray:
    """MinHash signatures (one row per id, in order) of stored traces: stored ones reused,
    missing ones computed from the traces' messages and stored."""
    stored = {
        r[0]
        for r in store.con.execute("SELECT trace_id FROM dup_signatures WHERE params = ?", [_params(cfg)]).fetchall()
    }
    need = [t for t in trace_ids if t not in stored]
    texts: dict[str, str] = {}
    if need:
        store.con.register("_need", pa.table({"trace_id": need}))
        for tid, messages in store.con.execute(
            "SELECT trace_id, messages FROM traces WHERE trace_id IN (SELECT trace_id FROM _need)"
        ).fetchall():
            texts[tid] = shingle_text(orjson.loads(messages), cfg)
        store.con.unregister("_need")
    traces = [_Trace(t, "", [], texts.get(t, ""), 0, 0, 0.0, 0.0) for t in trace_ids]
    return _signatures(store, traces, cfg)[0]


def _near(
    store: Store, traces: list[_Trace], cfg: DedupeConfig, key: Callable[[_Trace], Any], stats: DedupeStats
) -> list[_Trace]:
    sig, stats.signatures_computed = _signatures(store, traces, cfg)
    clusters = near_duplicate_clusters([t.text for t in traces], cfg, signatures=sig)
    stats.bands, stats.rows = lsh_layout(cfg)
    best_sim: dict[int, float] = {}
    for (i, j), s in zip(clusters.pairs.tolist(), clusters.similarity.tolist(), strict=True):
        best_sim[i] = max(best_sim.get(i, 0.0), s)
        best_sim[j] = max(best_sim.get(j, 0.0), s)
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(clusters.labels.tolist()):
        groups.setdefault(label, []).append(i)
    survivors = []
    for members in groups.values():
        members.sort(key=lambda i: key(traces[i]))
        survivors.append(traces[members[0]])
        for i in members[1:]:
            traces[i].kind, traces[i].representative = "near", traces[members[0]].trace_id
            traces[i].similarity = round(best_sim.get(i, cfg.threshold), 4)
    return survivors


def run(store: Store, cfg: DedupeConfig | None = None) -> DedupeStats:
    """Dedupe every trace in the store (idempotent: the same traces give the same tables)."""
    cfg = cfg or DedupeConfig()
    started = time.perf_counter()
    stats = DedupeStats()
    traces, failed = _load(store, cfg)
    stats.traces, stats.quarantined = len(traces) + len(failed), len(failed)
    key = _policy(list(cfg.survivor))
    survivors = _exact(traces, key)
    if cfg.prefix_collapse:
        survivors = _prefix(survivors)
    if cfg.near:
        survivors = _near(store, survivors, cfg, key, stats)
    by_id = {t.trace_id: t for t in traces}
    for t in traces:  # point every dropped trace at the copy that is finally kept
        rep = t.representative
        while rep is not None and by_id[rep].representative is not None:
            rep = by_id[rep].representative
        t.representative = rep
    _write(store, traces, failed, survivors)
    stats.kept = len(survivors)
    stats.exact_duplicates = sum(t.kind == "exact" for t in traces)
    stats.prefix_of = sum(t.kind == "prefix" for t in traces)
    stats.near_duplicates = sum(t.kind == "near" for t in traces)
    stats.clusters = len({t.representative for t in traces if t.representative})
    stats.seconds = time.perf_counter() - started
    return stats


def _write(store: Store, traces: list[_Trace], failed: list[tuple[str, str]], survivors: list[_Trace]) -> None:
    reps = {t.representative for t in traces if t.representative}
    rows = [
        (
            t.trace_id,
            t.representative,
            t.kind,
            t.representative,
            t.similarity,
            "prefix_of" if t.kind == "prefix" else "duplicate_of",
        )
        for t in traces
        if t.representative
    ]
    rows += [(r, r, None, r, None, None) for r in sorted(reps)]
    kinds: dict[str, str] = {}
    for t in traces:
        if t.representative:
            kinds.setdefault(t.representative, t.kind or "exact")
    table = pa.table(
        {
            "trace_id": [r[0] for r in rows],
            "cluster_id": [f"dup:{r[1]}" for r in rows],
            "kind": [r[2] or kinds[r[0]] for r in rows],
            "representative": [r[3] for r in rows],
            "similarity": pa.array([r[4] for r in rows], type=pa.float64()),
            "reason": [r[5] for r in rows],
        }
    )
    kept = pa.table({"trace_id": [t.trace_id for t in survivors]})
    with store.transaction(_clusters=table, _kept=kept) as con:
        con.execute("DELETE FROM dup_clusters")
        con.execute("INSERT INTO dup_clusters SELECT * FROM _clusters")
        con.execute("UPDATE dup_signatures SET kept = trace_id IN (SELECT trace_id FROM _kept)")
        store.quarantine_traces("dedupe", [(trace_id, "dedupe_error", message) for trace_id, message in failed])


def kept_ids(store: Store) -> list[str]:
    """Trace ids that survive dedupe: not dropped in `dup_clusters`, not quarantined by the stage."""
    return [
        r[0]
        for r in store.con.execute(
            "SELECT trace_id FROM traces "
            "WHERE trace_id NOT IN (SELECT trace_id FROM dup_clusters WHERE reason IS NOT NULL) "
            "AND trace_id NOT IN (SELECT trace_id FROM quarantine WHERE stage = 'dedupe' AND trace_id IS NOT NULL) "
            "ORDER BY trace_id"
        ).fetchall()
    ]


def duplicate_counts(store: Store) -> dict[str, Any]:
    """The duplicate numbers every report shows, all from `dup_clusters` and the dedupe quarantine:
    `dropped` copies by kind (each dropped trace once, under its own kind, as in `decisions`),
    `quarantined` traces, `clusters` (one per kept trace) and `sizes`: size -> clusters, where a
    cluster's size is its kept trace plus the copies dropped in its favour (so always 2 or more)."""
    q = store.con.execute
    kinds = dict(q("SELECT kind, count(*) FROM dup_clusters WHERE reason IS NOT NULL GROUP BY ALL").fetchall())
    sizes = q(
        "SELECT n, count(*) FROM (SELECT cluster_id, count(*) AS n FROM dup_clusters GROUP BY ALL) "
        "WHERE n > 1 GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    quarantined = q("SELECT count(*) FROM quarantine WHERE stage = 'dedupe' AND trace_id IS NOT NULL").fetchone()
    return {
        "dropped": {k: int(kinds.get(k, 0)) for k in ("exact", "prefix", "near")},
        "quarantined": int(quarantined[0]) if quarantined else 0,
        "clusters": sum(int(c) for _, c in sizes),
        "sizes": {int(n): int(c) for n, c in sizes},
    }
