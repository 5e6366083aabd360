"""presidio's spaCy NLP engine, with the statistical NER run only where a name or place can occur.

spaCy's small English NER sees a few words either side of each token (its token-to-vector layer
looks four tokens out), so its output on a stretch of text depends on that stretch only. This engine
tokenizes each whole text, marks the words that could start a name (a capital that is not a common
function word, letters of a script without case, the word after "i'm"/"thanks"/"my name is"...),
runs the NER on those words with `window` words either side (windows that touch are merged, each
distinct window once per batch) and puts the entities found back on the whole text's Doc. Texts
longer than `max_chars` (logs, pasted documents) get no NER. The recall of this against the NER on
whole texts is measured by `benchmarks/redact.py` on both of its corpora."""

from __future__ import annotations

import bisect
import functools
import itertools
import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import spacy
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from spacy.lang.en.stop_words import STOP_WORDS
from spacy.tokens import Doc

from curation import names
from curation.greedy_ner import GreedyNer

UNREAD_COMPONENTS = ("tagger", "parser", "senter", "attribute_ruler", "lemmatizer")  # presidio reads entities only
_WORDS = re.compile(r"\S+")
_MAYBE = re.compile(r"\S*[^\sa-z0-9!-/:-@\[-`{-~]\S*")  # words with a capital or a non-ASCII letter
_PUNCT = string.punctuation + "“”‘’«»¿¡…"
# words that are never a name by themselves: spaCy's stop words, and those `clean` drops as a name
_COMMON = frozenset(STOP_WORDS) | names.NOT_NAME_WORDS | {"i'm", "i've", "i'll", "i'd", "i’m"}


@functools.lru_cache(maxsize=1 << 14)
def could_be_name(word: str) -> bool:
    """A whitespace-separated word that the NER could take for (part of) a name or place: one with a
    capital that is not a common function word, or with letters of a script without case (CJK, Arabic,
    Hebrew, Thai...); never one with digits (keys, codes, IBANs)."""
    if any(c.isdigit() for c in word):
        return False
    if any(c.isalpha() and not c.isupper() and not c.islower() for c in word):
        return True
    return any(c.isupper() for c in word) and word.strip(_PUNCT).lower() not in _COMMON


def name_windows(text: str, window: int) -> list[tuple[int, int]]:
    """Character spans of `text` holding every word that could be a name, with `window` words either
    side; spans that touch are merged. `window` < 0 means the whole text."""
    if window < 0:
        return [(0, len(text))] if text.strip() else []
    words = [m.span() for m in _WORDS.finditer(text)]
    starts = [a for a, _ in words]
    marked = {bisect.bisect_right(starts, m.start()) - 1 for m in _MAYBE.finditer(text) if could_be_name(m.group())}
    for end in names.name_cue_ends(text):  # "thanks fang huang": chat writes names in lower case
        k = bisect.bisect_left(starts, end)
        if k < len(words):
            marked.add(k)
    spans: list[list[int]] = []
    for k in sorted(marked):
        lo, hi = max(0, k - window), min(len(words) - 1, k + window)
        if spans and lo <= spans[-1][1] + 1:
            spans[-1][1] = hi
        else:
            spans.append([lo, hi])
    return [(words[lo][0], words[hi][1]) for lo, hi in spans]


class WindowedSpacyNlpEngine(SpacyNlpEngine):
    """presidio's SpacyNlpEngine with the NER run on name windows only (see the module docstring).
    `lemmas`: build lemmas (the lower-cased token) and token offsets for context enhancement; off
    when no recognizer in use has context words."""

    def __init__(self, model: str, ner: dict[str, Any], window: int, max_chars: int) -> None:
        super().__init__(
            models=[{"lang_code": "en", "model_name": model}],
            ner_model_configuration=NerModelConfiguration.from_dict(ner),
        )
        self.window, self.max_chars = window, max_chars
        self.lemmas = True  # `build_analyzer` turns it off once it knows the recognizers in use

    def load(self) -> None:
        """Load the model without the components presidio never reads (the parse, tags, lemmas); the
        shared token-to-vector layer stays when the NER listens to it (larger models)."""
        model = self.models[0]["model_name"]
        if not (spacy.util.is_package(model) or Path(model).exists()):
            raise ValueError(f"redact.spacy_model: {model!r} is not an installed spaCy model package or path")
        nlp = spacy.load(model, exclude=UNREAD_COMPONENTS)
        if "tok2vec" in nlp.pipe_names and "ner" not in nlp.get_pipe("tok2vec").listening_components:
            nlp.disable_pipe("tok2vec")
        self.nlp = {"en": nlp}
        self.greedy = GreedyNer(nlp) if nlp.pipe_names == ["ner"] and GreedyNer.supports(nlp) else None

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        return next(self.process_batch([text], language))[1]

    def process_batch(  # type: ignore[override]
        self, texts: Iterable[str], language: str, batch_size: int = 64, n_process: int = 1, as_tuples: bool = False
    ) -> Iterator[tuple[str, NlpArtifacts]]:
        if as_tuples or n_process != 1:
            raise ValueError("the windowed NLP engine takes plain texts in one process")
        nlp = self.nlp[language]  # type: ignore[index]
        texts = [str(t) for t in texts]
        spans = [name_windows(t, self.window) if len(t) <= self.max_chars else [] for t in texts]
        pieces = list(dict.fromkeys(t[a:b] for t, ss in zip(texts, spans, strict=True) for a, b in ss))
        found = dict(zip(pieces, self._entities(nlp, pieces, batch_size), strict=True))
        # the whole text's tokens only for context enhancement; presidio's NER recognizer reads the entities
        docs = nlp.tokenizer.pipe(texts, batch_size=batch_size) if self.lemmas else itertools.repeat(None)
        for text, ss, doc in zip(texts, spans, docs, strict=False):
            ents = [(a + s, a + e, label) for a, b in ss for s, e, label in found[text[a:b]]]
            yield text, self._artifacts(ents, doc, language)

    def _entities(self, nlp: Any, pieces: list[str], batch_size: int) -> Iterator[list[tuple[int, int, str]]]:
        """(start char, end char, label) of the entities of each piece: spaCy's greedy NER decoded a batch
        at a time when the model allows it (`curation.greedy_ner`, the same entities), else `nlp.pipe`."""
        if self.greedy is None:
            for doc in nlp.pipe(pieces, batch_size=batch_size):
                yield [(e.start_char, e.end_char, e.label_) for e in doc.ents]
            return
        for i in range(0, len(pieces), batch_size):
            docs = list(nlp.tokenizer.pipe(pieces[i : i + batch_size]))
            for doc, spans in zip(docs, self.greedy(docs), strict=True):
                yield [(doc[s].idx, doc[e - 1].idx + len(doc[e - 1]), label) for s, e, label in spans]

    def _artifacts(self, ents: list[tuple[int, int, str]], doc: Doc | None, language: str) -> NlpArtifacts:
        if doc is None:
            entities: list[Any] = [Entity(label, s, e) for s, e, label in ents]
        else:
            spans = [span for s, e, label in ents if (span := doc.char_span(s, e, label, "expand")) is not None]
            doc.ents = entities = spacy.util.filter_spans(spans)
        entities, scores = self._get_updated_entities(
            entities, [self.ner_model_configuration.default_score] * len(entities)
        )
        return NlpArtifacts(
            entities=entities,
            tokens=doc,  # type: ignore[arg-type]
            tokens_indices=[t.idx for t in doc] if doc is not None else [],
            lemmas=[t.lower_ for t in doc] if doc is not None else [],
            nlp_engine=self,
            language=language,
            scores=scores,
        )


@dataclass
class Entity:
    """An entity found by the NER, where presidio's NER recognizer reads it (label, character span)."""

    label_: str
    start_char: int
    end_char: int


class ContextFreeEnhancer(LemmaContextAwareEnhancer):
    """presidio's context enhancer, skipped when no recognizer in use has context words and the call
    gives none (it deep-copies every result before looking)."""

    def enhance_using_context(
        self,
        text: str,
        raw_results: list[RecognizerResult],
        nlp_artifacts: NlpArtifacts,
        recognizers: list[EntityRecognizer],
        context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        if not context and not any(getattr(r, "context", None) for r in recognizers):
            return raw_results
        return super().enhance_using_context(text, raw_results, nlp_artifacts, recognizers, context)
