"""Stage 2: repair and normalise document text. Each step is a switch in :class:`CleanConfig`.

Steps run in this order, each only when switched on (the defaults suit a code corpus: only newline
normalisation and the outer strip run, so indentation and content survive byte for byte):

    newlines -> mojibake repair (ftfy) -> HTML to text -> NFC / NFKC -> URLs -> e-mail addresses
             -> whitespace -> strip

Every step first checks whether it can apply at all (``"<" in text``, ``text.isascii()``, ...), so a switched-on
step costs little on documents it does not touch, and a switched-off one costs nothing.
"""

from __future__ import annotations

import html
import importlib.util
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from data_prep.errors import DataPrepError

KEEP, REMOVE, MASK = "keep", "remove", "mask"
_ACTIONS = (KEEP, REMOVE, MASK)


@dataclass
class CleanConfig:
    """Text repair and normalisation. Code corpora keep their whitespace, so nothing on by default touches
    indentation or content."""

    normalize_newlines: bool = True
    """Turn ``\\r\\n`` and lone ``\\r`` into ``\\n``."""
    fix_mojibake: bool = False
    """Repair text decoded with the wrong codec (``cafÃ©`` -> ``café``) and similar encoding glitches with
    ``ftfy.fix_encoding``. Only the encoding repairs run: quotes, full-width forms, ligatures and HTML entities
    are left to the other switches. Pure-ASCII documents are skipped at no cost."""
    strip_html: bool = False
    """Turn HTML into its visible text with resiliparse (as the WARC reader does): tags go, entities are
    decoded, ``<script>``, ``<style>``, ``<noscript>`` and comments are dropped, block elements (``<p>``,
    ``<div>``, ``<li>``, ``<br>``, headings, ...) become line breaks, list items get bullets, and other
    whitespace collapses as in a browser (except inside ``<pre>``). For HTML sources only: it reads ``<`` as
    markup. A document without any ``<`` is taken as plain text: only its entities are decoded."""
    unicode_nfc: bool = False
    """Apply Unicode NFC composition (off by default: it rewrites code identifiers and literals)."""
    unicode_nfkc: bool = False
    """Apply Unicode NFKC (compatibility) normalisation: full-width letters, ligatures, superscripts and the
    like become their plain forms. Implies NFC. Off by default: it changes meaning in code and math."""
    urls: Literal["keep", "remove", "mask"] = "keep"
    """What to do with URLs (``http(s)://``, ``ftp://`` or ``www.`` ...): ``keep``, ``remove`` (with the space
    before them) or ``mask`` (replace each with ``url_token``)."""
    url_token: str = "<url>"
    """Replacement for each URL when ``urls: mask``."""
    emails: Literal["keep", "remove", "mask"] = "keep"
    """What to do with e-mail addresses: ``keep``, ``remove`` or ``mask`` (replace each with ``email_token``)."""
    email_token: str = "<email>"
    """Replacement for each e-mail address when ``emails: mask``."""
    normalize_whitespace: bool = False
    """Collapse runs of spaces, tabs and other blank characters inside a line to one space, trim each line,
    and shrink runs of blank lines to a single blank line (paragraph breaks survive). Off by default:
    code needs its indentation."""
    strip: bool = True
    """Remove leading and trailing blank space around each document."""
    min_chars: int = 1
    """Drop documents shorter than this many characters after cleaning."""

    def __post_init__(self) -> None:
        for key in ("urls", "emails"):
            if getattr(self, key) not in _ACTIONS:
                raise DataPrepError(f"clean.{key} is '{getattr(self, key)}'; expected one of {list(_ACTIONS)}")
        # Fail at configuration time, not at the first document that needs the package.
        for key, package in (("fix_mojibake", "ftfy"), ("strip_html", "resiliparse")):
            if getattr(self, key) and importlib.util.find_spec(package) is None:
                raise DataPrepError(f"clean.{key} needs the {package} package: pip install {package}")


# -- URLs and e-mail addresses ------------------------------------------------------------------------------
# A URL starts with a scheme or "www." and runs to the next blank or quote; it may not end in punctuation that
# usually closes the sentence around it ("see https://x.org." keeps its full stop).
_URL = r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}]"
# Lengths are bounded as in RFC 5321 (64-character local part, 63-character labels), which also keeps the scan
# linear on long runs of address-like characters (base64 blobs, dotted identifiers).
_EMAIL = r"\b[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\b"
URL_PATTERN = re.compile(_URL)
EMAIL_PATTERN = re.compile(_EMAIL)
# Removal also takes the blank before the match (or after it, at the start of a line), so "see URL now" reads
# "see now", not "see  now".
_URL_WITH_SPACE = re.compile(rf"(?<=\S)[ \t]+{_URL}|{_URL}[ \t]*")
_EMAIL_WITH_SPACE = re.compile(rf"(?<=\S)[ \t]+{_EMAIL}|{_EMAIL}[ \t]*")


def _replace(text: str, action: str, token: str, pattern: re.Pattern, with_space: re.Pattern) -> str:
    if action == REMOVE:
        return with_space.sub("", text)
    if action == MASK:
        return pattern.sub(token.replace("\\", "\\\\"), text)
    return text


# -- whitespace ---------------------------------------------------------------------------------------------
# Blank characters other than newlines: space, tab, form feed, vertical tab, no-break and other Unicode spaces.
_HORIZONTAL_BLANKS = re.compile(r"[^\S\n]+")
_LINE_EDGE_BLANKS = re.compile(r"^ | $", re.MULTILINE)
_BLANK_LINE_RUNS = re.compile(r"\n{3,}")


def normalize_whitespace(text: str) -> str:
    text = _HORIZONTAL_BLANKS.sub(" ", text)
    text = _LINE_EDGE_BLANKS.sub("", text)
    return _BLANK_LINE_RUNS.sub("\n\n", text)


# -- HTML ---------------------------------------------------------------------------------------------------
_SURROGATES = re.compile("[\ud800-\udfff]")


def html_to_text(text: str) -> str:
    """The visible text of an HTML document or fragment (see :attr:`CleanConfig.strip_html`).

    resiliparse (the Lexbor parser, in C) rather than the standard library's ``html.parser``: the latter takes
    quadratic time on some malformed input (200 KB of ``"a<b "`` ran for over four minutes on Python 3.11) and
    raises on others, while resiliparse parses as browsers do, in linear time and about seven times faster.
    """
    if "<" not in text:  # plain text: decode entities only, keep its whitespace
        return html.unescape(text) if "&" in text else text
    from resiliparse.extract.html2text import extract_plain_text  # imported here: only HTML corpora need it
    from resiliparse.parse.html import HTMLTree

    try:
        tree = HTMLTree.parse(text)
    except UnicodeEncodeError:  # lone surrogates (undecodable bytes kept by the reader) cannot go to the parser
        tree = HTMLTree.parse(_SURROGATES.sub("\ufffd", text))
    # main_content=False: keep all visible text (navigation too; the quality filters judge it). alt_texts=False:
    # image descriptions are not shown on the page.
    return extract_plain_text(tree, preserve_formatting=True, main_content=False, alt_texts=False)


# -- the stage ----------------------------------------------------------------------------------------------
def _fix_mojibake(text: str) -> str:
    if text.isascii():  # O(1) in CPython: mojibake needs non-ASCII characters
        return text
    import ftfy  # imported here: only corpora that ask for the repair need the package

    return ftfy.fix_encoding(text)


def clean_text(text: str, clean: CleanConfig) -> str:
    """Apply the switched-on steps of :class:`CleanConfig` to one document, in the order of the module doc."""
    if clean.normalize_newlines and "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if clean.fix_mojibake:
        text = _fix_mojibake(text)
    if clean.strip_html:
        text = html_to_text(text)
    if clean.unicode_nfkc:
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
    elif clean.unicode_nfc and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if clean.urls != KEEP and ("://" in text or "www." in text):
        text = _replace(text, clean.urls, clean.url_token, URL_PATTERN, _URL_WITH_SPACE)
    if clean.emails != KEEP and "@" in text:
        text = _replace(text, clean.emails, clean.email_token, EMAIL_PATTERN, _EMAIL_WITH_SPACE)
    if clean.normalize_whitespace:
        text = normalize_whitespace(text)
    if clean.strip:
        text = text.strip()
    return text
