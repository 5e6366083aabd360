"""Redaction: find PII and secrets with presidio in the texts of a trace, replace them with typed
placeholders consistent within the trace (`<PERSON_1>` is the same person everywhere in that
trace), and say what was found — never the original value.

Distinct texts are analyzed once, in spaCy pipe batches, in a pool of analyzer processes for big
partitions. The stage over the store is `curation.redact_stage`."""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any

import orjson

from curation import names
from curation.workers import explained, processes, spawn_pool
from schemas.config import RedactConfig

# A finding in one text: (entity type, start, end, score, recognizer)
Finding = tuple[str, int, int, float, str]
PARALLEL_MIN_TEXTS = 400
MAX_PIECE_CHARS = 100_000
REDACTOR_VERSION = 4  # bump when a code change should redo earlier redactions


_ANALYZERS: dict[str, Any] = {}  # one analyzer per config, per process (loading one takes seconds)


def _start_worker(cfg_json: str) -> None:
    """An analyzer process starts: the model loaded once; one process per core, so no BLAS threads beside
    it (limited once numpy's BLAS is loaded)."""
    from threadpoolctl import threadpool_limits

    _init_worker(cfg_json)
    threadpool_limits(1, user_api="blas")


def _init_worker(cfg_json: str) -> None:
    from curation.pii import build_analyzer

    if cfg_json not in _ANALYZERS:
        _ANALYZERS[cfg_json] = build_analyzer(RedactConfig.model_validate_json(cfg_json))


def _analyze_chunk(texts: list[str], cfg_json: str) -> list[list[Finding]]:
    """Analyze texts with the process's analyzer through spaCy's pipe; returns findings per text."""
    from curation.pii import batch_analyzer, entities

    cfg = RedactConfig.model_validate_json(cfg_json)
    _init_worker(cfg_json)
    analyzer = _ANALYZERS[cfg_json]
    batch = batch_analyzer(analyzer)
    kwargs = {
        "language": "en",
        "batch_size": cfg.batch_size,
        "entities": entities(cfg),
        "allow_list": cfg.allowlist or None,
        "score_threshold": cfg.score_threshold,
    }
    results = batch.analyze_iterator(texts, **kwargs)
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


def analyze_texts(texts: list[str], cfg: RedactConfig, pool: Executor | None = None) -> list[list[Finding]]:
    """Findings for each text; distinct texts are analyzed once, long ones in pieces, many of them in
    the processes of `pool` when given (`analyzer_pool`)."""
    distinct_texts = list(dict.fromkeys(t for t in texts if t.strip()))
    if not distinct_texts:
        return [[] for _ in texts]
    parts = [(t, off, piece) for t in distinct_texts for off, piece in _pieces(t, MAX_PIECE_CHARS)]
    distinct = [p[2] for p in parts]
    cfg_json = cfg.model_dump_json()
    if pool is None or len(distinct) < PARALLEL_MIN_TEXTS:
        found = _analyze_chunk(distinct, cfg_json)
    else:
        size = -(-len(distinct) // (workers(cfg) * 4))
        chunks = [distinct[i : i + size] for i in range(0, len(distinct), size)]
        with explained("redact.workers"):
            found = [f for part in pool.map(_analyze_chunk, chunks, [cfg_json] * len(chunks)) for f in part]
    by_text: dict[str, list[Finding]] = {}
    for (text, off, _), fs in zip(parts, found, strict=True):
        by_text.setdefault(text, []).extend((e, a + off, b + off, sc, rec) for e, a, b, sc, rec in fs)
    return [by_text.get(t, []) for t in texts]


def workers(cfg: RedactConfig) -> int:
    """Analyzer processes: as configured, else one per core."""
    return processes(cfg.workers)


@contextmanager
def analyzer_pool(cfg: RedactConfig) -> Iterator[LazyPool]:
    """A pool of analyzer processes for one run, started on first use (None when `redact.workers` is 1)."""
    lazy = LazyPool(cfg)
    try:
        yield lazy
    finally:
        if lazy.pool is not None:
            lazy.pool.shutdown()


class LazyPool:
    """Starts the analyzer processes (each loads the model once) the first time they are needed."""

    def __init__(self, cfg: RedactConfig) -> None:
        self.cfg = cfg
        self.pool: Executor | None = None

    def get(self, n_texts: int) -> Executor | None:
        if self.pool is None and workers(self.cfg) > 1 and n_texts >= PARALLEL_MIN_TEXTS:
            self.pool = spawn_pool(workers(self.cfg), _start_worker, (self.cfg.model_dump_json(),))
        return self.pool


def analyzer_digest(cfg: RedactConfig) -> str:
    """What a text's findings and a trace's redaction depend on: the analysis settings and the redactor
    version (not the worker count, the batch size or the leak gate)."""
    keep = (
        "entities",
        "custom_entities",
        "allowlist",
        "score_threshold",
        "spacy_model",
        "ner_window",
        "ner_max_chars",
    )
    settings = orjson.dumps({k: getattr(cfg, k) for k in keep}, option=orjson.OPT_SORT_KEYS)
    return f"{hashlib.sha256(settings).hexdigest()[:16]}-v{REDACTOR_VERSION}"


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
            calls[j][name.rsplit(".", 1)[1]] = text
    return out, new_tools, rows
