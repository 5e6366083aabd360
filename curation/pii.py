"""Presidio set up for traces, offline: the packaged spaCy model, the predefined recognizers, and
the recognizers presidio lacks (secrets, street addresses, US phone formats, e-mail signatures,
customer identifiers from the config)."""

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

from curation.leakgate import iban_ok  # the checksum only; the gate's scan stays separate
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

# Secrets: (name, pattern, group holding the secret). Case-sensitive on purpose (AKIA..., ghp_...).
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}"), 0),
    ("openai_key", re.compile(r"\bsk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"), 0),
    ("aws_access_key", re.compile(r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"), 0),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b"), 0),
    ("slack_token", re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"), 0),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"), 0),
    (
        "private_key",
        re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.DOTALL),
        0,
    ),
    (
        "assigned_secret",
        re.compile(
            r"(?i)\b(?:password|passwd|pwd|passphrase|api[_\- ]?key|secret(?:[_\- ]?key)?"
            r"|access[_\- ]?token|auth[_\- ]?token|token|client[_\- ]?secret)\b"
            r"\s*(?:is\s*)?[:=]\s*[\"']?([^\s\"',;]{6,})"
        ),
        1,
    ),
)

_STREET = re.compile(
    r"\b\d{1,6}\s+(?:[A-Z][a-z]+\.?\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct"
    r"|Way|Place|Pl|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl)\b\.?"
    r"(?:,?\s*(?:Apt|Apartment|Suite|Ste|Unit|#)\.?\s*[A-Za-z0-9\-]+)?"
    r"(?:,\s*[A-Z][A-Za-z]+(?:\s[A-Z][A-Za-z]+)*,?\s+[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
)
_US_PHONE = r"(?<![\w+])(?:\+?1[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}\b"
_SIGNOFF = re.compile(
    r"(?im)^(?:thanks|thank you|best|best regards|kind regards|regards|cheers|sincerely|many thanks|warm regards),?"
    r"[ \t]*\r?\n[ \t]*([A-Z][a-z'\-]+(?:[ \t]+[A-Z][a-z'\-]+){1,2})[ \t]*$"
)


class _RegexRecognizer(EntityRecognizer):
    """A recognizer of one entity type found by plain regexes (nothing to load)."""

    entity = ""

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.entity], name=type(self).__name__, supported_language="en")

    def load(self) -> None:
        return None


class SecretRecognizer(_RegexRecognizer):
    """API keys, tokens, private keys and values assigned to password/api_key/token names."""

    entity = "SECRET"

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> list[Any]:
        out = []
        for name, pattern, group in SECRET_PATTERNS:
            for m in pattern.finditer(text):
                start, end = m.span(group)
                out.append(_result(self, "SECRET", start, end, 1.0, f"SecretRecognizer:{name}"))
        return out


class IbanChecksumRecognizer(_RegexRecognizer):
    """IBANs in 4-character groups with a valid ISO 7064 mod-97 checksum, whatever the country
    (presidio's own recognizer misses some valid ones, e.g. Spanish IBANs)."""

    entity = "IBAN_CODE"
    _PATTERN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> list[Any]:
        return [
            _result(self, "IBAN_CODE", *m.span(), 1.0, self.name)
            for m in self._PATTERN.finditer(text)
            if iban_ok(m.group(0))
        ]


class SignatureNameRecognizer(_RegexRecognizer):
    """The name under an e-mail sign-off ("Best regards,\\nMaria Garcia"), which small NER models miss."""

    entity = "PERSON"

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> list[Any]:
        return [_result(self, "PERSON", *m.span(1), 0.7, self.name) for m in _SIGNOFF.finditer(text)]


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


def build_analyzer(cfg: RedactConfig) -> AnalyzerEngine:
    """An AnalyzerEngine that never downloads: spaCy model from its package, tldextract's bundled list."""
    import tldextract
    import tldextract.tldextract as tld_module

    tld_module.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    nlp_engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": cfg.spacy_model}],
            "ner_model_configuration": _NER,
        }
    ).create_engine()
    # Presidio reads tokens, lemmas and entities, never the parse or the tags. The small model's NER
    # has its own token-to-vector layer, so tok2vec/tagger/parser/lemmatizer can go (~2.2x faster,
    # identical entities); lemmas become the lower-cased token, which presidio's context words
    # match as substrings ("card" in "cards") as they matched the lemma.
    nlp = nlp_engine.nlp["en"]  # type: ignore[attr-defined]
    for name in ("parser", "tagger", "attribute_ruler", "lemmatizer", "tok2vec"):
        if name in nlp.pipe_names:
            nlp.disable_pipe(name)
    if "lower_lemma" not in nlp.pipe_names:
        nlp.add_pipe("lower_lemma", last=True)
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
    registry.add_recognizer(SecretRecognizer())
    registry.add_recognizer(SignatureNameRecognizer())
    registry.add_recognizer(IbanChecksumRecognizer())
    registry.add_recognizer(
        PatternRecognizer(
            supported_entity="STREET_ADDRESS",
            name="StreetAddressRecognizer",
            patterns=[Pattern("us_street", _STREET.pattern, 0.7)],
            global_regex_flags=re.MULTILINE,
        )
    )
    registry.add_recognizer(
        PatternRecognizer(
            supported_entity="PHONE_NUMBER",
            name="UsPhoneFormatRecognizer",
            patterns=[Pattern("us_phone", _US_PHONE, 0.6)],
            global_regex_flags=re.MULTILINE,
        )
    )
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
