"""The `decisions` table: one row per trace of the store, written at the end of a curation run from
the stages' own tables: kept (with its side and group) or dropped by the first stage that dropped it."""

from __future__ import annotations

from collections import defaultdict

from curation import split
from curation.stage import Stage
from curation.store import Store
from schemas.config import Config, config_hash


def record(store: Store, stages: list[Stage], cfg: Config) -> None:
    """Rewrite `decisions` for every trace the run curated (the first stage's input): each stage's drops
    among its input, in pipeline order (the first stage that dropped a trace gives its row), then the
    split's keeps; a trace no stage accounts for (a run cut short) is
    `curate:not_reached`. Traces ingested after the run's snapshot get no row until a run curates them."""
    last = stages[-1]
    keeps = (  # session and user ids are raw input: the group is shown hashed
        f"SELECT s.trace_id, 'split' AS stage, 'keep' AS verdict, NULL AS reason, json_object('split', s.split, "
        f"'group', {split.shown_group_sql('s.group_key')})::VARCHAR AS detail "
        f"FROM splits s SEMI JOIN ({last.upstream}) u ON s.trace_id = u.trace_id"
    )
    outcomes = [  # in pipeline order: a trace's first drop wins, one stage at a time (no window over all)
        f"SELECT trace_id, '{s.name}' AS stage, 'drop' AS verdict, reason, coalesce(detail, '{{}}') AS detail "
        f"FROM ({s.dropped()})"
        for s in stages
    ]
    with store.transaction() as con:
        con.execute("DELETE FROM decisions")
        for outcome in [*outcomes, keeps]:
            con.execute(
                "INSERT INTO decisions (trace_id, stage, verdict, reason, detail, config_hash) "
                f"SELECT DISTINCT ON (trace_id) trace_id, stage, verdict, reason, detail, ? FROM ({outcome}) o "
                "WHERE NOT EXISTS (SELECT 1 FROM decisions d WHERE d.trace_id = o.trace_id)",
                [config_hash(cfg)],
            )
        con.execute(
            "INSERT INTO decisions (trace_id, stage, verdict, reason, detail, config_hash) SELECT trace_id, 'curate', "
            f"'drop', 'not_reached', '{{}}', ? FROM ({stages[0].upstream}) "
            "WHERE trace_id NOT IN (SELECT trace_id FROM decisions)",
            [config_hash(cfg)],
        )


def reasons_by_stage(store: Store) -> dict[str, dict[str, int]]:
    """stage -> reason code -> count of the drops in `decisions` and the ingest quarantine."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for stage, reason, n in store.con.execute(
        "SELECT stage, reason, count(*) FROM decisions WHERE verdict = 'drop' GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        out[stage][reason] = n
    for code, n in store.con.execute(
        "SELECT code, count(*) FROM quarantine WHERE stage = 'ingest' GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        out["ingest"][code] = n
    return dict(out)
