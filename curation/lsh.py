"""LSH over the store: MinHash band keys in `lsh_bands`, candidate pairs found by a join in DuckDB,
verified by the signatures stored in `dup_keys`, a chunk of pairs at a time. Dedupe and the split's
leakage grouping share this, each with its own (bands, rows) layout."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from curation import minhash
from curation.store import Store

PAIR_CHUNK = 50_000


def layout(params: str, bands: int, rows: int) -> str:
    """The name of a band layout over the signatures made with `params`."""
    return f"{params};b={bands};r={rows}"


def band_table(ids: list[str], sig: np.ndarray, name: str, bands: int, rows: int) -> pa.Table:
    """`lsh_bands` rows (trace_id, layout, band, key) of the given signatures."""
    keys = minhash.band_keys(sig, bands, rows) if len(ids) else np.empty((0, bands), np.uint64)
    return pa.table(
        {
            "trace_id": np.repeat(np.array(ids, dtype=object), bands),
            "layout": pa.array([name] * (len(ids) * bands), type=pa.string()),
            "band": np.tile(np.arange(bands, dtype=np.int16), len(ids)),
            "key": keys.reshape(-1),
        }
    )


def write_bands(store: Store, table: pa.Table, name: str) -> None:
    """Replace the band keys of the table's traces under layout `name` (inside a transaction)."""
    store.con.register("_bands", table)
    store.con.execute(
        "DELETE FROM lsh_bands WHERE layout = ? AND trace_id IN (SELECT DISTINCT trace_id FROM _bands)", [name]
    )
    store.con.execute("INSERT INTO lsh_bands SELECT trace_id, layout, band, key FROM _bands")
    store.con.unregister("_bands")


def signatures(table: pa.Table, column: str) -> np.ndarray:
    """The (n, num_perm) uint32 signatures held as equal-length blobs in a column of an Arrow table."""
    blobs = table.column(column).to_pylist()
    flat = np.frombuffer(b"".join(blobs), dtype=np.uint32)
    return flat.reshape(len(blobs), len(flat) // max(len(blobs), 1))


def ensure_bands(store: Store, members: str, params: str, name: str, bands: int, rows: int, chunk: int) -> int:
    """Compute the missing band keys of layout `name` for the traces selected by the SQL `members`
    from their stored signatures, `chunk` traces at a time; returns how many traces were banded."""
    con = store.con
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _unbanded AS SELECT k.trace_id, row_number() OVER (ORDER BY k.trace_id) - 1 "
        f"AS i FROM dup_keys k SEMI JOIN ({members}) m ON k.trace_id = m.trace_id WHERE k.params = ? AND "
        "k.trace_id NOT IN (SELECT trace_id FROM lsh_bands WHERE layout = ?)",
        [params, name],
    )
    row = con.execute("SELECT count(*) FROM _unbanded").fetchone()
    total = int(row[0]) if row else 0
    for start in range(0, total, chunk):
        part = store.arrow(
            "SELECT k.trace_id, k.signature FROM _unbanded u JOIN dup_keys k USING (trace_id) "
            "WHERE k.params = ? AND u.i >= ? AND u.i < ? ORDER BY k.trace_id",
            [params, start, start + chunk],
        )
        sig = signatures(part, "signature")
        with store.transaction():
            write_bands(store, band_table(part.column(0).to_pylist(), sig, name, bands, rows), name)
    con.execute("DROP TABLE IF EXISTS _unbanded")
    return total


def candidate_pairs(store: Store, members: str, name: str) -> pa.Table:
    """(a, b) id pairs, a < b, of the traces selected by `members` that share a band bucket of layout
    `name`: each bucket becomes a star around its lowest id, enough to connect the bucket."""
    return store.arrow(
        "SELECT DISTINCT root AS a, trace_id AS b FROM (SELECT l.trace_id, min(l.trace_id) OVER "
        f"(PARTITION BY l.band, l.key) AS root FROM lsh_bands l SEMI JOIN ({members}) m ON l.trace_id = m.trace_id "
        "WHERE l.layout = ?) WHERE trace_id <> root ORDER BY a, b",
        [name],
    )


def pair_chunks(store: Store, pairs: pa.Table, params: str) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(pairs, their two signature columns) in chunks, in the pairs' order."""
    for start in range(0, pairs.num_rows, PAIR_CHUNK):
        chunk = pairs.slice(start, PAIR_CHUNK)
        chunk = chunk.append_column("n", pa.array(np.arange(chunk.num_rows)))
        store.con.register("_pairs", chunk)
        sigs = store.arrow(
            "SELECT p.n, ka.signature AS sa, kb.signature AS sb FROM _pairs p "
            "JOIN dup_keys ka ON ka.trace_id = p.a AND ka.params = ? JOIN dup_keys kb ON kb.trace_id = p.b "
            "AND kb.params = ? ORDER BY p.n",
            [params, params],
        )
        store.con.unregister("_pairs")
        yield chunk, sigs


def estimated_similarity(store: Store, pairs: pa.Table, params: str) -> np.ndarray:
    """The MinHash estimate of the Jaccard similarity of each pair, from the stored signatures."""
    out = np.empty(pairs.num_rows)
    for k, (_, sigs) in enumerate(pair_chunks(store, pairs, params)):
        a, b = signatures(sigs, "sa"), signatures(sigs, "sb")
        out[k * PAIR_CHUNK : k * PAIR_CHUNK + len(a)] = (a == b).mean(axis=1)
    return out


def components(a: list[str], b: list[str]) -> tuple[list[str], np.ndarray]:
    """Connected components of the graph with edges a[i]-b[i]: (node ids, component label per node)."""
    nodes = sorted(set(a) | set(b))
    index = {t: i for i, t in enumerate(nodes)}
    pairs = np.array([[index[x], index[y]] for x, y in zip(a, b, strict=True)], dtype=np.int64).reshape(-1, 2)
    labels = minhash.cluster(len(nodes), pairs, np.ones(len(pairs)), 0.0).labels
    return nodes, labels
