"""Long texts in whitespace-aligned pieces, for work that would otherwise hold a structure per word of the whole
text at once (MinHash shingling, word counts): such work done piece by piece gives the same result, since no
word is cut."""

from __future__ import annotations

import re
from collections.abc import Iterator

_WHITESPACE = re.compile(r"\s")  # the same characters as str.isspace() / str.split()


def whitespace_segments(text: str, segment_chars: int) -> Iterator[str]:
    """``text`` in consecutive pieces of about ``segment_chars`` characters, each cut just before a whitespace
    character, so that no word is split (lowercasing per piece is then the same as lowercasing the whole). A text
    without whitespace after ``segment_chars`` characters is one piece."""
    start = 0
    while len(text) - start > segment_chars:
        match = _WHITESPACE.search(text, start + segment_chars)
        if match is None:
            break
        yield text[start : match.start()]
        start = match.start()
    yield text[start:] if start else text
