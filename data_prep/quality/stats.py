"""Per-document statistics shared by the quality filters: words, lines and paragraphs split once, on first
use, and fast letter counts."""

from __future__ import annotations

import re
import string
from functools import cached_property

from data_prep.segments import whitespace_segments

# Deletion tables for counting ASCII letters (and digits) with str.translate: 4-6x faster than a regex or
# str.isalpha per character, and ASCII is most code and much prose.
_DELETE_LETTERS = str.maketrans("", "", string.ascii_letters)
_DELETE_ALPHANUMERIC = str.maketrans("", "", string.ascii_letters + string.digits)
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
# Characters per piece when words are counted without building the whole list.
COUNT_SEGMENT_CHARS = 1 << 20


def count_letters(text: str) -> int:
    """Characters for which ``str.isalpha`` holds."""
    if text.isascii():
        return len(text) - len(text.translate(_DELETE_LETTERS))
    return sum(map(str.isalpha, text))


def count_alphanumeric(text: str) -> int:
    """Characters for which ``str.isalnum`` holds."""
    if text.isascii():
        return len(text) - len(text.translate(_DELETE_ALPHANUMERIC))
    return sum(map(str.isalnum, text))


def duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items that repeat an earlier item, characters in those repeats)."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


class DocumentStats:
    """The views of one document that several filters need, each computed on first use and then reused."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def words(self) -> list[str]:
        """Lower-cased whitespace-separated tokens (lower-casing never adds or removes whitespace)."""
        return self.text.lower().split()

    @cached_property
    def word_count(self) -> int:
        """``len(words)``, counted piece by piece when the list is not built yet: the length filter, which runs
        first, then rejects a huge document without holding a list of its words (about 60 bytes per word)."""
        if "words" in self.__dict__:
            return len(self.words)
        return sum(len(piece.split()) for piece in whitespace_segments(self.text, COUNT_SEGMENT_CHARS))

    @cached_property
    def raw_lines(self) -> list[str]:
        return self.text.split("\n")

    @cached_property
    def lines(self) -> list[str]:
        """Non-blank lines, stripped."""
        return [line for line in map(str.strip, self.raw_lines) if line]

    @cached_property
    def paragraphs(self) -> list[str]:
        return [p for p in map(str.strip, _PARAGRAPH_BREAK.split(self.text)) if p]

    @cached_property
    def duplicate_lines(self) -> tuple[int, int]:
        return duplicates(self.lines)
