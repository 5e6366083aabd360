"""LangSmith runs: run exports (one run per record), and the ingestion payloads of the SDKs, whose
create (`post`) and update (`patch`) halves of a run are merged by run id: inside one
`{post: [...], patch: [...]}` document, or across the lines and files of one ingest call (a half
whose other half is elsewhere is returned as a `RunHalf` and joined by the ingest loop). llm runs
become traces; feedback is attached."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curation.ingest.adapters.openai import chat_exchange
from curation.ingest.adapters.responses import reasoning_tokens
from curation.ingest.normalize import (
    RecordError,
    each,
    latency_ms,
    to_datetime,
    usage_from,
)
from curation.ingest.shapes import exchange, facts, messages_from_any

_PATCH_KEYS = ("dotted_order", "trace_id", "parent_run_id")


@dataclass(slots=True)
class RunHalf:
    """One half of a run (`post`: create, `patch`: update) waiting for the other half with its run id.
    `line`, `raw_key` and `file` are set by the parser; `where` is the field path in the record."""

    kind: str
    run_id: str
    run: dict[str, Any]
    where: str = "<record>"
    line: int = 0
    raw_key: str = ""
    file: str = ""


def _is_run(r: Any) -> bool:
    return isinstance(r, dict) and "run_type" in r and ("inputs" in r or "outputs" in r)


def is_patch(r: Any) -> bool:
    """A bare update payload: run id, outputs/end_time, trace ids, and no run_type."""
    return (
        isinstance(r, dict)
        and "id" in r
        and "run_type" not in r
        and ("outputs" in r or "end_time" in r)
        and any(k in r for k in _PATCH_KEYS)
    )


def awaits_patch(run: dict[str, Any]) -> bool:
    """A create payload that its update completes: no outputs, end time or error yet."""
    return not run.get("outputs") and not run.get("end_time") and not run.get("error")


def detect(obj: dict[str, Any]) -> bool:
    if _is_run(obj) or is_patch(obj):
        return True
    post, patch = obj.get("post"), obj.get("patch")
    if isinstance(post, list) and any(_is_run(r) for r in post):
        return True
    return isinstance(patch, list) and any(isinstance(r, dict) and "id" in r for r in patch)


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The halves of one run (create first) folded into one run; empty values never overwrite."""
    run: dict[str, Any] = {}
    for r in parts:
        run.update({k: v for k, v in r.items() if v not in (None, {}, [])})
    return run


def _half(kind: str, run: dict[str, Any], where: str) -> RunHalf:
    if kind == "post" and run.get("run_type") != "llm":  # only its type matters: keep little in memory
        run = {k: run[k] for k in ("id", "run_type", "name") if k in run}
    return RunHalf(kind, str(run.get("id")), run, where)


def runs(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any] | RunHalf]]:
    """The runs of a record, with post/patch halves merged by id; a half whose other half is not in
    this record comes back as a RunHalf."""
    if _is_run(obj):
        return [("<record>", _half("post", obj, "<record>") if awaits_patch(obj) and "id" in obj else obj)]
    if is_patch(obj):
        return [("<record>", _half("patch", obj, "<record>"))]
    groups: dict[Any, dict[str, list[Any]]] = {}
    for key in ("post", "patch"):
        for i, r in enumerate(obj.get(key) or []):
            if isinstance(r, dict):
                g = groups.setdefault(r.get("id"), {"post": [], "patch": [], "where": []})
                g[key].append(r)
                g["where"].append(f"{key}[{i}]")
    out: list[tuple[str, dict[str, Any] | RunHalf]] = []
    for run_id, g in groups.items():
        where = g["where"][0]
        run = merge(g["post"] + g["patch"])
        if run_id is not None and not g["post"]:
            out.append((where, _half("patch", run, where)))
        elif run_id is not None and not g["patch"] and awaits_patch(run):
            out.append((where, _half("post", run, where)))
        else:
            out.append((where, run))
    return out


def _feedback(run: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in run.get("feedback") or []:
        if isinstance(f, dict):
            value = f.get("score") if f.get("score") is not None else f.get("value")
            src = f.get("feedback_source")
            out.append(
                {
                    "name": str(f.get("key", "feedback")),
                    "value": value,
                    "comment": f.get("comment"),
                    "source": src.get("type") if isinstance(src, dict) else None,
                }
            )
    stats = run.get("feedback_stats")
    if isinstance(stats, dict) and not out:
        for key, s in stats.items():
            if isinstance(s, dict) and s.get("avg") is not None:
                out.append({"name": str(key), "value": s["avg"], "comment": f"mean of {s.get('n')}", "source": "stats"})
    return out


def parse_run(where: str, run: dict[str, Any]) -> dict[str, Any]:
    """One complete llm run (or a merged post/patch pair) to a partial trace."""
    if run.get("run_type") != "llm":
        raise RecordError("not_a_generation", f"{where}.run_type: '{run.get('run_type')}' run, not an llm run")
    if awaits_patch(run):
        raise RecordError(
            "schema_error",
            f"{where}.outputs: run {run.get('id')} has empty outputs and its patch (the update with outputs and "
            "end_time) is missing: no patch with this run id among the files ingested together",
        )
    inputs = run.get("inputs") or {}
    outputs = run.get("outputs") or {}
    info: dict[str, Any] = {}
    if isinstance(inputs.get("messages"), list) and inputs["messages"] and isinstance(inputs["messages"][0], dict):
        rec = chat_exchange(inputs, outputs if "choices" in outputs else None, (f"{where}.inputs.", f"{where}.outputs"))
        if "choices" not in outputs:
            rec["messages"] += messages_from_any(
                outputs.get("generations") or outputs, "assistant", f"{where}.outputs"
            )[0]
        info = facts(outputs)
    else:
        inp = inputs.get("messages") or inputs.get("prompts") or inputs
        messages, finish, info = exchange(
            inp, outputs.get("generations") or outputs, f"{where}.inputs", f"{where}.outputs"
        )
        rec = {"messages": messages, "finish_reason": finish, "tools": info.get("tools") or facts(inputs).get("tools")}
    extra = run.get("extra") or {}
    meta = extra.get("metadata") if isinstance(extra, dict) else None
    usage = usage_from(outputs.get("usage_metadata")) or usage_from(outputs.get("usage"))
    if not any(usage.values()):
        usage = {"input_tokens": run.get("prompt_tokens"), "output_tokens": run.get("completion_tokens")}
    reasoning = reasoning_tokens(outputs.get("usage_metadata")) or info.get("reasoning_tokens")
    rec.update(
        where=where,
        source_id=str(run.get("id")),
        session_id=(meta or {}).get("thread_id") or (meta or {}).get("session_id") or run.get("trace_id"),
        created_at=to_datetime(run.get("start_time")),
        latency_ms=latency_ms(run.get("start_time"), run.get("end_time")),
        model=rec.get("model") or info.get("model") or (meta or {}).get("ls_model_name"),
        tags=[str(t) for t in run.get("tags") or []],
        usage=usage,
        feedback=_feedback(run),
        metadata={
            **rec.get("metadata", {}),
            "langsmith_trace_id": run.get("trace_id"),
            "run_name": run.get("name"),
            "project": run.get("session_name") or run.get("session_id"),
            "run_metadata": meta,
            "reasoning_items": info.get("reasoning_items"),
            "reasoning_tokens": reasoning,
        },
    )
    if info.get("error") and not run.get("error"):
        rec["error"] = info["error"]
    if run.get("error"):
        rec["error"] = str(run["error"])
    return rec


def parse(obj: dict[str, Any]) -> list[dict[str, Any] | RecordError | RunHalf]:
    out: list[dict[str, Any] | RecordError | RunHalf] = []
    for where, r in runs(obj):
        if isinstance(r, RunHalf):
            out.append(r)
        else:
            out += each([(where, r)], parse_run)
    return out
