"""C4's line and document rules (Raffel et al. 2020), as the published C4 code applies them: the one filter
that rewrites the kept text, so it runs last."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from data_prep.quality.registry import register


@dataclass
class C4Config:
    """Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer",
    section 2.2, as implemented in the published C4 code (tensorflow_datasets ``c4_utils.clean_page``). Line
    rules remove lines; document rules drop the document; the kept lines are joined with ``\\n``. The paper's
    bad-words list is not applied (it is not shipped offline)."""

    enabled: Optional[bool] = None
    """``null``: as the profile says (on for ``web``)."""
    remove_citations: bool = True
    """Delete Wikipedia-style markers (``[1]``, ``[edit]``, ``[citation needed]``) from lines first."""
    remove_lines_without_terminal_punctuation: bool = True
    """Remove lines that do not end in ``.``, ``?``, ``!`` or ``"``, or that end in ``...``. (FineWeb turned
    this rule off: it removed too much text.)"""
    min_words_per_line: int = 5
    """Remove lines with fewer words. The paper and the C4 code say 5 (datatrove's C4 filter uses 3)."""
    remove_javascript_lines: bool = True
    """Remove lines that mention "javascript" (mostly "JavaScript must be enabled" notices)."""
    remove_policy_lines: bool = True
    """Remove lines that contain one of ``policy_substrings``."""
    policy_substrings: list[str] = field(
        default_factory=lambda: [
            "terms of use",
            "privacy policy",
            "cookie policy",
            "uses cookies",
            "use of cookies",
            "use cookies",
        ]
    )
    """Case-insensitive phrases that mark a cookie or policy line (the C4 code's list)."""
    drop_lorem_ipsum: bool = True
    """Drop documents with "lorem ipsum" in a kept line (filler text)."""
    drop_curly_bracket: bool = True
    """Drop documents with ``{`` in a kept line (likely code)."""
    min_sentences: int = 3
    """Drop documents left with fewer sentences (counted as end-mark runs, as the C4 code's docstring puts it;
    the C4 code used NLTK's Punkt, which does not split at abbreviations). The paper and the C4 code say 3
    (datatrove's C4 filter uses 5)."""


_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
_C4_END_MARKS = (".", "?", "!", '"')
# A run of end marks (closing quotes and brackets included) before a blank; the lookbehind starts each match at
# the beginning of a run, which keeps the scan linear on long runs of dots.
_SENTENCE_END = re.compile(r"(?<![.!?])[.!?]+[\"'”’)\]]*(?=\s|$)")


@register("c4", C4Config, order=120, profiles=("web",), rewrite=True)
def c4_rewrite(text: str, config: C4Config) -> str | None:
    """C4's line and document rules (see :class:`C4Config`): the kept lines joined by ``\\n``, or None when
    the document is dropped. The checks run in the C4 code's order."""
    kept: list[str] = []
    sentences = 0
    policy = [p.lower() for p in config.policy_substrings] if config.remove_policy_lines else []
    for line in text.split("\n"):
        line = line.strip()
        if config.remove_citations and "[" in line:
            line = _CITATION.sub("", line).strip()
        if config.remove_lines_without_terminal_punctuation and (
            not line.endswith(_C4_END_MARKS) or line.endswith("...")
        ):
            continue
        if len(line.split()) < max(config.min_words_per_line, 1):
            continue
        lower = line.lower()
        if config.drop_lorem_ipsum and "lorem ipsum" in lower:
            return None
        if config.remove_javascript_lines and "javascript" in lower:
            continue
        if config.drop_curly_bracket and "{" in line:
            return None
        if any(phrase in lower for phrase in policy):
            continue
        sentences += max(1, len(_SENTENCE_END.findall(line)))
        kept.append(line)
    if sentences < config.min_sentences:
        return None
    return "\n".join(kept)
