"""Deterministic train/validation/test split by document: the decision depends only on the document's text
digest and the split seed, never on file order, so adding files does not move existing documents between
splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

TRAIN, VAL, TEST = "train", "val", "test"


@dataclass
class SplitConfig:
    """Train/validation/test split, decided per document from a hash of its text: stable across runs and orders."""

    val_fraction: float = 0.01
    """Expected share of documents that go to the validation split."""
    test_fraction: float = 0.0
    """Expected share of documents that go to the test split (0: no test split is written)."""
    seed: int = 0
    """Changes which documents are held out, reproducibly."""

    def splits(self) -> tuple[str, ...]:
        return (TRAIN, VAL, TEST) if self.test_fraction > 0 else (TRAIN, VAL)


def assign_split(digest: bytes, split: SplitConfig) -> str:
    keyed = hashlib.blake2b(digest, digest_size=8, key=split.seed.to_bytes(8, "little", signed=True)).digest()
    position = int.from_bytes(keyed, "little") / 2**64  # uniform on [0, 1)
    if position < split.val_fraction:
        return VAL
    if position < split.val_fraction + split.test_fraction:
        return TEST
    return TRAIN
