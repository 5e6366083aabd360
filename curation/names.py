"""Shapes of person names and street addresses, beside the NER: names after cue phrases and titles,
names with a middle initial, the name under a sign-off, street addresses in several countries'
formats, and the check that an NER span can be a name or place at all. Plain regexes, no presidio."""

from __future__ import annotations

import re

_UP = "A-ZÀ-ÖØ-ÞĀĂĄĆČĎĐĒĘĚĞĢĪĶŁĹĽŃŇŌŐŒŔŘŚŞŠŢŤŪŮŰŹŻŽ"
# a capitalized word (O'Brien, Jean-Luc, Øyvind; not "I'm", not the possessive 's)
WORD = rf"[{_UP}][^\W\d_]*(?:['’][^\W\d_]{{2,}}|-[^\W\d_]+)*"
_CITY_WORD = rf"[{_UP}](?:(?![{_UP}])[^\W\d_])+(?:['’\-][^\W\d_]+)*"  # not all capitals (not "NW")
PARTICLE = r"(?:de|da|do|dos|das|del|della|der|den|van|von|la|le|du|des|di|bin|ibn|al|el|ter|ten|y|e|zu|af|am)"
_NOT_NAME_TEXT = (
    "the a an and or not to of in on at for with from by is are was be your our my this that it we i you he she"
    " they me him her them sorry fine good here just so also back glad happy afraid still looking trying writing"
    " calling having going interested unable able new all team support customer service sir madam everyone there"
    " cheers thanks regards sincerely best hello hi dear yes no ok okay please as then when if but after before see"
    " per via"
    # pronouns of other languages, capitalized at a sentence start ("Tu es un assistant")
    " tu je nous vous ils elles yo tú él nosotros usted ich wir ihr você noi voi"
)
NOT_NAME_WORDS = frozenset(_NOT_NAME_TEXT.split())
_LABEL_TEXT = (
    "plan step part section figure fig table option phase appendix chapter type version grade class group item"
)
LABEL_WORDS = frozenset(_LABEL_TEXT.split())  # "Table A. Results" is no name

_NAME = rf"{WORD}\.?|[{_UP}]\."  # a capitalized word or an initial
_NAME_RUN = re.compile(rf"(?:{_NAME})(?:[ \t]+(?:{PARTICLE}[ \t]+)?(?:{_NAME})){{0,4}}")
_LOWER_NAME_RUN = re.compile(r"[^\W\d_]{2,}(?:[ \t]+[^\W\d_]{2,}){0,2}")
# Cue phrases followed by a name: (regex, lower-case names allowed, fewest name words)
_CUES: tuple[tuple[re.Pattern[str], bool, int], ...] = (
    (
        re.compile(
            r"(?i:\bmy name is|\bmy name's|\bname\s*:|\bcall me|\bje m'appelle|\bme llamo|\bich hei(?:ß|ss)e)"
            r"[ \t]+"
        ),
        True,
        1,
    ),
    (
        re.compile(
            r"(?i:\b(?:directed|written|produced|created|composed|edited|narrated|illustrated|translated|performed"
            r"|photographed|hosted|presented|signed|screenplay|story|music|lyrics|photos?)[ \t]+by|\bstarring|\bcast"
            r"|\bdirector|\bproducer|\bwriter|\bauthor|\bcomposer|\bhost|\bpresenter|\bcontact|\bcustomer|\bpatient"
            r"|\bemployee|\bassignee|\bowner|\bsender|\brecipient|\battn\.?|\battention)[ \t]*[:\-–]?[ \t]*"
        ),
        False,
        1,
    ),
    (
        re.compile(
            r"(?<![A-Za-z])(?:Mr|Mrs|Ms|Mx|Dr|Prof|Sr|Sra|Srta|Mme|Mlle|Herr|Frau|Sir|Dame|Madame|Monsieur|Señor"
            r"|Señora|Dona|Dom|Miss|Mister)\.?[ \t]+"
        ),
        False,
        1,
    ),
    (
        re.compile(
            r"(?i:\bi am|\bi'm|\bthis is|\bdear|\bhi|\bhello|\bthanks|\bthank you|\bsaid|\bsays|\basked|\bwrote"
            r"|\btold|\baccording to)[ \t,]+"
        ),
        False,
        2,
    ),
)
# a single first name after a sign-off word, closing the sentence: "thanks, Pilar."
_SIGNOFF_NAME = re.compile(
    rf"(?i:\b(?:thanks|thank you|cheers|regards|best|love))[ \t]*[,\-–][ \t]*({WORD})(?=[ \t]*(?:[.!\n]|$))"
)
# "Faina D. Yefremova", "J. R. Tolkien", "L. Pereira"
_INITIALS = re.compile(
    rf"(?<![\w.])(?:(?P<first>{WORD})[ \t]+)?(?P<rest>[{_UP}]\.(?:[ \t]*[{_UP}]\.)?[ \t]+(?P<last>{WORD})"
    rf"(?:[ \t]+(?:{PARTICLE}[ \t]+)?{WORD})?)"
)
_SIGNOFF = re.compile(
    r"(?im)^(?:thanks|thank you|best|best regards|kind regards|regards|cheers|sincerely|many thanks|warm regards),?"
    r"[ \t]*\r?\n[ \t]*([A-Z][a-z'\-]+(?:[ \t]+[A-Z][a-z'\-]+){1,2})[ \t]*$"
)

_STREET_EN = (
    r"Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Ter|Circle|Cir"
    r"|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Close|Crescent|Cres|Grove|Gardens|Row|Mews|Hill|Parade"
)
_STREET_NUMBER_FIRST = r"rue|avenue|boulevard|bd|chemin|allée|impasse|quai|rua"
_STREET_NAME_FIRST = (
    r"Rue|Avenue|Boulevard|Calle|C/|Avenida|Avda\.?|Av\.|Paseo|Plaza|Carrera|Rua|Travessa|Praça|Via|Viale|Piazza"
    r"|Corso|Largo|Ulica|ul\.|Strada|Calea|Rambla"
)
_STREET_SUFFIX = r"straße|strasse|str\.|weg|allee|platz|gasse|damm|straat|laan|gracht|plein|kade|vej|gatan|gata|veien"
_POSTCODE = r"(?:\d{4,5}(?:-\d{3,4})?|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|\d{3}-\d{4}|[A-Z]\d[A-Z] ?\d[A-Z]\d)"
_CITY = rf"{_CITY_WORD}(?:[ \-](?:{PARTICLE}[ \-])?{_CITY_WORD}){{0,2}}"
_STREET_NAME = rf"(?:(?:{PARTICLE}|l'|d')[ \t]*)*{WORD}(?:[ \t\-]+{WORD}){{0,3}}"
STREET = re.compile(
    r"(?<![0-9A-Za-z])(?:"
    # number first: "221B Baker Street", "12 rue de la Paix", "1500 rua Augusta"
    rf"\d{{1,6}}[A-Za-z]?,?[ \t]+(?:(?:{WORD}\.?[ \t]+){{1,3}}(?:{_STREET_EN})\b\.?"
    rf"|(?i:{_STREET_NUMBER_FIRST})[ \t]+{_STREET_NAME})"
    # name first: "Calle Mayor 5", "Hauptstraße 12", "Keizersgracht 123", "ul. Marszałkowska 10"
    rf"|(?:(?:{_STREET_NAME_FIRST})[ \t]+{_STREET_NAME}|{WORD}(?:[ \t\-]{WORD})?(?i:{_STREET_SUFFIX}))"
    r"[ \t]*,?[ \t]*\d{1,5}[A-Za-z]?(?![0-9A-Za-z])"
    r")"
    r"(?:,?[ \t]*(?:Apt|Apartment|Suite|Ste|Unit|Flat|#|Piso|Bus|Etage)\.?[ \t]*[A-Za-z0-9\-º°]+)?"
    rf"(?:,[ \t]*(?:{_POSTCODE}[ \t]+)?{_CITY}(?:,?[ \t]+(?:[A-Z]{{2}}[ \t]+)?{_POSTCODE}(?![0-9A-Za-z]))?)?"
)


def name_after(text: str, pos: int, lower_ok: bool = False, min_words: int = 1) -> tuple[int, int] | None:
    """The span of the person name starting at `pos` (capitalized words, initials, particles such as
    "da" or "van"; trailing function words and a possessive 's left out), or None."""
    m = _NAME_RUN.match(text, pos) or (_LOWER_NAME_RUN.match(text, pos) if lower_ok else None)
    if m is None:
        return None
    words = list(re.finditer(r"\S+", m.group(0)))
    while words and (words[-1].group(0).lower() in NOT_NAME_WORDS or re.fullmatch(PARTICLE, words[-1].group(0))):
        words.pop()
    if len(words) < min_words or any(w.group(0).lower().rstrip(".") in NOT_NAME_WORDS for w in words):
        return None
    end = pos + words[-1].end()
    if text[end - 1] == "." and len(words[-1].group(0)) > 2:
        end -= 1  # "Mr. Li." ends a sentence; "D." is an initial
    end -= 2 if text[end - 2 : end] in ("'s", "’s") else 0
    return (pos, end) if end - pos >= 2 else None


def find_names(text: str) -> list[tuple[int, int, str]]:
    """Person names shown by their surroundings, as (start, end, how): after a cue phrase or a title,
    with a middle initial, under a sign-off."""
    out = []
    for cue, lower_ok, min_words in _CUES:
        for m in cue.finditer(text):
            span = name_after(text, m.end(), lower_ok, min_words)
            if span:
                out.append((*span, "cue"))
    for m in _INITIALS.finditer(text):
        if m["last"].lower() not in NOT_NAME_WORDS and (m["first"] or "").lower() not in LABEL_WORDS:
            first_ok = m["first"] is not None and m["first"].lower() not in NOT_NAME_WORDS  # not "As L. Iyer"
            out.append((m.start("first") if first_ok else m.start("rest"), m.end(), "initial"))
    out += [(*m.span(1), "signoff") for m in _SIGNOFF.finditer(text)]
    out += [(*m.span(1), "signoff") for m in _SIGNOFF_NAME.finditer(text) if m.group(1).lower() not in NOT_NAME_WORDS]
    return out


_LOCATIVE = re.compile(
    r"(?i)(?:\b(?:in|near|city of|town of|moved to|moved from|flight to|flight from|lives? in|based in|located in)"
    r"|\bviv[eo] en|\bje vis à|\bwohne in)[ \t]+$"
)


_NAME_CUE = (
    r"(?i)(?:\bi'm|\bi am|\bname is|\bname's|\bcall me|\bthis is|\bthanks|\bthank you|\bhi|\bhello|\bhey|\bdear"
    r"|\bcheers|\bregards|\bme llamo|\bje m'appelle|\bich bin)[ \t,:]*"
)
_LOWER_NAME_CUE = re.compile(_NAME_CUE + "$")
_NAME_CUE_RE = re.compile(_NAME_CUE)


def after_name_cue(text: str, start: int) -> bool:
    """The span at `start` follows a phrase that introduces a person ("i'm", "thanks", "my name is"):
    where chat writes names in lower case."""
    return bool(_LOWER_NAME_CUE.search(text, max(0, start - 16), start))


def name_cue_ends(text: str) -> list[int]:
    """Where each phrase that introduces a person ("i'm", "thanks", "my name is") ends in `text`."""
    return [m.end() for m in _NAME_CUE_RE.finditer(text)]


def after_locative(text: str, start: int) -> bool:
    """The span at `start` follows a phrase that introduces a place ("in", "mayor of", "vivo en")."""
    return bool(_LOCATIVE.search(text, max(0, start - 16), start))


_NAME_WORD = re.compile(rf"(?:the|{PARTICLE}|l'|d'|{WORD}\.?|[{_UP}]\.),?")
_LOWER_WORD = re.compile(r"[^\W\d_]{2,}(?:['’\-][^\W\d_]+)*")  # "john", "ní", "ben-david"


def name_span(value: str, lower_ok: bool) -> tuple[int, int] | None:
    """The part of an NER span that can be a name or a place, or None. A leading label ("By: ") and
    what trails the name (a number, "y mi", a possessive) are cut; the words must be capitalized
    words, initials and particles ("Maria da Silva", "Rio de Janeiro", "Busan, Nigeria"), or, with
    `lower_ok`, one to three lower-case words that are not function words ("john smith"). JSON keys,
    numbers and sign-off words are not names."""
    if "_" in value:
        return None
    start = value.rfind(":") + 1
    words = list(re.finditer(r"\S+", value[start:]))
    keep = 0
    for k, w in enumerate(words):
        if not _NAME_WORD.fullmatch(w.group(0)):
            break
        keep = k + 1
    names = [w.group(0).rstrip(",") for w in words[:keep]]
    while names and (names[-1].lower() in NOT_NAME_WORDS or re.fullmatch(PARTICLE, names[-1])):
        names.pop()
    if len(names) == 1 and keep < len(words) and any(ch.isdigit() for ch in words[keep].group(0)):
        return None  # "Order NW-123456": a label before an id, not a name before a phone number
    if names and any(w[0].isupper() for w in names) and not all(w.lower().rstrip(".") in NOT_NAME_WORDS for w in names):
        end = start + words[len(names) - 1].start() + len(names[-1])
        begin = start + words[0].start()
    elif (
        lower_ok
        and 1 <= len(words) <= 3
        and all(_LOWER_WORD.fullmatch(w.group(0)) and w.group(0).islower() for w in words)
    ):
        if any(w.group(0) in NOT_NAME_WORDS for w in words) or sum(len(w.group(0)) for w in words) < 3:
            return None
        begin, end = start + words[0].start(), start + words[-1].end()
    else:
        return None
    if value[end - 2 : end] in ("'s", "’s"):
        end -= 2
    return begin, end
