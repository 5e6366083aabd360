"""LangSmith run exports: one run per record (llm runs become traces; feedback attached), and
ingestion payloads `{post: [...], patch: [...]}` whose create/update halves are merged by run id."""

from __future__ import annotations

from typing import Any

from curation.ingest.adapters.openai import chat_exchange
from curation.ingest.normalize import (
    RecordError,
    each,
    latency_ms,
    messages_from_any,
    to_datetime,
    usage_from,
)


def _is_run(r: Any) -> bool:
    return isinstance(r, dict) and "run_type" in r and ("inputs" in r or "outputs" in r)


def detect(obj: dict[str, Any]) -> bool:
    return _is_run(obj) or (isinstance(obj.get("post"), list) and any(_is_run(r) for r in obj["post"]))


def runs(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The runs of a record, with post/patch halves merged by id."""
    if _is_run(obj):
        return [("<record>", obj)]
    merged: dict[Any, dict[str, Any]] = {}
    where: dict[Any, str] = {}
    for key in ("post", "patch"):
        for i, r in enumerate(obj.get(key) or []):
            if isinstance(r, dict):
                merged.setdefault(r.get("id"), {}).update({k: v for k, v in r.items() if v not in (None, {}, [])})
                where.setdefault(r.get("id"), f"{key}[{i}]")
    return [(where[k], r) for k, r in merged.items()]


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
    if run.get("run_type") != "llm":
        raise RecordError("not_a_generation", f"{where}.run_type: '{run.get('run_type')}' run, not an llm run")
    inputs = run.get("inputs") or {}
    outputs = run.get("outputs") or {}
    if isinstance(inputs.get("messages"), list) and inputs["messages"] and isinstance(inputs["messages"][0], dict):
        rec = chat_exchange(inputs, outputs if "choices" in outputs else None, (f"{where}.inputs.", f"{where}.outputs"))
        if "choices" not in outputs:
            rec["messages"] += messages_from_any(
                outputs.get("generations") or outputs, "assistant", f"{where}.outputs"
            )[0]
    else:
        inp, _ = messages_from_any(inputs.get("messages") or inputs.get("prompts") or inputs, "user", f"{where}.inputs")
        out, finish = messages_from_any(outputs.get("generations") or outputs, "assistant", f"{where}.outputs")
        rec = {"messages": inp + out, "finish_reason": finish}
    extra = run.get("extra") or {}
    meta = extra.get("metadata") if isinstance(extra, dict) else None
    usage = usage_from(outputs.get("usage_metadata")) or usage_from(outputs.get("usage"))
    if not any(usage.values()):
        usage = {"input_tokens": run.get("prompt_tokens"), "output_tokens": run.get("completion_tokens")}
    rec.update(
        source_id=str(run.get("id")),
        session_id=(meta or {}).get("thread_id") or (meta or {}).get("session_id") or run.get("trace_id"),
        created_at=to_datetime(run.get("start_time")),
        latency_ms=latency_ms(run.get("start_time"), run.get("end_time")),
        model=rec.get("model") or (meta or {}).get("ls_model_name"),
        tags=[str(t) for t in run.get("tags") or []],
        usage=usage,
        feedback=_feedback(run),
        metadata={
            **rec.get("metadata", {}),
            "langsmith_trace_id": run.get("trace_id"),
            "run_name": run.get("name"),
            "project": run.get("session_name") or run.get("session_id"),
            "run_metadata": meta,
        },
    )
    if run.get("error"):
        rec["error"] = str(run["error"])
    return rec


def parse(obj: dict[str, Any]) -> list[dict[str, Any] | RecordError]:
    return each(runs(obj), parse_run)
