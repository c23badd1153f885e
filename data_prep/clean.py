"""Stage 2: normalise document text. Each step is a switch in :class:`~data_prep.config.CleanConfig`."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass
class CleanConfig:
    """Text normalisation. Code corpora keep their whitespace, so nothing here touches indentation."""

    normalize_newlines: bool = True
    """Turn ``\\r\\n`` and lone ``\\r`` into ``\\n``."""
    unicode_nfc: bool = False
    """Apply Unicode NFC composition (off by default: it rewrites code identifiers and literals)."""
    strip: bool = True
    """Remove leading and trailing blank space around each document."""
    min_chars: int = 1
    """Drop documents shorter than this many characters after cleaning."""


def clean_text(text: str, clean: CleanConfig) -> str:
    if clean.normalize_newlines:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if clean.unicode_nfc:
        text = unicodedata.normalize("NFC", text)
    if clean.strip:
        text = text.strip()
    return text
