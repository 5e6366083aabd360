"""Train/holdout split: group-aware, deterministic, stable across dataset versions, leak-checked.

A trace's group key is its session, else its user, else its duplicate cluster, else itself.
Traces are joined into components by group key and by near-duplicate pairs (MinHash at
`split.near_threshold`), and whole components go to one side. A trace assigned by an earlier run
keeps its side (`splits` table), so successive adapters are evaluated on comparable holdouts; new
components take the side of an already assigned member, else go to holdout when the salted hash of
the group key of their earliest-created member falls below `holdout_fraction`. So each stratum
keeps its share in expectation, and a component's side does not depend on which other traces the
store holds. Past `max_holdout` rows, the holdout keeps its earliest-created components and later
ones go to train; below `min_holdout`, the earliest-created train components move over. The
leakage check then verifies that no group, duplicate cluster or near-duplicate pair spans both
sides."""

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


@dataclass(slots=True)
class Member:
    """What the split needs of a kept trace."""

    trace_id: str
    session_id: str | None = None
    user_id: str | None = None
    cluster_id: str | None = None
    tags: list[str] = field(default_factory=list)
    created: float | None = None

    @property
    def group_key(self) -> str:
        if self.session_id:
            return f"session:{self.session_id}"
        if self.user_id:
            return f"user:{self.user_id}"
        if self.cluster_id:
            return f"cluster:{self.cluster_id}"
        return f"trace:{self.trace_id}"


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
    sticky_overrides: int = 0  # rows whose earlier side differs from the one their group's hash gives now
    bridging: list[str] = field(default_factory=list)  # new traces joining groups placed on both sides
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
    """Side of every member. `previous` maps trace ids to their side in earlier versions; `pairs`
    (index pairs into `members`, e.g. from `near_pairs`) joins near-duplicates into one component."""
    started = time.perf_counter()
    stats = SplitStats()
    n = len(members)
    uf = _UnionFind(n)
    first_of: dict[str, int] = {}
    for i, m in enumerate(members):
        uf.union(first_of.setdefault(m.group_key, i), i)
    pairs = pairs if pairs is not None else np.empty((0, 2), np.int64)
    stats.near_pairs = len(pairs)
    for a, b in pairs.tolist():
        uf.union(a, b)
    components: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        components[uf.find(i)].append(i)

    side: dict[int, str] = {}
    mixed: set[int] = set()  # components whose earlier members are on both sides
    order: list[tuple[float, str, int, bool]] = []  # (created, hash order, root, holdout by hash)
    for root, idx in components.items():
        # the component is known by its earliest-created member's group, which later arrivals do not change
        created, key = min((_created(members[i]), members[i].group_key) for i in idx)
        h = group_hash(key, cfg.seed)
        order.append((created, f"{h:.17f}{key}", root, h < cfg.holdout_fraction))
        earlier = {previous[members[i].trace_id] for i in idx if members[i].trace_id in previous}
        if earlier:
            side[root] = HOLDOUT if HOLDOUT in earlier else TRAIN
        if len(earlier) > 1:  # new traces join groups placed on both sides: they cannot go to either
            mixed.add(root)
            stats.bridging += [members[i].trace_id for i in idx if members[i].trace_id not in previous]
    order.sort()
    size = {root: len(idx) for root, idx in components.items()}
    holdout_rows = sum(size[r] for r, s in side.items() if s == HOLDOUT)
    # In order of creation, components whose hash falls below the fraction fill the holdout up to the cap;
    # from the first one that does not fit, the rest go to train (an earlier run's refusal counts while the
    # holdout is still that full). So a run after new traces arrived decides as a run from scratch would.
    blocked = False
    fresh_train = []
    for _, _, root, by_hash in order:
        if root in side:
            blocked |= by_hash and side[root] == TRAIN and holdout_rows + size[root] > cfg.max_holdout
            stats.sticky_overrides += size[root] * ((side[root] == HOLDOUT) != by_hash)
            continue
        fits = not blocked and holdout_rows + size[root] <= cfg.max_holdout
        side[root] = HOLDOUT if by_hash and fits else TRAIN
        blocked |= by_hash and not fits
        if side[root] == HOLDOUT:
            holdout_rows += size[root]
        else:
            fresh_train.append(root)
    for root in fresh_train[: max(0, len(fresh_train) - 1)]:  # below the floor, the earliest move to holdout
        if holdout_rows >= cfg.min_holdout or holdout_rows + size[root] > cfg.max_holdout:
            break
        side[root] = HOLDOUT
        holdout_rows += size[root]

    out: dict[str, str] = {}
    for root, idx in components.items():
        for i in idx:
            tid = members[i].trace_id
            if root not in mixed:
                out[tid] = side[root]
            elif tid in previous:  # each earlier member keeps its side; the new ones are left out
                out[tid] = previous[tid]
        stats.groups_train += side[root] == TRAIN
        stats.groups_holdout += side[root] == HOLDOUT
        if cfg.stratify_tag:
            stratum = _stratum(members, idx, cfg.stratify_tag)
            stats.strata.setdefault(stratum, {TRAIN: 0, HOLDOUT: 0})[side[root]] += len(idx)
    stats.sticky = sum(1 for m in members if m.trace_id in previous)
    stats.train = sum(1 for s in out.values() if s == TRAIN)
    stats.holdout = len(out) - stats.train
    stats.seconds = time.perf_counter() - started
    return out, stats


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
        f"(its group {m.group_key} joins traces from both sides)"
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
                    f"{attr} {value} in train ({', '.join(by_side[TRAIN][:3])}) "
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
