"""Generators for the reliability suite: trace files made of the valid records of every format
(tests/fixtures) mutated at the JSON level (wrong types, deleted fields, unknown roles, token counts
>= 2**63, long strings, deep nesting), at the byte level (truncated lines, invalid UTF-8, NUL, BOMs,
garbage, CRLF) and at the file level (JSON arrays, gzip, empty or blank files, blank lines), plus
random JSON. Every generator takes a `random.Random` (seeded by hypothesis in the tests)."""

from __future__ import annotations

import copy
import gzip
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from curation.ingest import formats
from curation.ingest.readers import BOM, TraceFile
from tests.conftest import FIXTURES
from tests.helpers import distinct_logs

Unit = list[dict[str, Any]]  # the lines of one trace: one record, a Batch input + output, a LangSmith post + patch


def _records(path: Path) -> list[Any]:
    with TraceFile(path, 1 << 30) as tf:
        return [orjson.loads(p) if isinstance(p, bytes) else p for _, p in tf.records()]


def _units() -> dict[str, list[Unit]]:
    """The fixtures' records by format, the halves of one trace kept together."""
    by_fmt: dict[str, dict[Any, Unit]] = defaultdict(dict)
    for path in sorted((FIXTURES / "formats").iterdir()) + sorted((FIXTURES / "agents").iterdir()):
        for i, rec in enumerate(_records(path)):
            fmt = formats.detect(rec).name
            key = (
                rec.get("custom_id" if fmt == "openai_batch" else "id")
                if fmt in ("openai_batch", "langsmith")
                else None
            )
            by_fmt[fmt].setdefault(key if isinstance(key, str) else (path.name, i), []).append(rec)
    return {fmt: list(units.values()) for fmt, units in by_fmt.items()}


UNITS = _units()
KEEPERS = [[r] for r in distinct_logs(12, prefix="keep")]  # traces that pass every filter


def renamed(obj: Any, suffix: str) -> Any:
    """A deep copy with every id-like string value suffixed, so that copies of a unit are new traces
    whose halves still join."""
    if isinstance(obj, dict):
        return {
            k: v + suffix if isinstance(v, str) and k.endswith(("id", "Id", "_id", ".id")) else renamed(v, suffix)
            for k, v in obj.items()
        }
    return [renamed(v, suffix) for v in obj] if isinstance(obj, list) else obj


# ---- mutations ---------------------------------------------------------------------------------

WEIRD = [
    None, True, 0, -1, 1.5, "", "x", "narrator", [], {}, [None, 1, "a"], {"k": {"k": []}}, 2**63, 2**64 - 1,
    -(2**63) - 1, 10**30, 1e308, -1e300, "9" * 40, "²", "2026-13-45T99:99:99Z", "\x00", "\ud800", [1, [2, [3]]],
]  # fmt: skip
HUGE_COUNTS = [2**63, 2**63 + 1, 2**64 - 1, 10**25, -5, 3.0, "12", "many"]
ROLES = ["narrator", "", "USER", "bot", "function", "developer", "tool_result", "model", "observation", 7]
BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xf4\x90\x80\x80"]
TEXT = 'aé€😀\u2028\u200f"\\\n\t<>&' + "x" * 10


def _spots(obj: Any, path: tuple = ()) -> list[tuple[Any, Any, tuple]]:
    """Every (container, key, path) below `obj`."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out.append((obj, k, (*path, k)))
        out += _spots(v, (*path, k))
    return out


def nested(depth: int) -> str:
    return f"@@NEST{depth}[@@"


def _nest(rng: random.Random) -> str:
    return (
        f"@@NEST{rng.choice([40, 300, 1000, 1100])}{rng.choice('[{')}@@"  # expanded once dumped (json.dumps recurses)
    )


def mutate(rng: random.Random, rec: dict[str, Any]) -> None:
    """Apply one JSON-level mutation in place."""
    spots = _spots(rec)
    if not spots:
        return
    op = rng.choice(["retype", "delete", "role", "tokens", "long", "nest", "text", "random"])
    pick = {
        "role": [s for s in spots if s[1] in ("role", "from")],
        "tokens": [s for s in spots if "token" in str(s[1]).lower()],
        "long": [s for s in spots if isinstance(s[0][s[1]], str)],
        "text": [s for s in spots if isinstance(s[0][s[1]], str)],
    }.get(op) or spots
    parent, key, _ = rng.choice(pick)
    if op == "delete":
        del parent[key]
    else:
        parent[key] = {
            "retype": lambda: copy.deepcopy(rng.choice(WEIRD)),  # a copy: later mutations must not change WEIRD
            "role": lambda: rng.choice(ROLES),
            "tokens": lambda: rng.choice(HUGE_COUNTS),
            "long": lambda: rng.choice(TEXT) * rng.choice([5_000, 40_000]),
            "nest": lambda: _nest(rng),
            "text": lambda: "".join(rng.choices(TEXT, k=rng.randrange(30))),
            "random": lambda: random_json(rng, 3),
        }.get(op, lambda: copy.deepcopy(rng.choice(WEIRD)))()


def random_json(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(6 if depth else 4)
    if kind < 4:
        return [None, rng.random() < 0.5, rng.randrange(-(2**70), 2**70), "".join(rng.choices(TEXT, k=8))][kind]
    n = rng.randrange(4)
    if kind == 4:
        return [random_json(rng, depth - 1) for _ in range(n)]
    return {
        rng.choice(["messages", "role", "content", "request", "id", "k"]): random_json(rng, depth - 1) for _ in range(n)
    }


def dumps(obj: Any) -> bytes:
    """JSON with the deep-nesting placeholders expanded."""
    data = json.dumps(obj).encode()
    for depth in (40, 300, 1000, 1100):
        for o in "[{":
            inner = b'{"a":' * depth + b"1" + b"}" * depth if o == "{" else b"[" * depth + b"]" * depth
            data = data.replace(f'"@@NEST{depth}{o}@@"'.encode(), inner)
    return data


def mangle(rng: random.Random, line: bytes) -> bytes:
    """Apply one byte-level mutation to a JSONL line."""
    at = rng.randrange(len(line) + 1)
    return {
        "truncate": lambda: line[:at],
        "utf8": lambda: line[:at] + rng.choice(BAD_UTF8) + line[at:],
        "nul": lambda: line[:at] + b"\x00" + line[at:],
        "bom": lambda: BOM + line,
        "crlf": lambda: line + b"\r",
        "garbage": lambda: rng.randbytes(rng.randrange(1, 60)),
    }[rng.choice(["truncate", "utf8", "nul", "bom", "crlf", "garbage"])]()  # fmt: skip


def records(rng: random.Random, n: int, keepers: bool = False) -> list[Any]:
    """`n` units' records: copies of fixture units of random formats (or keepers), mutated or not,
    and random JSON."""
    out: list[Any] = []
    for i in range(n):
        if rng.random() < 0.1:
            out.append(random_json(rng, 4))
            continue
        unit = rng.choice(KEEPERS) if keepers and rng.random() < 0.5 else rng.choice(UNITS[rng.choice(sorted(UNITS))])
        for rec in renamed(unit, f"-u{i}"):
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
                mutate(rng, rec)
            out.append(rec)
    return out


def corpus(rng: random.Random, n: int, keepers: bool = False) -> list[tuple[str, bytes]]:
    """Trace files (name, bytes) holding the records of `n` units spread over a few files of random kinds."""
    recs = records(rng, n, keepers)
    rng.shuffle(recs)
    files: list[tuple[str, bytes]] = []
    cuts = sorted(rng.sample(range(len(recs) + 1), k=min(len(recs) + 1, rng.randrange(1, 4))))
    for f, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(recs)], strict=True)):
        part = recs[a:b]
        kind = rng.choice(["jsonl"] * 6 + ["json", "gz", "empty"])
        if kind == "json":
            data = b"[" + b",\n".join(map(dumps, part)) + b"]"
            files.append((f"f{f}.json", data[: rng.randrange(len(data))] if rng.random() < 0.2 else data))
            continue
        lines = [dumps(r) for r in part]
        lines = [mangle(rng, x) if rng.random() < 0.2 else x for x in lines]
        for _ in range(rng.randrange(3)):
            lines.insert(rng.randrange(len(lines) + 1), rng.choice([b"", b"  \t", b"\r", b"\x0c"]))
        data = b"".join(x + b"\n" for x in lines) if kind != "empty" else rng.choice([b"", b"\n\n", BOM, b" \r\n"])
        data = BOM + data if rng.random() < 0.1 else data
        files.append((f"f{f}.jsonl.gz", gzip.compress(data)) if kind == "gz" else (f"f{f}.jsonl", data))
    return files
