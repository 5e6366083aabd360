"""The redact stage: find PII and secrets with presidio in every text of the traces that survived
dedupe, replace them with typed placeholders consistent within a trace (`<PERSON_1>` is the same
person everywhere in that trace), and record what was found — never the original value.

Each distinct text is analyzed once (the system prompt every trace repeats costs one analysis),
in spaCy pipe batches, over process-parallel partitions for big runs."""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from curation import dedupe, names
from curation.fields import exported_fields
from curation.stats import StageStats
from curation.store import Store
from curation.workers import explained, spawn_pool
from schemas.config import RedactConfig, config_hash

# A finding in one text: (entity type, start, end, score, recognizer)
Finding = tuple[str, int, int, float, str]
PARALLEL_MIN_TEXTS = 400
MAX_PIECE_CHARS = 100_000
REDACTOR_VERSION = 3  # bump when a code change should redo earlier redactions


@dataclass
class RedactStats(StageStats):
    """Counts of one redact run; `entities` counts placeholders written per entity type."""

    traces: int = 0
    redacted: int = 0
    already_redacted: int = 0
    quarantined: int = 0
    texts: int = 0
    distinct_texts: int = 0
    entities: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


_ANALYZERS: dict[str, Any] = {}  # one analyzer per config, per process (loading one takes seconds)


def _init_worker(cfg_json: str) -> None:
    from curation.pii import build_analyzer

    if cfg_json not in _ANALYZERS:
        _ANALYZERS[cfg_json] = build_analyzer(RedactConfig.model_validate_json(cfg_json))


def _analyze_chunk(texts: list[str], cfg_json: str) -> list[list[Finding]]:
    """Analyze texts with the process's analyzer through spaCy's pipe; returns findings per text."""
    from presidio_analyzer import BatchAnalyzerEngine

    from curation.pii import entities

    cfg = RedactConfig.model_validate_json(cfg_json)
    _init_worker(cfg_json)
    analyzer = _ANALYZERS[cfg_json]
    batch = BatchAnalyzerEngine(analyzer_engine=analyzer)
    kwargs = {
        "language": "en",
        "batch_size": cfg.batch_size,
        "entities": entities(cfg),
        "allow_list": cfg.allowlist or None,
        "score_threshold": cfg.score_threshold,
    }
    small = [i for i, t in enumerate(texts) if len(t) <= cfg.ner_max_chars]
    large = [i for i, t in enumerate(texts) if len(t) > cfg.ner_max_chars]
    results: list[Any] = [None] * len(texts)
    for i, res in zip(small, batch.analyze_iterator([texts[i] for i in small], **kwargs), strict=True):
        results[i] = res
    if large:  # logs and pasted documents: pattern recognizers only, spaCy reduced to its tokenizer
        with analyzer.nlp_engine.nlp["en"].select_pipes(enable=[]):
            for i, res in zip(large, batch.analyze_iterator([texts[i] for i in large], **kwargs), strict=True):
                results[i] = res
    return [
        [
            (r.entity_type, r.start, r.end, float(r.score), (r.recognition_metadata or {}).get("recognizer_name", ""))
            for r in res
        ]
        for res in results
    ]


def _pieces(text: str, size: int) -> list[tuple[int, str]]:
    """Cut a long text at whitespace into (offset, piece) parts of at most `size` characters
    (spaCy refuses texts over its max_length, and NER cost grows with length)."""
    out, start = [], 0
    while len(text) - start > size:
        cut = max(text.rfind("\n", start, start + size), text.rfind(" ", start, start + size))
        end = cut + 1 if cut > start else start + size
        out.append((start, text[start:end]))
        start = end
    out.append((start, text[start:]))
    return out


def analyze_texts(texts: list[str], cfg: RedactConfig) -> list[list[Finding]]:
    """Findings for each text; distinct texts are analyzed once, long ones in pieces, big runs in
    worker processes."""
    distinct_texts = list(dict.fromkeys(t for t in texts if t.strip()))
    if not distinct_texts:
        return [[] for _ in texts]
    parts = [(t, off, piece) for t in distinct_texts for off, piece in _pieces(t, MAX_PIECE_CHARS)]
    distinct = [p[2] for p in parts]
    cfg_json = cfg.model_dump_json()
    workers = cfg.workers or os.cpu_count() or 1
    if workers < 2 or len(distinct) < PARALLEL_MIN_TEXTS:
        found = _analyze_chunk(distinct, cfg_json)
    else:
        size = -(-len(distinct) // (workers * 4))
        chunks = [distinct[i : i + size] for i in range(0, len(distinct), size)]
        with spawn_pool(workers, _init_worker, (cfg_json,)) as pool, explained("redact.workers"):
            found = [f for part in pool.map(_analyze_chunk, chunks, [cfg_json] * len(chunks)) for f in part]
    by_text: dict[str, list[Finding]] = {}
    for (text, off, _), fs in zip(parts, found, strict=True):
        by_text.setdefault(text, []).extend((e, a + off, b + off, sc, rec) for e, a, b, sc, rec in fs)
    return [by_text.get(t, []) for t in texts]


NER_ENTITIES = frozenset(("PERSON", "LOCATION", "NRP"))


@functools.cache
def _langid() -> Any:
    """One py3langid identifier per process, narrowed to the languages where English NER misfires."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE)
    ident.set_languages(["en", "fr", "es", "de", "it", "pt", "nl"])
    return ident


@functools.lru_cache(maxsize=4096)
def _english(text: str) -> bool:
    """py3langid's guess among en/fr/es/de/it/pt/nl; a text under six words counts as English."""
    return len(text.split()) < 6 or _langid().classify(text)[0] == "en"


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".!?:\n\"'«¿¡"


def _latin(ch: str) -> bool:
    return ch.isalpha() and ord(ch) < 0x250


def clean(finding: Finding, text: str) -> Finding | None:
    """Check a statistical-NER finding: spans running over a line break are cut at it (small models
    glue a signature name to the e-mail address below it), a leading label ("Directed By: ") and a
    trailing possessive are cut, a "person" right after "in"/"mayor of"/... becomes a location, and
    what cannot be a name or place is dropped (JSON keys such as `order_id`, numbers, sign-off words,
    lower-case words except up to three that the NER calls a person right after "i'm", "thanks",
    "my name is"..., a one-word "person" starting a sentence of a text in another language).
    Pattern-based findings pass unchanged."""
    entity, start, end = finding[0], finding[1], finding[2]
    if entity not in NER_ENTITIES or not finding[4].startswith("Spacy"):
        return finding
    while start > 1 and (_latin(text[start - 1]) or (text[start - 1] == "-" and _latin(text[start - 2]))):
        start -= 1  # the NER span began inside a word ("Do-hyun" tokenizes as Do - hyun)
    value = text[start:end]
    if "\n" in value:
        value = value.split("\n", 1)[0].rstrip()
    span = names.name_span(value, lower_ok=entity == "PERSON" and names.after_name_cue(text, start))
    if span is None:
        return None
    one_word = " " not in text[start + span[0] : start + span[1]]
    if entity == "PERSON" and one_word and _sentence_start(text, start + span[0]) and not _english(text[:2000]):
        return None  # a sentence's first word that the English model calls a person: "Tu es", "Rédige un"
    if entity == "PERSON" and names.after_locative(text, start + span[0]):
        entity = "LOCATION"  # the small model calls many cities people: "a login in Kraków"
    return (entity, start + span[0], start + span[1], finding[3], finding[4])


def _merge(findings: list[Finding]) -> list[Finding]:
    """Non-overlapping spans: overlapping findings merge into one span typed by the best score."""
    out: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f[1], -f[2])):
        if out and f[1] < out[-1][2]:
            prev = out[-1]
            best = prev if (prev[3], prev[2] - prev[1]) >= (f[3], f[2] - f[1]) else f
            out[-1] = (best[0], prev[1], max(prev[2], f[2]), max(prev[3], f[3]), best[4])
        else:
            out.append(f)
    return out


def redact_trace(
    messages: list[dict[str, Any]],
    tools: Any,
    fields: list[tuple[int, str, str]],
    findings: list[list[Finding]],
    cfg: RedactConfig,
) -> tuple[list[dict[str, Any]], Any, list[tuple[Any, ...]]]:
    """Apply findings (one list per entry of `fields = exported_fields(messages, tools)`) to a trace.
    Returns the redacted messages and tools, and redaction rows (message index, field, entity, start,
    end, score, recognizer, placeholder)."""
    allow = {a.casefold() for a in cfg.allowlist}
    spans = []
    for (_, _, text), fs in zip(fields, findings, strict=True):
        checked = [c for f in fs if (c := clean(f, text)) is not None]
        spans.append(_merge([f for f in checked if text[f[1] : f[2]].casefold() not in allow]))
    # Consistency: a value found anywhere in the trace is redacted everywhere in the trace.
    # Single words found by NER stay where they were found: spreading them would spread errors.
    values: dict[str, Finding] = {}
    for (_, _, text), fs in zip(fields, spans, strict=True):
        for f in fs:
            value = text[f[1] : f[2]]
            if f[0] not in NER_ENTITIES or len(value.split()) > 1:
                values.setdefault(value, f)
    for k, (_, _, text) in enumerate(fields):
        extra = []
        for value, f in values.items():
            if len(value) < 3:
                continue
            start = text.find(value)
            while start >= 0:
                extra.append((f[0], start, start + len(value), f[3], "consistency"))
                start = text.find(value, start + 1)
        if extra:
            spans[k] = _merge(spans[k] + extra)
    numbers: dict[tuple[str, str], str] = {}
    counters: Counter[str] = Counter()
    redacted_texts, rows = [], []
    for (i, name, text), fs in zip(fields, spans, strict=True):
        pieces, last = [], 0
        for entity, start, end, score, recognizer in fs:
            key = (entity, text[start:end].casefold())
            if key not in numbers:
                counters[entity] += 1
                numbers[key] = f"<{entity}_{counters[entity]}>"
            pieces += [text[last:start], numbers[key]]
            last = end
            rows.append((i, name, entity, start, end, round(score, 4), recognizer, numbers[key]))
        redacted_texts.append("".join([*pieces, text[last:]]))
    out = [dict(m) for m in messages]
    new_tools = tools
    for (i, name, _), text in zip(fields, redacted_texts, strict=True):
        if i < 0:
            new_tools = orjson.loads(text)
        elif name in ("content", "name"):
            out[i][name] = text
        else:
            j = int(name.split("[")[1].split("]")[0])
            calls = out[i]["tool_calls"] = [dict(c) for c in out[i]["tool_calls"]]
            calls[j]["arguments"] = text
    return out, new_tools, rows


def run(store: Store, cfg: RedactConfig | None = None) -> RedactStats:
    """Redact every trace kept by dedupe that has no redaction under this config yet."""
    cfg = cfg or RedactConfig()
    started = time.perf_counter()
    stats = RedactStats()
    digest = f"{config_hash(cfg)}-v{REDACTOR_VERSION}"
    kept = dedupe.kept_ids(store)
    stats.traces = len(kept)
    done = {
        r[0]
        for r in store.con.execute("SELECT trace_id FROM redacted_messages WHERE config_hash = ?", [digest]).fetchall()
    }
    todo = [t for t in kept if t not in done]
    stats.already_redacted = len(kept) - len(todo)
    store.con.register("_todo", pa.table({"trace_id": todo}))
    rows = store.con.execute(
        "SELECT trace_id, messages, tools FROM traces WHERE trace_id IN (SELECT trace_id FROM _todo) ORDER BY trace_id"
    ).fetchall()
    store.con.unregister("_todo")
    traces = [(tid, orjson.loads(m), orjson.loads(t) if t else None) for tid, m, t in rows]
    all_fields = [exported_fields(m, t) for _, m, t in traces]
    texts = [text for fs in all_fields for _, _, text in fs]
    stats.texts, stats.distinct_texts = len(texts), len(set(texts))
    findings = analyze_texts(texts, cfg)
    out_rows, redaction_rows, failures = [], [], []
    pos = 0
    for (tid, messages, tools), fs in zip(traces, all_fields, strict=True):
        mine = findings[pos : pos + len(fs)]
        pos += len(fs)
        try:
            new_messages, new_tools, found = redact_trace(messages, tools, fs, mine, cfg)
        except (ValueError, KeyError, IndexError, TypeError, orjson.JSONDecodeError) as exc:
            failures.append((tid, "redact_error", f"{type(exc).__name__}: {exc}"))
            continue
        out_rows.append(
            (
                tid,
                orjson.dumps(new_messages).decode(),
                orjson.dumps(new_tools).decode() if new_tools is not None else None,
                len(found),
            )
        )
        redaction_rows += [(tid, *r) for r in found]
        stats.entities.update(r[2] for r in found)
    _write(store, out_rows, redaction_rows, failures, digest)
    stats.redacted, stats.quarantined = len(out_rows), len(failures)
    stats.seconds = time.perf_counter() - started
    return stats


def _write(
    store: Store,
    out_rows: list[tuple[Any, ...]],
    redaction_rows: list[tuple[Any, ...]],
    failures: list[tuple[str, str, str]],
    digest: str,
) -> None:
    redacted = pa.table(
        {
            "trace_id": [r[0] for r in out_rows],
            "messages": [r[1] for r in out_rows],
            "tools": pa.array([r[2] for r in out_rows], type=pa.string()),
            "n": [r[3] for r in out_rows],
        }
    )
    cols = (
        "trace_id",
        "message_index",
        "field",
        "entity_type",
        "start_offset",
        "end_offset",
        "score",
        "recognizer",
        "placeholder",
    )
    found = pa.table(
        {
            c: pa.array(
                [r[k] for r in redaction_rows],
                type=pa.int32()
                if c in ("message_index", "start_offset", "end_offset")
                else pa.float64()
                if c == "score"
                else pa.string(),
            )
            for k, c in enumerate(cols)
        }
    )
    with store.transaction(_redacted=redacted, _found=found) as con:
        con.execute("DELETE FROM redactions WHERE trace_id IN (SELECT trace_id FROM _redacted)")
        con.execute("DELETE FROM redacted_messages WHERE trace_id IN (SELECT trace_id FROM _redacted)")
        con.execute(
            "INSERT INTO redacted_messages (trace_id, messages, tools, n_redactions, config_hash) "
            "SELECT trace_id, messages, tools, n, ? FROM _redacted",
            [digest],
        )
        con.execute(f"INSERT INTO redactions ({', '.join(cols)}) SELECT * FROM _found")
        store.quarantine_traces("redact", failures)
