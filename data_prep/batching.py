"""Grouping a stream into lists of a bounded size (``itertools.batched`` arrived only in Python 3.12)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batched(
    iterable: Iterable[T], size: int, max_chars: int | None = None, chars: Callable[[T], int] = len
) -> Iterator[list[T]]:
    """Lists of ``size`` elements (the last may be shorter). With ``max_chars``, a list also ends before an
    element that would take its total ``chars`` past ``max_chars`` (an element larger than that is a list alone),
    so that what a list holds is bounded whatever the elements' sizes."""
    batch: list[T] = []
    total = 0
    for element in iterable:
        if max_chars is not None:
            count = chars(element)
            if batch and total + count > max_chars:
                yield batch
                batch, total = [], 0
            total += count
        batch.append(element)
        if len(batch) == size:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch
