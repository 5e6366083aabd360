"""Answer metrics and statistics: per-example scores of a generated answer against its reference (JSON parse,
schema validity, field accuracy, exact match, ROUGE-L, refusal, length ratio), the paired bootstrap interval of
adapter minus base, and the promotion verdict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from schemas.evaluation import METRICS, EvalConfig

JSON_METRICS = ("json_parse", "schema_valid", "field_accuracy")


# ---- per-example metrics ------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.S)


def parse_json(text: str) -> Any:
    """The JSON value of a whole answer (surrounding whitespace and one ```json fence allowed), else None."""
    s = text.strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1).strip()
    if not s or s[0] not in "{[":
        return None
    try:
        return json.loads(s)
    except ValueError:
        return None


def schema_valid(value: Any, schema: dict[str, Any] | None) -> bool:
    """Whether a parsed answer validates against the JSON schema (any parsed value when there is no schema)."""
    if value is None:
        return False
    if not schema:
        return True
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    return cls(schema).is_valid(value)


def _norm(v: Any) -> Any:
    if isinstance(v, str):
        return " ".join(v.split()).lower()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def field_accuracy(pred: Any, ref: Any, skip: Sequence[str] = ()) -> float:
    """Share of the reference object's top-level fields that the prediction has with an equal value (strings
    compared case- and whitespace-insensitively); 0 when the prediction is not an object."""
    if not isinstance(ref, dict):
        return float(_norm(pred) == _norm(ref)) if pred is not None else 0.0
    keys = [k for k in ref if k not in skip]
    if not keys:
        return float(isinstance(pred, dict))
    if not isinstance(pred, dict):
        return 0.0
    return sum(1 for k in keys if k in pred and _norm(pred[k]) == _norm(ref[k])) / len(keys)


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a) * len(b)) time, O(len(b)) memory)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F1 over lower-cased word and punctuation tokens."""
    p, r = _WORD.findall(pred.lower()), _WORD.findall(ref.lower())
    if not p or not r:
        return float(p == r)
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    prec, rec = lcs / len(p), lcs / len(r)
    return 2 * prec * rec / (prec + rec)


def is_refusal(text: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    """Whether an answer matches one of the refusal patterns (the filter's `refusal_patterns`)."""
    return any(p.search(text) for p in patterns)


def exact_match(pred: str, ref: str) -> bool:
    """Equal after stripping surrounding whitespace; JSON answers compare as parsed values."""
    if pred.strip() == ref.strip():
        return True
    a, b = parse_json(pred), parse_json(ref)
    return a is not None and b is not None and a == b


def score_answer(
    pred: str, ref: str, schema: dict[str, Any] | None, refusals: Sequence[re.Pattern[str]]
) -> dict[str, float | None]:
    """Generation metrics of one answer against its reference (JSON metrics are None unless the reference is JSON)."""
    ref_json = parse_json(ref)
    pred_json = parse_json(pred) if ref_json is not None else None
    out: dict[str, float | None] = {
        "exact_match": float(exact_match(pred, ref)),
        "json_parse": None,
        "schema_valid": None,
        "field_accuracy": None,
        "rouge_l": rouge_l(pred, ref),
        "refusal": float(is_refusal(pred, refusals)),
        "length_ratio": len(pred.strip()) / max(len(ref.strip()), 1),
    }
    if ref_json is not None:
        out["json_parse"] = float(pred_json is not None)
        out["schema_valid"] = float(schema_valid(pred_json, schema))
        out["field_accuracy"] = field_accuracy(pred_json, ref_json)
    return out


# ---- statistics ---------------------------------------------------------------------------------------------------


def paired_bootstrap(
    base: Sequence[float],
    adapter: Sequence[float],
    weights: Sequence[float] | None = None,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Percentile interval of adapter minus base, resampling examples (pairs) with replacement.

    The statistic is sum of values / sum of weights (values are per-example totals such as summed token losses,
    weights their token counts; the plain mean without weights), optionally
    transformed (e.g. `np.exp` for perplexity from a mean loss). Returns n, both means, the difference and its
    interval."""
    b, a = np.asarray(base, dtype=float), np.asarray(adapter, dtype=float)
    if b.shape != a.shape:
        raise ValueError("paired_bootstrap: base and adapter need one value per example each")
    n = len(b)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    f = transform or (lambda x: x)
    if n == 0 or w.sum() == 0:
        return {"n": n, "base": None, "adapter": None, "diff": None, "ci": [None, None]}
    base_v, adapter_v = f(np.array([b.sum() / w.sum()])), f(np.array([a.sum() / w.sum()]))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(samples, n))
    ws = w[idx].sum(axis=1)
    ws[ws == 0] = np.nan
    diffs = f(a[idx].sum(axis=1) / ws) - f(b[idx].sum(axis=1) / ws)
    alpha = (1 - confidence) / 2
    lo, hi = np.nanquantile(diffs, [alpha, 1 - alpha])
    return {
        "n": n,
        "base": float(base_v[0]),
        "adapter": float(adapter_v[0]),
        "diff": float(adapter_v[0] - base_v[0]),
        "ci": [float(lo), float(hi)],
    }


def verdict(metrics: dict[str, dict[str, Any]], ec: EvalConfig) -> dict[str, Any]:
    """Promotion verdict: every required gain met (and significant when so configured), no metric worse beyond its
    interval, enough examples. Returns {promote, reasons, checks}."""
    checks: list[dict[str, Any]] = []
    n = max((m["n"] for m in metrics.values()), default=0)
    checks.append(
        {"check": "min_examples", "passed": n >= ec.min_examples, "detail": f"{n} examples (need {ec.min_examples})"}
    )
    for name, need in ec.required_gains.items():
        m = metrics.get(name)
        if not m or m["diff"] is None:
            checks.append({"check": f"gain:{name}", "passed": None, "detail": "not measured on this holdout"})
            continue
        sign = METRICS[name] or 1
        gain, ci = sign * m["diff"], sorted(sign * x for x in m["ci"])
        ok = gain >= need - 1e-12
        detail = f"{gain:+.3f} (need ≥ {need:+.3f}), {ec.confidence:.0%} CI [{ci[0]:+.3f}, {ci[1]:+.3f}], n={m['n']}"
        if ok and need > 0 and ec.require_significant and not ci[0] > 0:
            ok, detail = False, detail + "; interval includes 0"
        checks.append({"check": f"gain:{name}", "passed": ok, "detail": detail})
    for name, m in metrics.items():
        if name in ec.ignore_regressions or not METRICS.get(name) or m["diff"] is None:
            continue
        sign = METRICS[name]
        best = max(sign * x for x in m["ci"])  # the interval's bound on the better side
        if best < -ec.regression_tolerance:
            checks.append(
                {
                    "check": f"regression:{name}",
                    "passed": False,
                    "detail": f"adapter worse: {m['diff']:+.3f}, CI [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}], n={m['n']}",
                }
            )
    if not any(c["check"].startswith("regression:") for c in checks):
        checks.append({"check": "regressions", "passed": True, "detail": "no metric worse beyond its interval"})
    failed = [c for c in checks if c["passed"] is False]
    reasons = [f"{c['check']}: {c['detail']}" for c in failed] or [
        f"{c['check']}: {c['detail']}" for c in checks if c["passed"]
    ]
    return {"promote": not failed, "reasons": reasons, "checks": checks}


__all__ = [
    "JSON_METRICS",
    "exact_match",
    "field_accuracy",
    "is_refusal",
    "lcs_length",
    "paired_bootstrap",
    "parse_json",
    "rouge_l",
    "schema_valid",
    "score_answer",
    "verdict",
]
