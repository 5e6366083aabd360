"""Presidio set up for traces, offline: the packaged spaCy model for names and places, the shared
identifier definitions (curation/identifiers.py, also used by the leak gate) in place of presidio's
e-mail/phone/card/IBAN/IP/SSN recognizers, and what presidio lacks (secrets, street addresses in
several countries' formats, names after cue phrases and titles, e-mail signatures, customer
identifiers from the config)."""

from __future__ import annotations

import os
import re
from typing import Any

os.environ.setdefault("TLDEXTRACT_CACHE_TIMEOUT", "1")

from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngineProvider
from spacy.language import Language
from spacy.tokens import Doc

from curation import identifiers, names
from schemas.config import RedactConfig

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


@Language.component("lower_lemma")
def lower_lemma(doc: Doc) -> Doc:
    """Set each token's lemma to its lower-cased text (the lemmatizer is switched off)."""
    for token in doc:
        token.lemma_ = token.lower_
    return doc


def offline_nlp_engine(model: str, ner: dict[str, Any]) -> Any:
    """A spaCy NlpEngine that never downloads: the model from its package, tldextract's bundled list."""
    import tldextract
    import tldextract.tldextract as tld_module

    tld_module.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    return NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": model}],
            "ner_model_configuration": ner,
        }
    ).create_engine()


def build_analyzer(cfg: RedactConfig) -> AnalyzerEngine:
    """The redactor's AnalyzerEngine (offline)."""
    nlp_engine = offline_nlp_engine(cfg.spacy_model, _NER)
    # Presidio reads tokens, lemmas and entities, never the parse or the tags. The small model's NER
    # has its own token-to-vector layer, so tok2vec/tagger/parser/lemmatizer can go (~2x faster).
    # PERSON/GPE/LOC/FAC/NORP entities are identical with the full pipeline on both benchmark corpora
    # (only DATE/TIME/CARDINAL spans move with the parser's sentence starts, and they are not redacted);
    # lemmas become the lower-cased token.
    nlp = nlp_engine.nlp["en"]  # type: ignore[attr-defined]
    for name in ("parser", "tagger", "attribute_ruler", "lemmatizer", "tok2vec"):
        if name in nlp.pipe_names:
            nlp.disable_pipe(name)
    if "lower_lemma" not in nlp.pipe_names:
        nlp.add_pipe("lower_lemma", last=True)
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
    return AnalyzerEngine(
        nlp_engine=nlp_engine,
        registry=registry,
        supported_languages=["en"],
        default_score_threshold=cfg.score_threshold,
    )


def entities(cfg: RedactConfig) -> list[str]:
    """The entity types to look for: the configured list plus the custom identifiers."""
    return list(dict.fromkeys([*cfg.entities, *cfg.custom_entities]))
