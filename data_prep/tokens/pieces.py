"""Long texts cut into pieces where the byte-level pre-tokenizer splits them anyway, so that neither tokenizer
training nor encoding ever hands ``tokenizers`` one huge text.

Why: ``tokenizers`` keeps per-character state for the whole text it is given. Encoding one 20 MB text took
2.7 GB (135 bytes per character) and training on it 1.8 GB, so one 200 MB document needs over 20 GB. Given in
pieces of at most ``tokenizer.max_piece_chars`` characters, that memory follows the piece, not the document.

Where: the byte-level pre-tokenizer splits text into words with GPT-2's regular expression, and BPE never merges
across words. A word that contains a letter or digit at its end stops where the next character is not a letter
or digit (no pattern continues a letter run with anything but letters, a digit run with anything but digits, and
the contractions end in letters), and the expression looks only forward, so matching from that position on is
the same whether the text before it is there or not. Cutting at such a *word end* gives the same words, hence the
same ids, piece by piece as for the whole text (tested against whole-text encoding). A cut never falls inside a
special token (``<|endoftext|>`` has word ends inside it).

A run of more than ``max_chars`` characters without a word end (only letters, only digits, or only other
characters: a genome, a line of dashes) is a single pre-tokenizer word, whose BPE cost grows with its length in
memory and, in training, in time (a sample of 100,000-letter words trained 30 times slower than one of
1,000-letter words); it is cut every ``max_chars`` characters, which changes the tokens at those cuts only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from tokenizers import Tokenizer, pre_tokenizers

# A character that is neither a letter nor a digit, right after one that is: a word end (see the module doc).
# [^\W_] is exactly str.isalnum, i.e. the pre-tokenizer's \p{L} and \p{N}.
_WORD_END = re.compile(r"(?<=[^\W_])[\W_]")
# Characters before a piece's longest possible end in which its last word end is first looked for; the window
# grows sixteenfold until one is found, so ordinary text costs a look at a few hundred characters per piece.
_FIRST_WINDOW = 256


def text_pieces(text: str, max_chars: int, special_tokens: Sequence[str] = ()) -> Iterator[str]:
    """``text`` as consecutive pieces of at most ``max_chars`` characters, each but the last ending at the last
    word end that fits (outside any of ``special_tokens``), or cut at ``max_chars`` where there is none.
    ``"".join(pieces) == text``; a text that fits is its own single piece (an empty text included)."""
    if len(text) <= max_chars:
        yield text
        return
    specials = [token for token in special_tokens if len(token) > 1 and token in text]
    start = 0
    while len(text) - start > max_chars:
        cut = _last_word_end(text, start, start + max_chars, specials)
        yield text[start:cut]
        start = cut
    yield text[start:]


def _last_word_end(text: str, start: int, end: int, specials: list[str]) -> int:
    """The last word end in ``(start, end]`` that is not inside a special token; ``end`` when there is none."""
    window = _FIRST_WINDOW
    while True:
        low = max(start + 1, end - window)
        ends = [match.start() for match in _WORD_END.finditer(text, low, end + 1)]
        for position in reversed(ends):
            if not _inside_special_token(text, position, specials):
                return position
        if low == start + 1:
            return end
        window *= 16


def _inside_special_token(text: str, position: int, specials: list[str]) -> bool:
    # An occurrence that starts before ``position`` and ends after it lies within these bounds.
    return any(text.find(token, position - len(token) + 1, position + len(token) - 1) >= 0 for token in specials)


def cut_safe_special_tokens(tokenizer: Tokenizer) -> tuple[str, ...] | None:
    """The special (added) tokens a cut must avoid when ``tokenizer`` gives pieces cut at word ends the ids of
    the whole text: a byte-level pre-tokenizer with its regular expression and no prefix space, no normalizer, no
    truncation, and no added token that swallows the blank after it (``rstrip``) behind a letter or digit.
    ``None`` for any other tokenizer: it is given whole documents, as it was before pieces existed."""
    pre_tokenizer = tokenizer.pre_tokenizer
    if (
        tokenizer.normalizer is not None
        or tokenizer.truncation is not None
        or not isinstance(pre_tokenizer, pre_tokenizers.ByteLevel)
        or not pre_tokenizer.use_regex
        or pre_tokenizer.add_prefix_space
    ):
        return None
    added = tokenizer.get_added_tokens_decoder().values()
    if any(token.rstrip and token.content[-1:].isalnum() for token in added):
        return None
    return tuple(token.content for token in added)
