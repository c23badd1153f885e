"""FineWeb's custom heuristic filters (Penedo et al. 2024)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from data_prep.quality.registry import register
from data_prep.quality.stats import DocumentStats


@dataclass
class FineWebConfig:
    """Penedo et al. 2024, "The FineWeb Datasets: Decanting the Web for the Finest Text Data at Scale",
    custom heuristic filters. Defaults are the paper's (datatrove's ``FineWebQualityFilter`` defaults to 0.01
    for the duplicate-line characters)."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``web``)."""
    min_punctuated_lines_fraction: float = 0.12
    """Drop documents where the fraction of lines ending in ``.``, ``'``, ``"``, ``!`` or ``?`` is at most this."""
    max_duplicate_line_char_fraction: float = 0.1
    """Drop documents where the fraction of characters (newlines excluded) in duplicate lines is at least this."""
    short_line_max_chars: int = 30
    """A line of at most this many characters is short."""
    max_short_lines_fraction: float = 0.67
    """Drop documents where the fraction of short lines is at least this."""


@register("fineweb", FineWebConfig, order=90, profiles=("web",))
def _fineweb(config: FineWebConfig) -> Callable[[DocumentStats], bool]:
    stop_chars = (".", "'", '"', "!", "?")

    def keep(doc: DocumentStats) -> bool:
        lines = doc.lines
        if not lines:
            return False
        if sum(line.endswith(stop_chars) for line in lines) <= config.min_punctuated_lines_fraction * len(lines):
            return False
        short = config.short_line_max_chars
        if sum(len(line) <= short for line in lines) >= config.max_short_lines_fraction * len(lines):
            return False
        characters = len(doc.text) - doc.text.count("\n")
        return doc.duplicate_lines[1] < config.max_duplicate_line_char_fraction * characters

    return keep
