"""What changed since the previous dataset version: the opening of the curation report, the dataset
card's change line and the description of the reviewer's approval form.

`diff` compares this run with the parent version's folder: rows per split by trace id (its
`trace_ids.json`), drop reasons, PII types and duplicate cluster ids (its `report.json`: `reasons`,
`pii`, `duplicates.cluster_ids`). A parent file that is missing or unreadable is named in `problems`
and that part is not compared; the run goes on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from schemas.dataset import MANIFEST, TRACE_IDS

SPLITS = ("train", "holdout")
SAMPLE = 5  # new rows shown
LISTED = 5  # new cluster ids / removed rows shown
TEXT = 300  # excerpt length in the payload
CELL = 120  # excerpt length in a Markdown table cell


def _read(folder: Path, name: str, problems: list[str]) -> Any:
    """A parent's JSON file, or None (with the problem noted) when it is missing or unreadable."""
    path = folder / name
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        problems.append(f"{folder.name}/{name} is missing")
    except (OSError, orjson.JSONDecodeError) as exc:
        problems.append(f"{folder.name}/{name} could not be read ({type(exc).__name__})")
    return None


def _version(folder: Path, report: Any) -> int | None:
    if isinstance(report, dict) and isinstance(report.get("version"), int):
        return report["version"]
    digits = folder.name.lstrip("v")
    return int(digits) if digits.isdigit() else None


def _messages(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An export row's messages in the shape `report.excerpt` reads (tool calls by name)."""
    out = []
    for m in row.get("messages") or []:
        calls = [{"name": (c.get("function") or {}).get("name", "?")} for c in m.get("tool_calls") or []]
        out.append({**m, "tool_calls": calls} if calls else m)
    return out


def row_excerpt(row: Mapping[str, Any], limit: int = TEXT) -> dict[str, str]:
    """The last user and assistant text of an export row (chat or prompt/completion), shortened."""
    from curation.report import excerpt

    if "prompt" in row:
        prompt = str(row.get("prompt") or "").removesuffix("assistant:").rstrip()
        completion = str(row.get("completion") or "").strip()
        return {
            "user": prompt if len(prompt) <= limit else "[...] " + prompt[-limit:],
            "assistant": completion if len(completion) <= limit else completion[:limit] + " [...]",
        }
    return excerpt(_messages(row), limit)


def _deltas(before: Mapping[str, int], now: Mapping[str, int], key: str) -> list[dict[str, Any]]:
    return [
        {key: k, "before": before.get(k, 0), "now": now.get(k, 0), "delta": now.get(k, 0) - before.get(k, 0)}
        for k in sorted(set(before) | set(now))
        if now.get(k, 0) != before.get(k, 0)
    ]


def _flat(reasons: Any) -> dict[str, int]:
    """stage -> reason -> count as `stage:reason` -> count."""
    if not isinstance(reasons, dict):
        return {}
    return {
        f"{stage}:{reason}": int(n)
        for stage, rs in reasons.items()
        if isinstance(rs, dict)
        for reason, n in rs.items()
        if isinstance(n, int)
    }


def _pii(report: dict[str, Any]) -> dict[str, int] | None:
    items = report.get("pii")
    if not isinstance(items, list):
        return None
    return {str(p["entity"]): int(p["found"]) for p in items if isinstance(p, dict) and "entity" in p}


def diff(
    parent: Path | None,
    train_ids: list[str],
    holdout_ids: list[str],
    rows_by_id: Mapping[str, Mapping[str, Any]],
    reasons: Mapping[str, Mapping[str, int]],
    pii: Mapping[str, int],
    clusters: Iterable[str],
    dropped: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The changes of this run against the version in folder `parent` (None: the first version).

    `rows_by_id`: this version's export rows by trace id; `reasons`: stage -> reason -> count;
    `pii`: entity type -> redactions in the exported rows; `clusters`: duplicate cluster ids;
    `dropped`: trace id -> `stage:reason` of this run's drops (why a parent row was removed)."""
    now = {"train": list(train_ids), "holdout": list(holdout_ids)}
    if parent is None:
        n, m = len(now["train"]), len(now["holdout"])
        return {
            "parent_version": None,
            "first_version": True,
            "summary": f"first version: {n} train and {m} holdout rows",
            "splits": {s: {"before": 0, "added": len(now[s]), "removed": 0, "now": len(now[s])} for s in SPLITS},
            "reasons": [],
            "pii": [],
            "clusters": {"new": None, "ids": []},
            "sample": [],
            "removed_sample": [],
            "problems": [],
        }
    problems: list[str] = []
    ids = _read(parent, TRACE_IDS, problems)
    rep = _read(parent, "report.json", problems)
    rep = rep if isinstance(rep, dict) else {}
    if ids is not None and not (isinstance(ids, dict) and all(isinstance(ids.get(s), list) for s in SPLITS)):
        problems.append(f"{parent.name}/{TRACE_IDS} does not list train and holdout trace ids")
        ids = None
    splits: dict[str, dict[str, Any]] = {}
    added: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    for s in SPLITS:
        if ids is None:
            splits[s] = {"before": None, "added": None, "removed": None, "now": len(now[s])}
            continue
        before, after = {str(t) for t in ids[s]}, set(now[s])
        added[s], removed[s] = sorted(after - before), sorted(before - after)
        why = Counter((dropped or {}).get(t, "still kept") for t in removed[s])
        splits[s] = {
            "before": len(ids[s]),
            "added": len(added[s]),
            "removed": len(removed[s]),
            "now": len(now[s]),
            "added_ids": added[s],
            "removed_ids": removed[s],
            "removed_by_reason": dict(sorted(why.items())),
        }
    parent_reasons = rep.get("reasons")
    if parent_reasons is None and rep:
        problems.append(f"{parent.name}/report.json has no drop reasons")
    if parent_reasons is None:  # an older or damaged report: the manifest has them too
        manifest = _read(parent, MANIFEST, [])
        parent_reasons = manifest.get("reasons") if isinstance(manifest, dict) else None
    parent_pii = _pii(rep) if rep else None
    parent_clusters = rep.get("duplicates", {}).get("cluster_ids") if isinstance(rep.get("duplicates"), dict) else None
    if rep and parent_pii is None:
        problems.append(f"{parent.name}/report.json has no PII counts")
    if rep and not isinstance(parent_clusters, list):
        problems.append(f"{parent.name}/report.json has no duplicate cluster ids (made by an older version)")
    new_clusters = sorted(set(clusters) - set(parent_clusters)) if isinstance(parent_clusters, list) else None
    picks = [("holdout", t) for t in added.get("holdout", [])[:2]]
    picks = [("train", t) for t in added.get("train", [])[: SAMPLE - len(picks)]] + picks
    picks += [("holdout", t) for t in added.get("holdout", [])[2 : 2 + SAMPLE - len(picks)]]
    version = _version(parent, rep)
    counts = ", ".join(
        f"{splits[s]['now']} {s} (+{splits[s]['added']} -{splits[s]['removed']})" if ids is not None else f"{s} ?"
        for s in SPLITS
    )
    return {
        "parent_version": version,
        "first_version": False,
        "summary": f"since v{version}: {counts}" if ids is not None else f"since v{version}: rows not compared",
        "splits": splits,
        "reasons": _deltas(_flat(parent_reasons), _flat(reasons), "reason") if parent_reasons is not None else None,
        "pii": _deltas(parent_pii, dict(pii), "entity") if parent_pii is not None else None,
        "clusters": {
            "new": len(new_clusters) if new_clusters is not None else None,
            "ids": (new_clusters or [])[:LISTED],
        },
        "sample": [{"trace_id": t, "split": s, **row_excerpt(rows_by_id.get(t, {}))} for s, t in picks],
        "removed_sample": [
            {"trace_id": t, "split": s, "reason": (dropped or {}).get(t, "still kept")}
            for s in SPLITS
            for t in removed.get(s, [])[:LISTED]
        ],
        "problems": problems,
    }


def _cell(text: Any, limit: int = CELL) -> str:
    """Table-cell text: one line, shortened, `|` and HTML escaped."""
    s = " ".join(str(text if text is not None else "").split())
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("\\", "\\\\").replace("|", "\\|")


def _num(n: Any) -> str:
    return "?" if n is None else str(n)


def _code(text: Any, limit: int = 60) -> str:
    """Inline code outside a table: one line, no backticks, shortened."""
    s = " ".join(str(text).replace("`", "'").split())
    return f"`{s if len(s) <= limit else s[: limit - 1] + '…'}`"


def _table(head: list[str], rows: list[list[Any]], numeric: int = 0) -> list[str]:
    """A Markdown table (blank line before it); the last `numeric` columns right-aligned."""
    align = ["---"] * (len(head) - numeric) + ["---:"] * numeric
    return ["", *("| " + " | ".join(map(str, r)) + " |" for r in [head, align, *rows])]


def markdown(changes: Mapping[str, Any]) -> str:
    """The changes as short Markdown (the approval form's description and a flow artifact)."""
    if changes.get("first_version"):
        return f"## First version\n\n{changes['summary']}; nothing to compare with.\n"
    lines = [f"## Changes since v{_num(changes.get('parent_version'))}", "", changes["summary"]]
    splits = changes["splits"]
    lines += _table(
        ["split", "before", "added", "removed", "now"],
        [[s, *(_num(d[k]) for k in ("before", "added", "removed", "now"))] for s, d in splits.items()],
        numeric=4,
    )
    why: Counter[str] = Counter()
    for d in splits.values():
        why.update(d.get("removed_by_reason") or {})
    if why:
        lines += ["", "Removed rows by reason: " + ", ".join(f"{_code(r)} {n}" for r, n in sorted(why.items()))]
        shown = changes.get("removed_sample") or []
        more = ", ..." if sum(why.values()) > len(shown) else ""
        lines += [
            "",
            "Removed: " + ", ".join(f"{_code(r['trace_id'])} ({r['split']}, {r['reason']})" for r in shown) + more,
        ]
    for title, key, name in (("Drop reasons", "reasons", "reason"), ("PII found", "pii", "entity")):
        rows = changes.get(key)
        lines += ["", f"**{title}**: " + ("not compared" if rows is None else "changed" if rows else "no change")]
        if rows:
            body = [[_cell(r[name]), r["before"], r["now"], f"{r['delta']:+d}"] for r in rows]
            lines += _table([name, "before", "now", "change"], body, numeric=3)
    c = changes["clusters"]
    listed = ", ".join(_code(i) for i in c["ids"])
    more = ", ..." if c["new"] and c["new"] > len(c["ids"]) else ""
    lines += ["", f"**New duplicate clusters**: {_num(c['new'])}" + (f" ({listed}{more})" if listed else "")]
    if changes.get("sample"):
        lines += ["", "**New rows** (sample, redacted):"]
        body = [
            [_cell(r["trace_id"], 60), r["split"], _cell(r["user"]), _cell(r["assistant"])] for r in changes["sample"]
        ]
        lines += _table(["trace", "split", "user", "assistant"], body)
    if changes.get("problems"):
        lines += ["", "**Not compared**: " + "; ".join(changes["problems"])]
    return "\n".join(lines).rstrip() + "\n"
