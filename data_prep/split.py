"""Deterministic train/validation/test split by document: the decision depends only on the document's text
digest and the split seed, never on file order, so adding files does not move existing documents between
splits.

Since the digest is that of the *cleaned* text, which split a document lands in is known only once it has been
read and cleaned. What can be known earlier is checked earlier, so that a run bound to end with an empty train or
val split fails in seconds, not after tokenizing the corpus: the fractions before anything is read
(:func:`check_fractions`); a corpus of fewer than two documents (one text file read whole) likewise; the kept
documents' digests right after the documents stage (:func:`missing_splits`: deduplication only removes
documents, so a split none of them falls in stays empty). Only deduplication emptying a split is found at the end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from data_prep.errors import DataPrepError

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


def check_fractions(split: SplitConfig) -> None:
    """Raise ``DataPrepError`` when the fractions alone leave the val or the train split empty, or are no
    fractions."""
    for key in ("val_fraction", "test_fraction"):
        value = getattr(split, key)
        if not 0 <= value < 1:
            raise DataPrepError(f"split.{key} is {value}; it must be at least 0 and below 1")
    if split.val_fraction == 0:
        raise DataPrepError(
            "split.val_fraction is 0, so the val split would be empty and training could not be validated; set it "
            "above 0 (e.g. 0.01)"
        )
    held_out = split.val_fraction + split.test_fraction
    if held_out >= 1:
        raise DataPrepError(
            f"split.val_fraction + split.test_fraction is {held_out:g}, which leaves nothing for the train split; "
            "make their sum below 1"
        )


def missing_splits(digests: Iterable[bytes], split: SplitConfig) -> list[str]:
    """Which of train and val none of ``digests`` (documents' text digests) falls in; stops reading them as soon as
    both have one, so a corpus whose splits fill costs a look at its first documents only."""
    wanted = {TRAIN, VAL}
    for digest in digests:
        wanted.discard(assign_split(digest, split))
        if not wanted:
            return []
    return sorted(wanted)


def assign_split(digest: bytes, split: SplitConfig) -> str:
    keyed = hashlib.blake2b(digest, digest_size=8, key=split.seed.to_bytes(8, "little", signed=True)).digest()
    position = int.from_bytes(keyed, "little") / 2**64  # uniform on [0, 1)
    if position < split.val_fraction:
        return VAL
    if position < split.val_fraction + split.test_fraction:
        return TEST
    return TRAIN
