"""Train/holdout split: group-aware, deterministic, stable across dataset versions, leak-checked.

A trace's group key is its session, else its user, else its duplicate cluster, else itself. Traces
sharing a group key or a near-duplicate pair (MinHash at `split.near_threshold`) are joined, and
joined traces share a side. Traces are placed one at a time in order of creation: a trace takes the
side of the placed traces it is joined to; one joined to nothing starts a component, which goes to
holdout while the holdout is under `min_holdout` rows (once a train row exists), else when the salted
hash of its group key falls below `holdout_fraction`, and never once the holdout holds `max_holdout`
rows. A trace joined to both sides, or to a full holdout, is left out with its reason. So a side
depends only on the traces created before it: a run after new traces arrived gives what a run from
scratch on the union gives, and each stratum keeps its share in expectation. A trace placed by an
earlier run keeps its side (`splits` table), so successive adapters are evaluated on comparable
holdouts; where that differs from a run from scratch (traces that arrive older than placed ones, or
changed settings) it is counted. The leakage check then verifies that no group, duplicate cluster or
near-duplicate pair spans both sides."""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from curation import minhash
from curation.stats import Counts
from schemas.config import SplitConfig

TRAIN, HOLDOUT = "train", "holdout"
_BRIDGING, _HOLDOUT_FULL = "left out: joins both sides", "left out: holdout full"


@dataclass(slots=True)
class Member:
    """What the split needs of a kept trace."""

    trace_id: str
    session_id: str | None = None
    user_id: str | None = None
    cluster_id: str | None = None
    tags: list[str] = field(default_factory=list)
    created: float | None = None
    place: str | None = None  # orders traces created at the same time: the first copy's id (default: its own)
    stands_for: tuple[str, ...] = ()  # the groups of its duplicate cluster's copies, first copy's first

    @property
    def group_key(self) -> str:
        if self.session_id:
            return f"session:{self.session_id}"
        if self.user_id:
            return f"user:{self.user_id}"
        if self.cluster_id:
            return f"cluster:{self.cluster_id}"
        return f"trace:{self.trace_id}"


def shown_group(key: str) -> str:
    """A group key as outputs show it: a session or user id (raw input, never redacted) as a short hash."""
    kind, _, _ = key.partition(":")
    if kind not in ("session", "user"):
        return key
    return f"{kind}:#{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def shown_group_sql(column: str) -> str:
    """`shown_group` as a DuckDB expression over the group-key column `column`."""
    kind = f"split_part({column}, ':', 1)"
    return (
        f"CASE WHEN {kind} IN ('session', 'user') THEN {kind} || ':#' || left(sha256({column}), 12) ELSE {column} END"
    )


class LeakageError(RuntimeError):
    """Train and holdout share a group, a duplicate cluster or a near-duplicate pair."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "; ".join(problems[:10]) + (f"; ... {len(problems) - 10} more" if len(problems) > 10 else "")
        super().__init__(f"train/holdout leakage ({len(problems)}): {shown}")


@dataclass
class SplitStats(Counts):
    """Counts of one split: rows and groups per side, traces that kept an earlier side."""

    train: int = 0
    holdout: int = 0
    groups_train: int = 0
    groups_holdout: int = 0
    sticky: int = 0
    sticky_overrides: int = 0  # rows whose earlier side differs from the one a run from scratch gives now
    bridging: list[str] = field(default_factory=list)  # new traces joining groups placed on both sides
    holdout_full: list[str] = field(default_factory=list)  # new traces of holdout groups once it is full
    near_pairs: int = 0
    cross_pairs: int = 0
    strata: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_hash(key: str, seed: str) -> float:
    """Deterministic position of a group in [0, 1) (sha256 of seed and key)."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def near_pairs(signatures: np.ndarray, threshold: float) -> np.ndarray:
    """Index pairs whose estimated Jaccard similarity reaches `threshold` (LSH + signature check)."""
    if len(signatures) < 2:
        return np.empty((0, 2), dtype=np.int64)
    bands, rows = minhash.optimal_bands(threshold, signatures.shape[1], verified=True)
    pairs = minhash.candidate_pairs(signatures, bands, rows)
    sim = minhash.estimated_jaccard(signatures, pairs)
    return pairs[sim >= threshold]


def assign(
    members: list[Member],
    cfg: SplitConfig,
    previous: dict[str, str],
    pairs: np.ndarray | None = None,
) -> tuple[dict[str, str], SplitStats]:
    """Side of every member placed (members left out are in `stats.bridging` / `stats.holdout_full`).
    `previous` maps trace ids to their side in earlier versions; `pairs` (index pairs into `members`,
    e.g. from `near_pairs`) joins near-duplicates into one component."""
    started = time.perf_counter()
    pairs = pairs if pairs is not None else np.empty((0, 2), np.int64)
    order = sorted(range(len(members)), key=lambda i: (_created(members[i]), members[i].place or members[i].trace_id))
    near: dict[int, list[int]] = defaultdict(list)
    for a, b in pairs.tolist():
        near[a].append(b)
        near[b].append(a)
    placed = _Placement(members, cfg, near)
    as_from_scratch = True
    for i in order:
        as_from_scratch &= placed.arrive(i, previous.get(members[i].trace_id))
    out = placed.sides()
    stats = placed.stats
    for tid in _conflicting(members, out, previous, near):
        del out[tid]
        stats.bridging.append(tid)
    if not as_from_scratch:  # else every decision, so every side, is the one a run from scratch makes
        fresh, _ = assign(members, cfg, {}, pairs)
        stats.sticky_overrides = sum(1 for t, s in out.items() if t in previous and fresh.get(t) != s)
    stats.near_pairs = len(pairs)
    stats.sticky = sum(1 for m in members if m.trace_id in previous)
    stats.train = sum(1 for s in out.values() if s == TRAIN)
    stats.holdout = len(out) - stats.train
    components: dict[int, list[int]] = defaultdict(list)
    for i, m in enumerate(members):
        if m.trace_id in out:
            components[placed.uf.find(i)].append(i)
    for idx in components.values():
        side = out[members[idx[0]].trace_id]
        stats.groups_train += side == TRAIN
        stats.groups_holdout += side == HOLDOUT
        if cfg.stratify_tag:
            stratum = _stratum(members, idx, cfg.stratify_tag)
            stats.strata.setdefault(stratum, {TRAIN: 0, HOLDOUT: 0})[side] += len(idx)
    stats.seconds = time.perf_counter() - started
    return out, stats


class _Placement:
    """Traces placed one at a time in order of creation, so that the sides of a store's traces do not
    depend on which later traces it holds: a run after new traces arrived decides as a run from scratch
    on the union would."""

    def __init__(self, members: list[Member], cfg: SplitConfig, near: dict[int, list[int]]) -> None:
        self.members, self.cfg, self.near = members, cfg, near
        self.uf = _UnionFind(len(members))
        self.side: dict[int, str] = {}  # placed trace index -> side
        self.group: dict[str, int] = {}  # group key -> a placed member
        self.holdout_rows = self.train_rows = 0
        self.stats = SplitStats()

    def arrive(self, i: int, earlier: str | None) -> bool:
        """Place trace `i`: with its earlier side if it has one, else with the placed traces it is joined
        to, else by the hash of its group key (its own component); or leave it out. Returns whether a run
        from scratch (no earlier side) would decide the same here."""
        m = self.members[i]
        keys = list(dict.fromkeys(m.stands_for or (m.group_key,)))
        joined = [j for j in self.near[i] if j in self.side] + [self.group[k] for k in keys if k in self.group]
        fresh = self._decide(m, {self.side[j] for j in joined})
        side = fresh if earlier is None else earlier
        if side == _BRIDGING:  # a new trace joining traces placed on both sides can go to neither
            self.stats.bridging.append(m.trace_id)
            return True
        if side == _HOLDOUT_FULL:  # its group is in the holdout, which is full
            self.stats.holdout_full.append(m.trace_id)
            return True
        self.side[i] = side
        self.holdout_rows += side == HOLDOUT
        self.train_rows += side == TRAIN
        for key in keys:
            self.group.setdefault(key, i)
        for j in joined:
            if self.side[j] == side:
                self.uf.union(i, j)
        return side == fresh

    def _decide(self, m: Member, sides: set[str]) -> str:
        """The side of a trace without an earlier one, joined to placed traces on `sides`, or why it is left out."""
        if len(sides) > 1:
            return _BRIDGING
        if sides:
            side = next(iter(sides))
            return _HOLDOUT_FULL if side == HOLDOUT and self.holdout_rows >= self.cfg.max_holdout else side
        return self._new_component(m)

    def _new_component(self, m: Member) -> str:
        if self.holdout_rows >= self.cfg.max_holdout:
            return TRAIN
        if self.train_rows and self.holdout_rows < self.cfg.min_holdout:  # the earliest components fill the floor
            return HOLDOUT
        key = m.stands_for[0] if m.stands_for else m.group_key
        return HOLDOUT if group_hash(key, self.cfg.seed) < self.cfg.holdout_fraction else TRAIN

    def sides(self) -> dict[str, str]:
        return {self.members[i].trace_id: s for i, s in self.side.items()}


def _conflicting(
    members: list[Member], sides: dict[str, str], previous: dict[str, str], near: dict[int, list[int]]
) -> list[str]:
    """New traces placed opposite an earlier-placed trace they are joined to. That happens only when
    traces arrive older than traces an earlier run placed, or the grouping settings changed."""
    if not previous:
        return []
    old_sides: dict[str, set[str]] = defaultdict(set)
    for m in members:
        if m.trace_id in previous and m.trace_id in sides:
            old_sides[m.group_key].add(sides[m.trace_id])
    out = []
    for i, m in enumerate(members):
        side = sides.get(m.trace_id)
        if side is None or m.trace_id in previous:
            continue
        opposite = old_sides[m.group_key] - {side}
        opposite |= {
            sides[members[j].trace_id]
            for j in near[i]
            if members[j].trace_id in previous and members[j].trace_id in sides
        } - {side}
        if opposite:
            out.append(m.trace_id)
    return out


def _created(m: Member) -> float:
    return m.created if m.created is not None else float("inf")


def _stratum(members: list[Member], idx: list[int], prefix: str) -> str:
    values = sorted({t for i in idx for t in members[i].tags if t.startswith(prefix)})
    return values[0] if values else f"{prefix}(none)"


def check(
    members: list[Member],
    sides: dict[str, str],
    pairs: np.ndarray | None,
    previous: dict[str, str] | None = None,
) -> int:
    """Raise LeakageError when a group key, a duplicate cluster or a near-duplicate pair (`pairs`:
    index pairs into `members`) spans train and holdout, or a trace changed side since an earlier
    version (`previous`); returns the number of near pairs checked."""
    placed = [m for m in members if m.trace_id in sides]  # traces left out (bridging) are not exported
    problems: list[str] = [
        f"{m.trace_id} was in {previous[m.trace_id]} in an earlier version, now in {sides[m.trace_id]} "
        f"(its group {shown_group(m.group_key)} joins traces from both sides)"
        for m in placed
        if previous and m.trace_id in previous and previous[m.trace_id] != sides[m.trace_id]
    ]
    for attr in ("group_key", "cluster_id"):
        seen: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for m in placed:
            value = getattr(m, attr)
            if value:
                seen[value][sides[m.trace_id]].append(m.trace_id)
        for value, by_side in sorted(seen.items()):
            if len(by_side) > 1:
                problems.append(
                    f"{attr} {shown_group(value)} in train ({', '.join(by_side[TRAIN][:3])}) "
                    f"and holdout ({', '.join(by_side[HOLDOUT][:3])})"
                )
    pairs = pairs if pairs is not None else np.empty((0, 2), np.int64)
    for a, b in pairs.tolist():
        ta, tb = members[a].trace_id, members[b].trace_id
        if ta in sides and tb in sides and sides[ta] != sides[tb]:
            problems.append(f"near-duplicate pair {ta} ({sides[ta]}) ~ {tb} ({sides[tb]})")
    if problems:
        raise LeakageError(problems)
    return len(pairs)
