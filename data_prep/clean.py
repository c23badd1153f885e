"""Stage 2: normalise document text. Each step is a switch in :class:`~data_prep.config.CleanConfig`."""

from __future__ import annotations

import unicodedata

from data_prep.config import CleanConfig


def clean_text(text: str, clean: CleanConfig) -> str:
    if clean.normalize_newlines:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if clean.unicode_nfc:
        text = unicodedata.normalize("NFC", text)
    if clean.strip:
        text = text.strip()
    return text
