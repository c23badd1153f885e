"""Character and word ratios: alphanumeric share (Data-Juicer) and distinct-word share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from data_prep.quality.registry import register
from data_prep.quality.stats import DocumentStats, count_alphanumeric


@dataclass
class AlphanumericConfig:
    """Share of letters and digits among all characters (whitespace included), as Data-Juicer's
    ``alphanumeric_filter`` (Chen et al. 2024) counts it; its default threshold."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``web``)."""
    min_fraction: float = 0.25
    """Smallest fraction of alphanumeric characters."""


@dataclass
class UniqueWordsConfig:
    """Share of distinct (lower-cased) words among all words: catches word-salad and keyword stuffing."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``web``)."""
    min_ratio: float = 0.1
    """Smallest ratio of distinct words to words. No paper sets this: 0.1 is far below ordinary prose (0.3-0.6
    for a web page; a 100,000-word book still sits near 0.1 by Heaps' law), so it removes only extreme
    repetition."""


@register("alphanumeric", AlphanumericConfig, order=60, profiles=("web",))
def _alphanumeric(config: AlphanumericConfig) -> Callable[[DocumentStats], bool]:
    def keep(doc: DocumentStats) -> bool:
        return count_alphanumeric(doc.text) >= config.min_fraction * len(doc.text)

    return keep


@register("unique_words", UniqueWordsConfig, order=70, profiles=("web",))
def _unique_words(config: UniqueWordsConfig) -> Callable[[DocumentStats], bool]:
    def keep(doc: DocumentStats) -> bool:
        words = doc.words
        return bool(words) and len(set(words)) >= config.min_ratio * len(words)

    return keep
