"""The curation funnel: one list of rows (stage, in, out, dropped by reason) built from the stages'
stats, which the CLI table, the flow's Markdown artifact and the report all render."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

LABELS = {"leak_gate": "leak gate", "export": "export checks"}


def rows(
    stages: dict[str, dict[str, Any]], records: int | None = None, traces: int | None = None
) -> list[dict[str, Any]]:
    """Funnel rows from the `stages` of a run summary; with `records` (read at ingest) and `traces`
    (in the store), the ingest rows first. The split becomes its two sides; a review stage that
    dropped nothing and a leak gate that is off are left out."""
    out: list[dict[str, Any]] = []
    if records is not None and traces is not None:
        out.append({"stage": "records read", "in": records, "out": records, "dropped": {}})
        out.append({"stage": "ingest", "in": records, "out": traces, "dropped": {}})
    for name, s in stages.items():
        if name == "split":
            if s["dropped"]:  # new traces that join groups already placed on both sides
                out.append({"stage": "split", "in": s["in"], "out": s["kept"], "dropped": s["dropped"]})
            for side in ("train", "holdout"):
                out.append({"stage": side, "in": s["kept"], "out": s["detail"][side], "dropped": {}})
            continue
        if (name == "review" and not s["dropped"]) or (name == "leak_gate" and s["detail"].get("mode") == "off"):
            continue
        out.append({"stage": LABELS.get(name, name), "in": s["in"], "out": s["kept"], "dropped": s["dropped"]})
    return out


def reconciles(funnel: list[dict[str, Any]]) -> bool:
    """Each stage's input is the previous stage's output, each drop is counted once, and the two
    sides add up to what reached the split."""
    chain = [r for r in funnel if r["stage"] not in ("records read", "train", "holdout")]
    sides = [r for r in funnel if r["stage"] in ("train", "holdout")]
    linked = all(a["out"] == b["in"] for a, b in pairwise(chain))
    counted = all(r["in"] - r["out"] == sum(r["dropped"].values()) for r in chain if r["stage"] != "ingest")
    split = not sides or (sum(r["out"] for r in sides) == sides[0]["in"] == (chain[-1]["out"] if chain else 0))
    return linked and counted and split


def markdown(summary: dict[str, Any]) -> str:
    """The funnel of a run summary as the `curation-summary` Markdown: stage, in, kept, dropped by reason;
    the PII redacted and the dataset version written."""
    lines = ["# Curation", "", "| stage | in | kept | dropped |", "|---|---|---|---|"]
    for r in rows(summary["stages"]):
        dropped = ", ".join(f"{k} {v}" for k, v in r["dropped"].items()) or "-"
        lines.append(f"| {r['stage']} | {r['in']} | {r['out']} | {dropped} |")
    pii = summary["stages"].get("redact", {}).get("detail", {}).get("entities") or {}
    if pii:
        lines += ["", "PII and secrets redacted: " + ", ".join(f"{k} {v}" for k, v in sorted(pii.items()))]
    if "dataset" in summary:
        ds = summary["dataset"]
        lines += [
            "",
            f"Dataset version {ds['version']}{'' if ds['changed'] else ' (unchanged)'}: `{ds['path']}` "
            "(report.html, manifest.json, train.jsonl, holdout.jsonl)",
        ]
    return "\n".join(lines) + "\n"
