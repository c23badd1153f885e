"""Deterministic train/validation split by document: the decision depends only on the document's text digest
and the split seed, never on file order, so adding files does not move existing documents between splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass
class SplitConfig:
    """Train/validation split, decided per document from a hash of its text: stable across runs and orders."""

    val_fraction: float = 0.01
    """Expected share of documents that go to the validation split."""
    seed: int = 0
    """Changes which documents are held out, reproducibly."""


TRAIN, VAL = "train", "val"


def assign_split(digest: bytes, val_fraction: float, seed: int) -> str:
    keyed = hashlib.blake2b(digest, digest_size=8, key=seed.to_bytes(8, "little", signed=True)).digest()
    # Map the 64-bit hash onto [0, 1).
    return VAL if int.from_bytes(keyed, "little") / 2**64 < val_fraction else TRAIN
