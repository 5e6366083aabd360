"""The NER runs only on name windows: which words open one, what a window holds, and that the
analyzer built on it finds what whole-text NER finds (the recall figures are benchmarks/redact.py's)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from curation import redact
from curation.ner_engine import could_be_name, name_windows
from schemas.config import RedactConfig


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("Maria", True),
        ("O'Brien,", True),
        ("東京の", True),  # a script without case
        ("Kraków.", True),
        ("The", False),  # a stop word
        ("Thanks,", False),  # never a name by itself (`names.NOT_NAME_WORDS`)
        ("I'm", False),
        ("sk-proj-Xe3PYiGk", False),  # digits: keys, IBANs, codes
        ("GB82", False),
        ("hello", False),
    ],
)
def test_words_that_open_a_window(word, expected):
    assert could_be_name(word) is expected


def test_a_window_holds_the_name_and_its_neighbours_only():
    filler = " ".join(["and then the parcel was late again"] * 6)
    text = f"{filler} so Maria Garcia called us about it {filler}"
    (start, end), *rest = name_windows(text, 4)
    assert not rest
    assert text[start:end] == "was late again so Maria Garcia called us about it"
    assert name_windows(text, -1) == [(0, len(text))]
    assert name_windows("nothing here at all", 4) == []


def test_a_lower_case_name_after_a_cue_opens_a_window():
    text = "the screenshots are attached, thanks fang huang, i sent them twice already today"
    [(start, end)] = name_windows(text, 1)
    assert "fang" in text[start:end]


def test_the_windowed_analyzer_finds_names_far_apart_in_one_long_text():
    filler = " ".join(["and then the parcel was late again"] * 40)
    text = f"Dear team, {filler}. I spoke with Priya Natarajan in Toronto. {filler}. Best, Tomasz Nowak"
    windowed, whole = (redact.analyze_texts([text], RedactConfig(ner_window=w))[0] for w in (4, -1))
    values = {text[a:b] for entity, a, b, *_ in windowed if entity in ("PERSON", "LOCATION")}
    assert {"Priya Natarajan", "Toronto", "Tomasz Nowak"} <= values
    assert sorted(windowed) == sorted(whole)  # what the NER on the whole text finds, nothing else


def test_the_analyzer_process_does_not_import_torch_and_torch_still_imports_after():
    code = (
        "import sys; import curation.pii; assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'transformers' not in sys.modules; import torch; print(torch.__version__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
