"""Document length in words."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from data_prep.quality.registry import register
from data_prep.quality.stats import DocumentStats

# The profile-dependent default of ``min_words`` left at null.
LENGTH_MIN_WORDS = {"code": 5, "web": 50, "none": 50}


@dataclass
class LengthConfig:
    """Document length in words: the cheapest filter, run first."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``code`` and ``web``)."""
    min_words: Optional[int] = None
    """Fewest words a document may have. ``null``: the profile's value, 50 for ``web`` (Gopher's lower bound)
    and 5 for ``code`` (a source file is short in words: ``import os`` is two)."""
    max_words: Optional[int] = 100_000
    """Most words a document may have (Gopher's upper bound); ``null``: no upper bound."""


@register("length", LengthConfig, order=10, profiles=("code", "web"), uses_profile=True)
def _length(config: LengthConfig, profile: str) -> Callable[[DocumentStats], bool]:
    min_words = LENGTH_MIN_WORDS[profile] if config.min_words is None else config.min_words
    max_words = config.max_words

    def keep(doc: DocumentStats) -> bool:
        n = doc.word_count
        return n >= min_words and (max_words is None or n <= max_words)

    return keep
