"""Counts as dataclasses (ingest, the split) with a JSON-ready `as_dict`. Curation stages report
`curation.stage.StageStats`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass
class Counts:
    """Base of a dataclass of counts (ingest, the split): `as_dict` gives plain JSON-ready values."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, Counter):
                value = dict(value)
            elif isinstance(value, float):
                value = round(value, 3)
            out[key] = value
        return out
