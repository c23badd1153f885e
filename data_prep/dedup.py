"""Stage 3: duplicate removal. Exact duplicates are found by a hash of the cleaned text; the first document
in source order survives, so the result does not depend on timing or worker count."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass
class DedupConfig:
    """Duplicate removal."""

    exact: bool = True
    """Drop documents whose cleaned text is byte-identical to an earlier one (kept: the first in source order)."""


def text_digest(text: str) -> bytes:
    """16-byte BLAKE2b digest of the text: collision odds are negligible and a set of them stays small."""
    return hashlib.blake2b(text.encode("utf-8", errors="surrogatepass"), digest_size=16).digest()


class ExactDeduplicator:
    """Remembers digests seen so far; ``is_duplicate`` is True from the second occurrence on."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()
        self.removed = 0

    def is_duplicate(self, digest: bytes) -> bool:
        if digest in self._seen:
            self.removed += 1
            return True
        self._seen.add(digest)
        return False
