"""The split stage over the store: band keys of the split's near-duplicate layout for new traces (from
their stored signatures, a partition at a time), then the grouping over ids only: near pairs found by
a join on band keys and verified by signature, components and sides (`curation.split`), the leakage
check, and the new traces' sides appended to `splits`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from curation import lsh, minhash, split
from curation.dedupe import signature_params
from curation.stage import Stage
from curation.store import Store


class SplitStage(Stage):
    """Group-aware, sticky train/holdout sides for the traces that passed the export checks."""

    name = "split"
    reasons = ("joins_train_and_holdout", "holdout_full")

    def __init__(self, cfg: Any, upstream: str = "SELECT trace_id FROM traces") -> None:
        super().__init__(cfg, upstream)
        self.sc = cfg.split
        self.params = signature_params(cfg.dedupe)
        self.bands, self.rows = minhash.optimal_bands(self.sc.near_threshold, cfg.dedupe.num_perm, verified=True)
        self.layout = lsh.layout(self.params, self.bands, self.rows)

    def pending(self) -> tuple[str, list[Any]]:
        done = (
            "SELECT trace_id FROM lsh_bands WHERE layout = ? UNION ALL SELECT trace_id FROM traces "
            "WHERE trace_id NOT IN (SELECT trace_id FROM dup_keys WHERE params = ?)"
        )
        return self.lacking(done, [self.layout, self.params])

    def columns(self) -> str:
        return "t.trace_id, k.signature"

    def joins(self) -> str:
        return f"JOIN dup_keys k ON k.trace_id = t.trace_id AND k.params = '{self.params}'"

    def process(self, part: pa.Table, prepared: Any, resources: Any) -> pa.Table:
        sig = lsh.signatures(part, "signature")
        return lsh.band_table(part.column(0).to_pylist(), sig, self.layout, self.bands, self.rows)

    def write(self, store: Store, out: pa.Table) -> None:
        lsh.write_bands(store, out, self.layout)

    def members(self, store: Store) -> list[split.Member]:
        """What the split needs of each trace that reaches it, in trace-id order. The copy kept of a
        duplicate cluster stands for all its copies: it arrives when the cluster's first copy did, with
        their groups (a copy without session or user is known by the first copy's id), so a later, better
        copy taking over the cluster changes no other trace's side."""
        tags = "t.tags" if self.sc.stratify_tag else "NULL"

        def key(t: str, first: str) -> str:
            return (
                f"CASE WHEN nullif({t}.session_id, '') IS NOT NULL THEN 'session:' || {t}.session_id "
                f"WHEN nullif({t}.user_id, '') IS NOT NULL THEN 'user:' || {t}.user_id ELSE 'trace:' || {first} END"
            )

        copies = (
            "SELECT cluster_id, min(first) AS first, list(key ORDER BY first, key) AS keys FROM ("
            f"SELECT c.cluster_id, {key('d', 'substr(c.cluster_id, 5)')} AS key, min(epoch(d.created_at)) AS first "
            "FROM dup_clusters c JOIN traces d USING (trace_id) GROUP BY ALL) GROUP BY ALL"
        )
        return [
            split.Member(tid, sid, uid, cid, list(tg or []), created, cid[4:] if cid else tid, tuple(keys))
            for tid, sid, uid, cid, tg, created, keys in store.con.execute(
                f"SELECT t.trace_id, t.session_id, t.user_id, c.cluster_id, {tags}, "
                f"coalesce(f.first, epoch(t.created_at)), coalesce(f.keys, [{key('t', 't.trace_id')}]) "
                f"FROM ({self.upstream}) u JOIN traces t USING (trace_id) LEFT JOIN dup_clusters c USING (trace_id) "
                f"LEFT JOIN ({copies}) f USING (cluster_id) ORDER BY t.trace_id"
            ).fetchall()
        ]

    def near_pairs(self, store: Store, index: dict[str, int]) -> np.ndarray:
        """Index pairs (into the members) of near-duplicates at `split.near_threshold`."""
        pairs = lsh.candidate_pairs(store, self.upstream, self.layout)
        sim = lsh.estimated_similarity(store, pairs, self.params)
        keep = sim >= self.sc.near_threshold
        a = np.array([index[t] for t in pairs.column("a").to_pylist()], dtype=np.int64)[keep]
        b = np.array([index[t] for t in pairs.column("b").to_pylist()], dtype=np.int64)[keep]
        return np.stack([a, b], axis=1) if len(a) else np.empty((0, 2), np.int64)

    def finish(self, store: Store) -> dict[str, Any]:
        members = self.members(store)
        index = {m.trace_id: i for i, m in enumerate(members)}
        pairs = self.near_pairs(store, index)
        store.con.execute(f"CREATE OR REPLACE TEMP TABLE _members AS {self.upstream}")
        previous = dict(
            store.con.execute("SELECT trace_id, split FROM splits SEMI JOIN _members USING (trace_id)").fetchall()
        )
        store.con.execute("DROP TABLE _members")
        sides, stats = split.assign(members, self.sc, previous, pairs)
        checked = split.check(members, sides, pairs, previous)
        new = [m for m in members if m.trace_id not in previous and m.trace_id in sides]
        reasons = {
            **dict.fromkeys(stats.holdout_full, "holdout_full"),
            **dict.fromkeys(stats.bridging, "joins_train_and_holdout"),
        }
        left_out = pa.table(
            {
                "trace_id": pa.array(list(reasons), pa.string()),
                "key": pa.array(["-"] * len(reasons), pa.string()),
                "reason": pa.array(list(reasons.values()), pa.string()),
            }
        )
        table = pa.table(
            {
                "trace_id": [m.trace_id for m in new],
                "split": [sides[m.trace_id] for m in new],
                "group_key": [m.group_key for m in new],
            }
        )
        with store.transaction(_splits=table, _left=left_out) as con:
            con.execute(
                "INSERT INTO splits (trace_id, split, group_key) SELECT trace_id, split, group_key FROM _splits"
            )
            con.execute("DELETE FROM verdicts WHERE stage = 'split'")
            con.execute("INSERT INTO verdicts SELECT 'split', trace_id, key, reason, NULL FROM _left")
        detail = stats.as_dict()
        detail.pop("bridging")
        detail.pop("holdout_full")
        return {**detail, "leakage": {"near_pairs_checked": checked, "leaks": 0}}

    def drops(self) -> str:
        return "SELECT trace_id, reason, detail FROM verdicts WHERE stage = 'split'"
