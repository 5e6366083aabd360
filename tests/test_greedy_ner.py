"""The batch-decoded NER (curation/greedy_ner.py) finds exactly the entities spaCy's own `ner` pipe
sets on `doc.ents`, on texts that are not the sample app's, on the edge cases of its move rules, and
the redaction analyzer uses it only for a model it reproduces."""

from __future__ import annotations

import json
import random

import pytest
import spacy

from curation.greedy_ner import GreedyNer
from curation.ner_engine import UNREAD_COMPONENTS, name_windows
from curation.pii import build_analyzer
from schemas.config import RedactConfig

EDGE_CASES = [
    "",
    "Paris",  # one token, an entity that must close at once
    "Thanks, Maria Garcia",  # an entity on the last tokens
    "Maria Garcia\n\n\nJohn Smith   in   New York City",  # whitespace tokens between and inside
    "\n \n",  # only whitespace
    "東京で田中さんに会いました。Then I flew to Berlin with Ana.",
    "Call Dr. Okafor at 5 pm on Monday, 3 March 2026, about the $40 refund for order #A-99.",
    "Priya Natarajan, Tomasz Nowak, Emre Kaya and Siobhán Ní Bhriain met in São Paulo 🙂",
]


@pytest.fixture(scope="module")
def nlp():
    return build_analyzer(RedactConfig()).nlp_engine.nlp["en"]  # the pipeline redaction loads


@pytest.fixture(scope="module")
def spacy_nlp():
    return spacy.load(RedactConfig().spacy_model, exclude=UNREAD_COMPONENTS)  # spaCy as it ships (blis products)


def _texts(tmp_path_factory) -> list[str]:
    from benchmarks.distinct_corpus import make_distinct_records
    from benchmarks.pii_corpus import make_texts

    path = tmp_path_factory.mktemp("distinct") / "logs.jsonl"
    make_distinct_records(60, path, seed=3)
    chat = [
        m["content"]
        for line in path.read_text().splitlines()
        for m in json.loads(line)["request"]["messages"]
        if isinstance(m.get("content"), str)
    ]
    texts = [*EDGE_CASES, *make_texts(150)[0], *chat]
    windows = [t[a:b] for t in texts for a, b in name_windows(t, 4)]
    return [t for t in [*texts, *windows] if len(t) < 3000]


def test_batch_decoding_finds_what_spacy_finds(nlp, spacy_nlp, tmp_path_factory):
    texts = _texts(tmp_path_factory)
    random.Random(0).shuffle(texts)  # docs of mixed lengths in one batch
    expected = [[(e.start, e.end, e.label_) for e in doc.ents] for doc in spacy_nlp.pipe(texts)]
    decoder = GreedyNer(nlp)
    found = []
    for size in (5, 64):  # the result of a doc does not depend on its batch
        docs = [nlp.make_doc(t) for t in texts]
        found = [span for i in range(0, len(docs), size) for span in decoder(docs[i : i + size])]
        assert found == expected
    assert sum(map(len, expected)) > 300  # the texts do hold entities: persons, places, dates, money
    assert {label for spans in expected for *_, label in spans} >= {"PERSON", "GPE", "DATE", "MONEY"}


def test_the_decoder_is_refused_for_a_model_it_does_not_reproduce(nlp):
    assert GreedyNer.supports(nlp)
    beam = spacy.blank("en")
    beam.add_pipe("beam_ner")
    beam.initialize()
    assert not GreedyNer.supports(beam)
    assert not GreedyNer.supports(spacy.blank("en"))  # no NER at all


def test_the_analyzer_decodes_the_shipped_model_in_batches():
    engine = build_analyzer(RedactConfig()).nlp_engine
    assert engine.greedy is not None
