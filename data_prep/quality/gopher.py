"""Gopher's quality and repetition filters (Rae et al. 2021, appendix A)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress
from typing import Optional

from data_prep.errors import DataPrepError
from data_prep.quality.registry import register
from data_prep.quality.stats import DocumentStats, duplicates

# A token without any letter: punctuation, symbols, digits and underscores only ("|", "2024", "12:30"). Those
# without digits or underscores either ("-", "|", "...", "©") are punctuation, not words, for Gopher's counts.
_LETTERLESS_TOKEN = re.compile(r"(?<!\S)(?:[^\w\s]|[\d_])+(?!\S)")
_DIGIT_OR_UNDERSCORE = re.compile(r"[\d_]")


@dataclass
class GopherQualityConfig:
    """Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training Gopher",
    appendix A (MassiveWeb quality filters). Defaults are the paper's."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``web``)."""
    min_words: int = 50
    """Fewest words (tokens that are not pure punctuation)."""
    max_words: int = 100_000
    """Most words."""
    min_mean_word_length: float = 3.0
    """Smallest mean word length, in characters."""
    max_mean_word_length: float = 10.0
    """Largest mean word length, in characters."""
    max_symbol_word_ratio: float = 0.1
    """Largest ratio of ``#`` symbols to words, and (separately) of ellipses (``...`` or ``…``) to words."""
    max_bullet_lines_fraction: float = 0.9
    """Largest fraction of lines that start with a bullet (one of ``bullets``)."""
    max_ellipsis_lines_fraction: float = 0.3
    """Largest fraction of lines that end with an ellipsis."""
    min_alphabetic_words_fraction: float = 0.8
    """Smallest fraction of words that contain at least one alphabetic character."""
    min_stop_words: int = 2
    """Fewest occurrences of ``stop_words`` (case-insensitive), as counted by datatrove's implementation."""
    stop_words: list[str] = field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])
    """Gopher's English stop words."""
    bullets: list[str] = field(default_factory=lambda: ["•", "●", "○", "◦", "▪", "■", "‣", "⁃", "-", "*", "–"])
    """Characters that start a bulleted line (the paper names none; datatrove checks only ``•``)."""


@dataclass
class GopherRepetitionConfig:
    """Rae et al. 2021, appendix A, table A1: documents with too much repeated content. A duplicate is a copy of
    a line, paragraph or n-gram seen earlier in the same document (the first occurrence is not counted);
    n-grams are of lower-cased words and their character counts exclude the spaces between words."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``web``)."""
    max_duplicate_line_fraction: float = 0.30
    """Largest fraction of lines that are duplicates."""
    max_duplicate_line_char_fraction: float = 0.20
    """Largest fraction of the document's characters inside duplicate lines."""
    max_duplicate_paragraph_fraction: float = 0.30
    """Largest fraction of paragraphs that are duplicates."""
    max_duplicate_paragraph_char_fraction: float = 0.20
    """Largest fraction of the document's characters inside duplicate paragraphs."""
    max_top_ngram_char_fraction: dict[int, float] = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    """n -> largest fraction of word characters covered by the most frequent n-gram (counted only when it occurs
    more than once)."""
    max_duplicate_ngram_char_fraction: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )
    """n -> largest fraction of word characters inside duplicate n-grams (overlapping duplicates counted once)."""


@register("gopher_quality", GopherQualityConfig, order=80, profiles=("web",))
def _gopher_quality(config: GopherQualityConfig) -> Callable[[DocumentStats], bool]:
    stop_words = frozenset(w.lower() for w in config.stop_words)
    bullets = tuple(config.bullets)
    ellipses = ("...", "…")

    def keep(doc: DocumentStats) -> bool:
        text, tokens = doc.text, doc.words
        letterless = _LETTERLESS_TOKEN.findall(text)
        punctuation = [token for token in letterless if not _DIGIT_OR_UNDERSCORE.search(token)]
        n_words = len(tokens) - len(punctuation)
        if n_words == 0 or not config.min_words <= n_words <= config.max_words:
            return False
        mean_length = (sum(map(len, tokens)) - sum(map(len, punctuation))) / n_words
        if not config.min_mean_word_length <= mean_length <= config.max_mean_word_length:
            return False
        max_symbols = config.max_symbol_word_ratio * n_words
        if text.count("#") > max_symbols or text.count("...") + text.count("…") > max_symbols:
            return False
        lines = doc.lines
        if sum(line.startswith(bullets) for line in lines) > config.max_bullet_lines_fraction * len(lines):
            return False
        if sum(line.endswith(ellipses) for line in lines) > config.max_ellipsis_lines_fraction * len(lines):
            return False
        if len(tokens) - len(letterless) < config.min_alphabetic_words_fraction * len(tokens):
            return False
        return sum(map(stop_words.__contains__, tokens)) >= config.min_stop_words

    return keep


def ngram_repetition(words: list[str], top_ns: dict[int, float], duplicate_ns: dict[int, float]) -> str | None:
    """Gopher's n-gram checks on ``words``; returns the first exceeded check (``top_2``, ``duplicate_5``, ...)
    or None.

    One pass over n = 2, 3, ...: an n-gram can only repeat where its (n-1)-gram prefix repeats, so from n = 4 on
    only the positions whose shorter n-gram occurred more than once are looked at (in ordinary prose a few per
    cent). n = 2 and 3 look at every position, with ``zip`` and ``Counter`` doing the work at C speed.
    """
    lengths = list(map(len, words))
    total = sum(lengths)
    largest = max([*top_ns, *duplicate_ns], default=0)
    if not total or largest < 2:
        return None
    positions: range | list[int] = range(len(words))
    for n in range(2, largest + 1):
        if n <= 3:
            keys = list(zip(*(words[i:] for i in range(n))))
            positions = range(len(keys))
        else:
            positions = [p for p in positions if p + n <= len(words)]
            keys = [tuple(words[p : p + n]) for p in positions]
        counts = Counter(keys)
        if len(counts) == len(keys):
            return None  # no n-gram repeats, so no longer one can
        if n in top_ns:
            top, top_count = counts.most_common(1)[0]
            if top_count * sum(map(len, top)) > top_ns[n] * total:
                return f"top_{n}"
        if n == 2 and 2 not in duplicate_ns:
            continue  # n = 3 looks at every position anyway: no need to know where 2-grams repeat
        repeats = list(map((1).__lt__, map(counts.__getitem__, keys)))  # this n-gram occurs more than once
        if n in duplicate_ns:
            covered = bytearray(len(words))
            seen: set[tuple[str, ...]] = set()
            for p, key in compress(zip(positions, keys), repeats):
                if key in seen:
                    covered[p : p + n] = b"\x01" * n
                else:
                    seen.add(key)
            if sum(compress(lengths, covered)) > duplicate_ns[n] * total:
                return f"duplicate_{n}"
        positions = list(compress(positions, repeats))
    return None


@register("gopher_repetition", GopherRepetitionConfig, order=100, profiles=("web",))
def _gopher_repetition(config: GopherRepetitionConfig) -> Callable[[DocumentStats], bool]:
    def keep(doc: DocumentStats) -> bool:
        characters = len(doc.text)
        lines = doc.lines
        count, chars = doc.duplicate_lines
        if count > config.max_duplicate_line_fraction * len(lines):
            return False
        if chars > config.max_duplicate_line_char_fraction * characters:
            return False
        paragraphs = doc.paragraphs
        count, chars = duplicates(paragraphs)
        if count > config.max_duplicate_paragraph_fraction * len(paragraphs):
            return False
        if chars > config.max_duplicate_paragraph_char_fraction * characters:
            return False
        exceeded = ngram_repetition(
            doc.words, config.max_top_ngram_char_fraction, config.max_duplicate_ngram_char_fraction
        )
        return exceeded is None

    return keep


def check_ngram_tables(config: GopherRepetitionConfig) -> None:
    """YAML gives int keys, JSON string keys: both become ``{int: float}``; anything else is refused."""
    for key in ("max_top_ngram_char_fraction", "max_duplicate_ngram_char_fraction"):
        raw = getattr(config, key)
        try:  # YAML gives int keys, JSON string keys
            table = {int(n): float(v) for n, v in raw.items()}
        except (AttributeError, TypeError, ValueError):
            table = None
        if table is None or any(n < 2 for n in table):
            raise DataPrepError(
                f"filters.gopher_repetition.{key} must map n-gram sizes (2 or more) to fractions, "
                f"e.g. {{2: 0.2}}; got {raw}"
            )
        setattr(config, key, table)
