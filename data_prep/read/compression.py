"""Opening an input file as a stream of decompressed bytes (``.gz``, ``.zst``, ``.bz2``, ``.xz`` or plain).

Read failures and corrupt or truncated compressed data raise :class:`~data_prep.errors.DataPrepError` naming
the file; bytes read (after decompression) are added to the caller's ``ReadStats.bytes``.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from data_prep.errors import DataPrepError

if TYPE_CHECKING:
    from data_prep.read.sources import Input, ReadStats

# Read-ahead of the line reader over a (decompressed) stream: large enough to amortise Python-level calls.
STREAM_BUFFER_BYTES = 1 << 20
# Compressed bytes fed to the zstd decompressor at a time (bounds its output per call, even for a zip bomb).
ZSTD_READ_BYTES = 1 << 16


class _GuardedReader(io.RawIOBase):
    """Reads from ``inner``: turns its ``errors`` into a DataPrepError (``describe`` writes the message) and adds
    the bytes read to ``stats.bytes`` (when given)."""

    def __init__(self, inner, errors: tuple, describe: Callable[[BaseException], str], stats: ReadStats | None):
        self._inner, self._errors, self._describe, self._stats = inner, errors, describe, stats

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # an uncompressed file (a part of a large JSON Lines file starts mid-file)
        return isinstance(self._inner, io.FileIO)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self.seekable():
            raise io.UnsupportedOperation("seek")
        return self._inner.seek(offset, whence)

    def readinto(self, buffer) -> int:
        try:
            count = self._inner.readinto(buffer)
        except self._errors as error:
            raise DataPrepError(self._describe(error)) from error
        if self._stats is not None:
            self._stats.bytes += count
        return count


class _ZstdReader(io.RawIOBase):
    """Decompresses a (multi-frame) zstd stream; unlike ``zstandard``'s ``stream_reader``, a stream that ends
    inside a frame raises ``EOFError`` instead of ending quietly."""

    def __init__(self, raw) -> None:
        import zstandard

        self._raw, self._context = raw, zstandard.ZstdDecompressor()
        self._frame, self._in_frame, self._eof = self._context.decompressobj(), False, False
        self._pending, self._offset = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._offset >= len(self._pending):
            if self._eof:
                return 0
            self._decompress(self._raw.read(ZSTD_READ_BYTES))
        count = min(len(buffer), len(self._pending) - self._offset)
        buffer[:count] = self._pending[self._offset : self._offset + count]
        self._offset += count
        return count

    def _decompress(self, data: bytes) -> None:
        if not data:
            if self._in_frame:
                raise EOFError("the stream ended inside a zstd frame")
            self._eof = True
            return
        parts = []
        while data:
            self._in_frame = True
            parts.append(self._frame.decompress(data))
            if not self._frame.eof:
                break
            data = self._frame.unused_data
            self._frame, self._in_frame = self._context.decompressobj(), False
        self._pending, self._offset = b"".join(parts), 0


def _decompression_errors() -> tuple:
    errors: tuple = (EOFError, OSError, zlib.error, lzma.LZMAError)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


def _decompressor(compression: str, raw):
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    if compression == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    if compression == "zstd":
        require_module("zstandard", "zstd-compressed inputs")
        return _ZstdReader(raw)
    raise DataPrepError(f"unknown compression '{compression}'")


@contextlib.contextmanager
def open_input(item: Input, stats: ReadStats | None = None) -> Iterator[io.BufferedReader]:
    """The decompressed bytes of a file input as a buffered binary stream (iterate it for lines). Read failures
    and corrupt compressed data raise DataPrepError naming the file; bytes read are added to ``stats.bytes``."""
    path = item.path

    def unreadable(error: BaseException) -> str:
        reason = getattr(error, "strerror", None) or error
        return f"cannot read '{path}': {reason}; fix its permissions or remove it from sources"

    def corrupt(error: BaseException) -> str:
        return f"'{path}' is a corrupt or truncated {item.compression} file ({error}); re-download or remove it"

    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(Path(path).open("rb", buffering=0))
        except OSError as error:
            raise DataPrepError(unreadable(error)) from error
        if item.compression is None:
            raw = _GuardedReader(handle, (OSError,), unreadable, stats)
        else:
            guarded = _GuardedReader(handle, (OSError,), unreadable, None)
            decompressor = stack.enter_context(_decompressor(item.compression, guarded))
            raw = _GuardedReader(decompressor, _decompression_errors(), corrupt, stats)
        yield io.BufferedReader(raw, buffer_size=STREAM_BUFFER_BYTES)


def require_module(module: str, purpose: str):
    try:
        return __import__(module)
    except ImportError as error:
        raise DataPrepError(f"reading {purpose} needs the '{module}' package; pip install {module}") from error
