"""The dedupe stage: exact duplicates, prefix chains of multi-turn calls, and near-duplicates
(MinHash + LSH), with a configurable policy for which copy survives.

Per partition, each new trace gets its keys in `dup_keys` (exact key, MinHash signature, what the
survivor policy reads), its message-prefix keys in `dup_prefixes` and its band keys in `lsh_bands`;
a later run only hashes new traces. Then the clusters are found over the whole store in the
database: exact groups and prefix chains by joins on the keys, near-duplicate candidates by a join
on band keys, verified pair by pair, connected over the pairs only. `dup_clusters` holds one row
per trace in a cluster of two or more. The survivor follows the policy over the whole store, so a
run after new traces keeps what a run from scratch would; a cluster is named after its earliest
member, so its name (the split's group of a trace without session or user) stays when a better
copy arrives and takes over."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import xxhash

from curation import lsh, minhash
from curation.stage import Stage, rows
from curation.store import Store
from schemas.config import DedupeConfig

KINDS = ("exact_duplicate", "prefix_of", "near_duplicate")  # one name per kind: dup_clusters, decisions, stats

_WS = re.compile(r"\s+")


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


def signature_params(cfg: DedupeConfig) -> str:
    return (
        f"perm={cfg.num_perm};k={cfg.shingle_size};lower={cfg.lowercase};ws={cfg.collapse_whitespace};"
        f"system={cfg.include_system};seed=1"
    )


def trace_keys(messages: list[dict[str, Any]], cfg: DedupeConfig) -> tuple[str, list[str], str, int]:
    """(exact key, keys of the proper message prefixes, shingle text, content length) of a trace."""
    h = xxhash.xxh3_128()
    prefixes = []
    for m in messages:
        k = message_key(m, cfg)
        h.update(len(k).to_bytes(4, "little") + k)
        prefixes.append(h.hexdigest())
    length = sum(len(m.get("content", "")) for m in messages)
    return (prefixes[-1] if prefixes else ""), prefixes[:-1], shingle_text(messages, cfg), length


POLICY: dict[str, Callable[[tuple[Any, ...]], Any]] = {  # over (trace_id, n_messages, length, feedback, created)
    "feedback": lambda r: -r[3],
    "newest": lambda r: -r[4],
    "oldest": lambda r: r[4],
    "longest": lambda r: -r[2],
    "shortest": lambda r: r[2],
}


def policy_key(rules: list[str]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """Sort key of a cluster member row: the survivor sorts first (ties: the lowest trace id)."""
    chosen = [POLICY[r] for r in rules]
    return lambda r: (*(k(r) for k in chosen), r[0])


class DedupeStage(Stage):
    """Exact, prefix and near-duplicate removal."""

    name = "dedupe"
    reasons = (*KINDS, "dedupe_error")
    parallel = True

    def __init__(self, cfg: Any, upstream: str = "SELECT trace_id FROM traces") -> None:
        super().__init__(cfg, upstream)
        self.dc: DedupeConfig = cfg.dedupe
        self.params = signature_params(self.dc)
        self.bands, self.rows = lsh_layout(self.dc)
        if self.bands * self.rows > self.dc.num_perm:
            raise ValueError(
                f"dedupe.bands * dedupe.rows = {self.bands * self.rows} exceeds dedupe.num_perm = {self.dc.num_perm}"
            )
        self.layout = lsh.layout(self.params, self.bands, self.rows)

    def pending(self) -> tuple[str, list[Any]]:
        return self.lacking("SELECT trace_id FROM dup_keys WHERE params = ?", [self.params])

    def columns(self) -> str:
        return "t.trace_id, t.messages, t.feedback, t.created_at"

    def process(self, part: pa.Table, prepared: Any, resources: Any) -> dict[str, Any]:
        keys: list[tuple[Any, ...]] = []
        prefixes: list[tuple[str, str]] = []
        texts: list[str] = []
        failed: list[tuple[str, str, str]] = []
        for tid, messages_json, feedback_json, created in rows(part):
            try:
                messages = orjson.loads(messages_json)
                exact, pre, text, length = trace_keys(messages, self.dc)
                fb = feedback_score(orjson.loads(feedback_json or "[]"))
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                failed.append((tid, "dedupe_error", f"{type(exc).__name__}: {exc}"))
                continue
            ts = created.timestamp() if isinstance(created, datetime) else 0.0
            keys.append((tid, exact, len(messages), length, fb, ts))
            prefixes += [(tid, p) for p in pre]
            texts.append(text)
        sig = minhash.MinHasher(self.dc.num_perm).signatures(minhash.shingle(texts, self.dc.shingle_size))
        ids = [k[0] for k in keys]
        table = pa.table(
            {
                "trace_id": ids,
                "exact_key": [k[1] for k in keys],
                "n_messages": pa.array([k[2] for k in keys], pa.int32()),
                "length": pa.array([k[3] for k in keys], pa.int64()),
                "feedback": pa.array([k[4] for k in keys], pa.float64()),
                "created": pa.array([k[5] for k in keys], pa.float64()),
                "signature": pa.array([row.tobytes() for row in sig], pa.binary()),
            }
        )
        return {
            "ids": part.column(0).to_pylist(),
            "keys": table,
            "prefixes": pa.table({"trace_id": [p[0] for p in prefixes], "prefix_key": [p[1] for p in prefixes]}),
            "bands": lsh.band_table(ids, sig, self.layout, self.bands, self.rows),
            "failed": failed,
        }

    def write(self, store: Store, out: dict[str, Any]) -> None:
        con = store.con
        con.register("_keys", out["keys"])
        con.register("_prefixes", out["prefixes"])
        con.execute("DELETE FROM dup_keys WHERE trace_id IN (SELECT trace_id FROM _keys)")
        con.execute(
            "INSERT INTO dup_keys SELECT trace_id, ?, exact_key, n_messages, length, feedback, created, signature "
            "FROM _keys",
            [self.params],
        )
        con.execute("DELETE FROM dup_prefixes WHERE trace_id IN (SELECT trace_id FROM _keys)")
        con.execute("INSERT INTO dup_prefixes SELECT trace_id, ?, prefix_key FROM _prefixes", [self.params])
        con.unregister("_keys")
        con.unregister("_prefixes")
        lsh.write_bands(store, out["bands"], self.layout)
        store.quarantine_traces(self.name, out["failed"], retried=out["ids"])

    def finish(self, store: Store) -> dict[str, Any]:
        started = time.perf_counter()
        con = store.con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _dk AS SELECT k.trace_id, k.exact_key, k.n_messages, k.length, k.feedback, "
            f"k.created FROM dup_keys k SEMI JOIN ({self.upstream}) u ON k.trace_id = u.trace_id WHERE k.params = ?",
            [self.params],
        )
        key = policy_key(list(self.dc.survivor))
        dropped: dict[str, tuple[str, str, float | None]] = {}  # trace -> (kind, representative, similarity)
        counts = Counter[str]()
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for r in con.execute(
            "SELECT trace_id, n_messages, length, feedback, created, exact_key FROM _dk WHERE exact_key IN "
            "(SELECT exact_key FROM _dk GROUP BY ALL HAVING count(*) > 1) ORDER BY exact_key, trace_id"
        ).fetchall():
            groups.setdefault(r[5], []).append(r)
        for members in groups.values():
            self._collapse(members, "exact_duplicate", key, dropped, {})
        self._exclude(store, dropped)
        if self.dc.prefix_collapse:
            for short, long in con.execute(
                "SELECT s.trace_id, u.trace_id FROM dup_prefixes p JOIN _dk u ON u.trace_id = p.trace_id "
                "JOIN _dk s ON s.exact_key = p.prefix_key WHERE p.params = ? AND s.trace_id <> u.trace_id "
                "QUALIFY row_number() OVER (PARTITION BY s.trace_id ORDER BY u.n_messages DESC, u.trace_id DESC) = 1",
                [self.params],
            ).fetchall():
                dropped[short] = ("prefix_of", long, None)
            self._exclude(store, dropped)
        if self.dc.near:
            counts["candidate_pairs"], counts["verified_pairs"] = self._near(store, key, dropped)
        counts["clusters"] = self._write(store, dropped)
        con.execute("DROP TABLE IF EXISTS _dk")
        counts["bands"], counts["rows"] = self.bands, self.rows
        return {**counts, "cluster_seconds": round(time.perf_counter() - started, 3)}

    @staticmethod
    def _collapse(
        members: list[tuple[Any, ...]],
        kind: str,
        key: Callable[[tuple[Any, ...]], Any],
        dropped: dict[str, tuple[str, str, float | None]],
        sims: dict[str, float],
    ) -> None:
        """Drop all members of one cluster but the survivor."""
        members = sorted(members, key=key)
        for r in members[1:]:
            dropped[r[0]] = (kind, members[0][0], 1.0 if kind == "exact_duplicate" else sims.get(r[0]))

    @staticmethod
    def _exclude(store: Store, dropped: dict[str, tuple[str, str, float | None]]) -> None:
        """Remove the traces dropped so far from the working table of candidates."""
        store.con.register("_dropped", pa.table({"trace_id": list(dropped)}))
        store.con.execute("DELETE FROM _dk WHERE trace_id IN (SELECT trace_id FROM _dropped)")
        store.con.unregister("_dropped")

    def _near(
        self,
        store: Store,
        key: Callable[[tuple[Any, ...]], Any],
        dropped: dict[str, tuple[str, str, float | None]],
    ) -> tuple[int, int]:
        members = "SELECT trace_id FROM _dk"
        lsh.ensure_bands(
            store, members, self.params, self.layout, self.bands, self.rows, self.cfg.curate.partition_rows
        )
        pairs = lsh.candidate_pairs(store, members, self.layout)
        if self.dc.verify == "signature":
            sim = lsh.estimated_similarity(store, pairs, self.params)
        elif self.dc.verify == "exact":
            sim = self._exact_similarity(store, pairs)
        else:
            sim = np.ones(pairs.num_rows)
        keep = sim >= (self.dc.threshold if self.dc.verify != "none" else 0.0)
        a = [x for x, k in zip(pairs.column("a").to_pylist(), keep, strict=True) if k]
        b = [x for x, k in zip(pairs.column("b").to_pylist(), keep, strict=True) if k]
        best: dict[str, float] = {}
        for x, y, s in zip(a, b, sim[keep].tolist(), strict=True):
            best[x], best[y] = max(best.get(x, 0.0), s), max(best.get(y, 0.0), s)
        nodes, labels = lsh.components(a, b)
        store.con.register("_nodes", pa.table({"trace_id": nodes}))
        attrs = {
            r[0]: r
            for r in store.con.execute(
                "SELECT trace_id, n_messages, length, feedback, created FROM _dk SEMI JOIN _nodes USING (trace_id)"
            ).fetchall()
        }
        store.con.unregister("_nodes")
        comps: dict[int, list[tuple[Any, ...]]] = {}
        for node, label in zip(nodes, labels.tolist(), strict=True):
            comps.setdefault(label, []).append(attrs[node])
        rounded = {t: round(s, 4) for t, s in best.items()}
        for members_ in comps.values():
            self._collapse(members_, "near_duplicate", key, dropped, rounded)
        return pairs.num_rows, len(a)

    def _exact_similarity(self, store: Store, pairs: pa.Table) -> np.ndarray:
        """True Jaccard similarity of the shingle sets of each pair (texts re-read a chunk at a time)."""
        out = np.empty(pairs.num_rows)
        for start in range(0, pairs.num_rows, lsh.PAIR_CHUNK):
            chunk = pairs.slice(start, lsh.PAIR_CHUNK)
            ids = sorted(set(chunk.column("a").to_pylist()) | set(chunk.column("b").to_pylist()))
            store.con.register("_ids", pa.table({"trace_id": ids}))
            texts = {
                t: shingle_text(orjson.loads(m), self.dc)
                for t, m in store.con.execute(
                    "SELECT trace_id, messages FROM traces SEMI JOIN _ids USING (trace_id)"
                ).fetchall()
            }
            store.con.unregister("_ids")
            index = {t: i for i, t in enumerate(ids)}
            shingles = minhash.shingle([texts[t] for t in ids], self.dc.shingle_size)
            a, b = chunk.column("a").to_pylist(), chunk.column("b").to_pylist()
            idx = np.array([[index[x], index[y]] for x, y in zip(a, b, strict=True)], dtype=np.int64).reshape(-1, 2)
            out[start : start + chunk.num_rows] = minhash.exact_jaccard(shingles, idx)
        return out

    def _write(self, store: Store, dropped: dict[str, tuple[str, str, float | None]]) -> int:
        """Point every dropped trace at the copy finally kept and rewrite `dup_clusters`; a cluster is named
        after its earliest-created member."""
        final: dict[str, str] = {}
        for t in sorted(dropped):
            rep = dropped[t][1]
            while rep in dropped:
                rep = dropped[rep][1]
            final[t] = rep
        rep_kind: dict[str, str] = {}
        for t in sorted(dropped):
            rep_kind.setdefault(final[t], dropped[t][0])
        ids = sorted(dropped) + sorted(rep_kind)
        store.con.register("_members", pa.table({"trace_id": ids}))
        created = dict(
            store.con.execute(
                "SELECT trace_id, created FROM dup_keys SEMI JOIN _members USING (trace_id) WHERE params = ?",
                [self.params],
            ).fetchall()
        )
        store.con.unregister("_members")
        earliest: dict[str, tuple[float, str]] = {}
        for t in ids:
            rep = final.get(t, t)
            earliest[rep] = min(earliest.get(rep, (created[t], t)), (created[t], t))
        table = pa.table(
            {
                "trace_id": ids,
                "cluster_id": [f"dup:{earliest[final.get(t, t)][1]}" for t in ids],
                "kind": [dropped[t][0] if t in dropped else rep_kind[t] for t in ids],
                "representative": [final.get(t, t) for t in ids],
                "similarity": pa.array([dropped[t][2] if t in dropped else None for t in ids], pa.float64()),
                "reason": pa.array([dropped[t][0] if t in dropped else None for t in ids], pa.string()),
            }
        )
        with store.transaction(_clusters=table) as con:
            con.execute("DELETE FROM dup_clusters")
            con.execute("INSERT INTO dup_clusters SELECT * FROM _clusters")
        return len(rep_kind)

    def drops(self) -> str:
        return (
            "SELECT trace_id, reason, json_object('representative', representative, 'similarity', similarity)::VARCHAR "
            "AS detail FROM dup_clusters WHERE reason IS NOT NULL "
            "UNION ALL SELECT trace_id, code, NULL FROM quarantine WHERE stage = 'dedupe' AND trace_id IS NOT NULL"
        )


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
        "dropped": {k: int(kinds.get(k, 0)) for k in KINDS},
        "quarantined": int(quarantined[0]) if quarantined else 0,
        "clusters": sum(int(c) for _, c in sizes),
        "sizes": {int(n): int(c) for n, c in sizes},
    }
