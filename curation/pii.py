"""Presidio set up for traces, offline: the packaged spaCy model for names and places, the shared
identifier definitions (curation/identifiers.py, also used by the leak gate) in place of presidio's
e-mail/phone/card/IBAN/IP/SSN recognizers, and what presidio lacks (secrets, street addresses in
several countries' formats, names after cue phrases and titles, e-mail signatures, customer
identifiers from the config)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from curation import identifiers, names
from schemas.config import RedactConfig

os.environ.setdefault("TLDEXTRACT_CACHE_TIMEOUT", "1")
os.environ.setdefault("PRESIDIO_DEVICE", "cpu")  # else presidio imports torch to look for a GPU


@contextmanager
def _unimportable(*modules: str) -> Iterator[None]:
    """Make `modules` unimportable meanwhile, unless already imported: presidio's optional engines and
    thinc import transformers and torch when installed (5 s of every analyzer process's start), and the
    spaCy NER does not use them. They import normally afterwards."""
    blocked = [m for m in modules if m not in sys.modules]
    sys.modules.update(dict.fromkeys(blocked))
    try:
        yield
    finally:
        for m in blocked:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]


with _unimportable("torch", "transformers"):
    from presidio_analyzer import (
        AnalyzerEngine,
        BatchAnalyzerEngine,
        EntityRecognizer,
        Pattern,
        PatternRecognizer,
        RecognizerRegistry,
        RecognizerResult,
    )
    from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngineProvider

    from curation.ner_engine import ContextFreeEnhancer, WindowedSpacyNlpEngine

_NER = {
    "model_to_presidio_entity_mapping": {
        "PERSON": "PERSON",
        "NORP": "NRP",
        "FAC": "LOCATION",
        "LOC": "LOCATION",
        "GPE": "LOCATION",
        "ORG": "ORGANIZATION",
        "DATE": "DATE_TIME",
        "TIME": "DATE_TIME",
    },
    "low_confidence_score_multiplier": 0.4,
    "low_score_entity_names": [],
    "labels_to_ignore": [
        "ORG",
        "ORGANIZATION",
        "CARDINAL",
        "EVENT",
        "LANGUAGE",
        "LAW",
        "MONEY",
        "ORDINAL",
        "PERCENT",
        "PRODUCT",
        "QUANTITY",
        "WORK_OF_ART",
    ],
}
# presidio's recognizers replaced by the shared definitions of curation/identifiers.py
REPLACED = (
    "CreditCardRecognizer",
    "EmailRecognizer",
    "IbanRecognizer",
    "IpRecognizer",
    "PhoneRecognizer",
    "UsSsnRecognizer",
)


class _RegexRecognizer(EntityRecognizer):
    """A recognizer found by plain regexes (nothing to load)."""

    supported: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__(supported_entities=list(self.supported), name=type(self).__name__, supported_language="en")

    def load(self) -> None:
        return None


class IdentifierRecognizer(_RegexRecognizer):
    """E-mail, phone, card, IBAN, US SSN, IP and secrets: the definitions the leak gate checks with."""

    supported = tuple(dict.fromkeys(i.entity for i in identifiers.IDENTIFIERS))

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> list[Any]:
        return [
            _result(self, e, a, b, identifiers.score(name), f"{self.name}:{name}")
            for e, a, b, name in identifiers.find(text, frozenset(entities))
        ]


class PersonCueRecognizer(_RegexRecognizer):
    """Names the small NER model misses or labels ORG: after cue phrases ("My name is Rubija",
    "Directed By: Johannes Varvio", "Dr. Okafor"), with a middle initial ("Faina D. Yefremova"), and
    under an e-mail sign-off ("Best regards,\\nMaria Garcia")."""

    supported = ("PERSON",)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> list[Any]:
        return [_result(self, "PERSON", a, b, 0.9, f"{self.name}:{how}") for a, b, how in names.find_names(text)]


class StreetAddressRecognizer(_RegexRecognizer):
    """Street addresses: number + name + street type (US/UK), "12 rue de la Paix", "Calle Mayor 5",
    "Hauptstraße 12", with an optional unit and ", [postcode] City[, ST postcode]"."""

    supported = ("STREET_ADDRESS",)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> list[Any]:
        return [_result(self, "STREET_ADDRESS", *m.span(), 0.7, self.name) for m in names.STREET.finditer(text)]


def _result(recognizer: EntityRecognizer, entity: str, start: int, end: int, score: float, name: str) -> Any:
    # presidio matches results to recognizers by id when it applies context enhancement
    metadata = {"recognizer_name": name, "recognizer_identifier": recognizer.id}
    return RecognizerResult(entity, start, end, score, recognition_metadata=metadata)


def _offline_tldextract() -> None:
    """tldextract (presidio's e-mail and URL checks) with its bundled suffix list: it never downloads."""
    import tldextract
    import tldextract.tldextract as tld_module

    tld_module.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def offline_nlp_engine(model: str, ner: dict[str, Any]) -> Any:
    """presidio's own spaCy NlpEngine, never downloading: the model from its package (the benchmark's peer)."""
    _offline_tldextract()
    return NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": model}],
            "ner_model_configuration": ner,
        }
    ).create_engine()


def build_analyzer(cfg: RedactConfig) -> AnalyzerEngine:
    """The redactor's AnalyzerEngine (offline): the NER on name windows (`curation.ner_engine`)."""
    _offline_tldextract()
    nlp_engine = WindowedSpacyNlpEngine(cfg.spacy_model, _NER, cfg.ner_window, cfg.ner_max_chars)
    nlp_engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
    for name in REPLACED:
        registry.remove_recognizer(name)
    registry.add_recognizer(IdentifierRecognizer())
    registry.add_recognizer(PersonCueRecognizer())
    registry.add_recognizer(StreetAddressRecognizer())
    for entity, regex in cfg.custom_entities.items():
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity=entity,
                name=f"Custom{entity}Recognizer",
                patterns=[Pattern(entity.lower(), regex, 0.9)],
                global_regex_flags=re.MULTILINE,
            )
        )
    known = set(registry.get_supported_entities(languages=["en"]))
    unknown = [e for e in entities(cfg) if e not in known]
    if unknown:
        raise ValueError(
            f"redact.entities: {unknown[0]!r} is not an entity type any recognizer finds "
            f"(known: {', '.join(sorted(known))}; add your own under redact.custom_entities)"
        )
    in_use = registry.get_recognizers(language="en", entities=entities(cfg))
    nlp_engine.lemmas = any(getattr(r, "context", None) for r in in_use)
    return AnalyzerEngine(
        nlp_engine=nlp_engine,
        registry=registry,
        supported_languages=["en"],
        default_score_threshold=cfg.score_threshold,
        context_aware_enhancer=ContextFreeEnhancer(),
    )


def entities(cfg: RedactConfig) -> list[str]:
    """The entity types to look for: the configured list plus the custom identifiers."""
    return list(dict.fromkeys([*cfg.entities, *cfg.custom_entities]))


def batch_analyzer(analyzer: AnalyzerEngine) -> BatchAnalyzerEngine:
    """presidio's batch front of `analyzer`: texts go through the NLP engine's pipe in batches."""
    return BatchAnalyzerEngine(analyzer_engine=analyzer)
