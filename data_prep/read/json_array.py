"""Records of a ``.json`` input: a top-level array of records, or one object (record 0), parsed by ``ijson``.

The fast path streams the file's bytes through ijson's C backend (yajl), which needs valid UTF-8 and turns a
lone ``\\uD800``-style escape into ``?``. So that such files read as they did with the standard library (each
invalid byte and each lone surrogate escape becomes U+FFFD, and a record holding one is counted), the first
sign of either (a UTF-8 error from yajl, or a lone high-surrogate escape seen in the bytes before yajl reads
them) restarts the file on the *repair path*, skipping the records already yielded. There the text is
rewritten before yajl reads it: an invalid byte or a lone surrogate escape becomes the noncharacter U+FDD0
followed by ``r``, and a genuine U+FDD0 (raw or escaped) becomes U+FDD0 followed by ``g``; ``restore`` undoes
this in a record's text, exactly, and says whether anything was replaced. Both paths run at yajl's speed.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO

import ijson

from data_prep.errors import DataPrepError

# Bytes handed to the parser at a time.
JSON_READ_BYTES = 1 << 16
# A record still incomplete after this many bytes is reported as invalid rather than read to the end of the file.
MAX_JSON_RECORD_BYTES = 1 << 28

_BOM = codecs.BOM_UTF8
_WHITESPACE = b" \t\n\r"
# A high-surrogate escape not followed by a low one; yajl would turn it into "?".
_LONE_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])")
# Bytes a match needs from its start (the escape and the lookahead) to be decided; the data is not handed to the
# parser before it is.
_SCAN_TAIL = 12

_MARK = "\ufdd0"
_REPLACED, _GENUINE = _MARK + "r", _MARK + "g"
# What the repair path rewrites: an invalid byte (decoded with "surrogateescape"), a raw U+FDD0, or a run of
# backslashes followed by a surrogate pair (kept), a lone surrogate or an escaped U+FDD0 (an escape when the
# run is odd). The run is matched whole (possessive), so a shorter tail of it never changes the parity.
_REWRITE = re.compile(
    r"[\udc80-\udcff\ufdd0]|(\\++)"
    r"(u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[dD][89a-fA-F][0-9a-fA-F]{2}|u[fF][dD][dD]0)"
)
# Characters a rewrite needs from its start (a surrogate pair); a match starting later waits for the next chunk.
_REWRITE_SPAN = 12
_MARKED = re.compile(r"\ufdd0[rg]")


class _NeedsRepair(Exception):
    """Raised inside the fast path when the file must be read on the repair path."""


class _Source:
    """A file-like ``read`` over a binary stream for ijson: starts with the bytes already peeked, bounds the
    bytes read since the last yielded record, and (fast path only) watches for lone high-surrogate escapes."""

    def __init__(self, stream: BinaryIO, head: bytes, where: Callable[[], str], scan: bool) -> None:
        self._stream, self._head, self._where, self._scan = stream, head, where, scan
        self._tail = b""
        self.total = self.mark = 0

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson probes the stream's type with read(0)
            return b""
        if self._head:
            data, self._head = self._head, b""
        else:
            data = self._stream.read(size if size and size > 0 else JSON_READ_BYTES)
        self.total += len(data)
        if self.total - self.mark > MAX_JSON_RECORD_BYTES:
            raise DataPrepError(
                f"{self._where()}: invalid JSON or longer than {MAX_JSON_RECORD_BYTES:,} bytes; fix the file"
            )
        while self._scan:
            window = self._tail + data
            match = _LONE_HIGH_SURROGATE.search(window)
            if match is None:
                self._tail = window[-_SCAN_TAIL:]
                break
            if match.start() + _SCAN_TAIL <= len(window):
                raise _NeedsRepair
            more = self._stream.read(JSON_READ_BYTES)  # undecided until the bytes after the escape are here
            if not more:
                raise _NeedsRepair
            self.total += len(more)
            data += more
        return data


class _Repairing:
    """A binary stream's bytes rewritten for the repair path (see the module doc), as valid UTF-8."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._pending = ""

    def read(self, size: int = -1) -> bytes:
        while True:
            data = self._stream.read(size)
            final = not data
            window = self._pending + self._decoder.decode(data, final=final)
            cut = len(window) if final else _settled(window)
            self._pending = window[cut:]
            if cut or final:
                return _REWRITE.sub(_rewrite, window[:cut]).encode("utf-8")


def _settled(window: str) -> int:
    """How much of ``window`` can be rewritten now: up to where a rewrite may still need the next chunk,
    and never inside a run of backslashes (whose parity decides what the following ``\\u`` is)."""
    cut = max(len(window) - _REWRITE_SPAN, 0)
    start = max(cut - _REWRITE_SPAN, 0)
    while start and window[start - 1] == "\\":  # a match may begin with a long run of backslashes
        start -= 1
    for match in _REWRITE.finditer(window, start):
        if match.start() < cut < match.end():
            cut = match.end()
    while cut and window[cut - 1] == "\\":
        cut -= 1
    return cut


def _rewrite(match: re.Match) -> str:
    backslashes, escape = match.group(1), match.group(2)
    if escape is None:  # an invalid byte or a raw U+FDD0
        return _GENUINE if match.group(0) == _MARK else _REPLACED
    if len(backslashes) % 2 == 0:  # literal backslashes; of a "pair", the second escape is real
        return backslashes + escape[:5] + _REWRITE.sub(_rewrite, escape[5:])
    if len(escape) == 11:  # a surrogate pair, which yajl decodes
        return match.group(0)
    if escape[1:].lower() == "fdd0":
        return match.group(0) + "g"
    return backslashes[:-1] + _REPLACED


def restore(text: str) -> tuple[str, bool]:
    """A repair-path record's text as the standard library would read it (invalid bytes and lone surrogates
    as U+FFFD), and whether it held any."""
    if _MARK not in text:
        return text, False
    replaced = False

    def undo(match: re.Match) -> str:
        nonlocal replaced
        if match.group(0) == _REPLACED:
            replaced = True
            return "\ufffd"
        return _MARK

    return _MARKED.sub(undo, text), replaced


def _peek(stream: BinaryIO) -> tuple[bytes, bytes]:
    """(the first non-whitespace byte, or b"" for an empty file; the bytes from it on read so far). A UTF-8 BOM
    at the start is dropped."""
    head = stream.read(max(JSON_READ_BYTES, len(_BOM))).removeprefix(_BOM)
    while True:
        head = head.lstrip(_WHITESPACE)
        if head:
            return head[:1], head
        head = stream.read(JSON_READ_BYTES)
        if not head:
            return b"", b""


def _backend():
    """ijson's C backend: the others are slower, and the pure-Python one keeps lone surrogates."""
    try:
        return ijson.get_backend("yajl2_c")
    except ImportError as error:
        raise DataPrepError(
            "reading .json inputs needs ijson's C backend (yajl2_c), which this ijson install lacks; "
            "pip install --force-reinstall ijson (a wheel for your platform includes it)"
        ) from error


def _is_utf8_error(error: Exception) -> bool:
    """yajl's "invalid bytes in UTF8 string", or a string it returned that Python could not decode."""
    return isinstance(error.__context__, UnicodeDecodeError) or "invalid bytes in UTF8" in str(error)


def _message(error: Exception) -> str:
    """The first line of yajl's message (it adds the text around the error on the next lines)."""
    message = error.args[0] if error.args else ""
    if isinstance(message, bytes):  # yajl2_c passes some messages as bytes
        message = message.decode("utf-8", errors="replace")
    lines = str(message).strip().splitlines()
    return lines[0].removeprefix("parse error: ") if lines else type(error).__name__


class JsonRecords:
    """Iterates ``(index, record, marked)`` over a ``.json`` input; ``marked`` records come from the repair path,
    and their strings need ``restore``. ``open_stream`` opens its decompressed bytes (it is
    called again when the repair path restarts the file); ``on_restart`` is called before that, so the caller
    can undo what the first pass counted."""

    def __init__(
        self,
        path: str,
        open_stream: Callable[[], AbstractContextManager[BinaryIO]],
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        self._path, self._open, self._on_restart = path, open_stream, on_restart
        self._index = 0

    def _error(self, what: str) -> DataPrepError:
        return DataPrepError(f"'{self._path}' {what}; fix the file (a JSON array of records, or one record)")

    def _where(self) -> str:
        return f"'{self._path}' record {self._index}"

    def __iter__(self) -> Iterator[tuple[int, object, bool]]:
        try:
            yield from self._records(repair=False)
            return
        except (_NeedsRepair, UnicodeDecodeError):
            pass
        except ijson.JSONError as error:
            if not _is_utf8_error(error):
                raise self._json_error(error) from error
        self._on_restart()
        try:
            yield from self._records(repair=True)
        except (ijson.JSONError, UnicodeDecodeError) as error:
            raise self._json_error(error) from error

    def _records(self, repair: bool) -> Iterator[tuple[int, object, bool]]:
        skip, self._index = self._index, 0
        with self._open() as raw:
            stream = _Repairing(raw) if repair else raw
            first, head = _peek(stream)
            if first not in (b"[", b"{"):
                found = repr(first.decode("latin-1")) if first else "an empty file"
                raise self._error(f"is not a JSON array or object (starts with {found})")
            source = _Source(stream, head, self._where, scan=not repair)
            prefix = "item" if first == b"[" else ""
            for record in _backend().items(source, prefix, use_float=True, buf_size=JSON_READ_BYTES):
                if self._index >= skip:
                    yield self._index, record, repair
                self._index += 1
                source.mark = source.total

    def _json_error(self, error: Exception) -> DataPrepError:
        message = _message(error)
        if message.startswith("trailing garbage"):
            return self._error("has data after the top-level JSON value")
        if message.startswith("premature EOF"):
            return self._error(f"is cut off inside record {self._index} or before its closing ']' ({message})")
        return self._error(f"record {self._index}: invalid JSON ({message})")
