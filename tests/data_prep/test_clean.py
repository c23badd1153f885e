import importlib.util
import sysconfig
import time
from dataclasses import fields
from pathlib import Path

import pytest

from data_prep.errors import DataPrepError
from data_prep.quality.clean import CleanConfig, clean_text, html_to_text

STDLIB = Path(sysconfig.get_paths()["stdlib"])


# -- defaults: a code corpus passes through untouched --------------------------------------------------------
def test_defaults_leave_python_source_unchanged_apart_from_newlines_and_strip():
    source = (STDLIB / "textwrap.py").read_text(encoding="utf-8")
    assert "\n        " in source  # real indentation to keep
    assert clean_text(source, CleanConfig()) == source.strip()
    crafted = "\n\nclass A:\r\n\tdef f(self):\r\n\t\treturn {'a':  1}   # two  spaces\r\n\n\n\n\rx = 'café https://x.org a@b.org'\n"
    expected = (
        "class A:\n\tdef f(self):\n\t\treturn {'a':  1}   # two  spaces\n\n\n\n\nx = 'café https://x.org a@b.org'"
    )
    assert clean_text(crafted, CleanConfig()) == expected


def test_new_steps_are_off_by_default():
    defaults = CleanConfig()
    assert not (defaults.fix_mojibake or defaults.strip_html or defaults.unicode_nfc or defaults.unicode_nfkc)
    assert defaults.urls == defaults.emails == "keep" and not defaults.normalize_whitespace
    assert {f.name for f in fields(CleanConfig)} >= {"normalize_newlines", "unicode_nfc", "strip", "min_chars"}


def test_newlines_and_strip_are_switches():
    text = "\n\ndef f():\r\n    return 1\r\n\n"
    assert clean_text(text, CleanConfig()) == "def f():\n    return 1"
    assert clean_text(text, CleanConfig(normalize_newlines=False, strip=False)) == text
    assert clean_text("a\rb", CleanConfig()) == "a\nb"


# -- Unicode --------------------------------------------------------------------------------------------------
def test_mojibake_is_repaired_when_switched_on():
    broken = "Le cafÃ© est prÃªt â€” naÃ¯ve"
    assert clean_text(broken, CleanConfig(fix_mojibake=True)) == "Le café est prêt — naïve"
    assert clean_text(broken, CleanConfig()) == broken
    # Only encoding repairs: curly quotes, ligatures and full-width forms are left to other switches.
    correct = "“quoted” ﬁne Ｆｕｌｌ café"
    assert clean_text(correct, CleanConfig(fix_mojibake=True)) == correct
    assert clean_text("plain ascii", CleanConfig(fix_mojibake=True)) == "plain ascii"


def test_nfc_is_a_switch():
    decomposed = "e\u0301"
    assert clean_text(decomposed, CleanConfig(unicode_nfc=True)) == "\u00e9"
    assert clean_text(decomposed, CleanConfig()) == decomposed


def test_nfkc_folds_compatibility_forms_and_is_separate_from_nfc():
    text = "ﬁne Ｆｕｌｌ x² e\u0301"
    assert clean_text(text, CleanConfig(unicode_nfkc=True)) == "fine Full x2 \u00e9"
    assert clean_text(text, CleanConfig(unicode_nfc=True)) == "ﬁne Ｆｕｌｌ x² \u00e9"
    assert clean_text(text, CleanConfig()) == text


# -- HTML -----------------------------------------------------------------------------------------------------
PAGE = """<!DOCTYPE html>
<html><head><title>Caf&eacute; &amp; Bar</title>
<style>p { color: red; } .x > .y { margin: 0 }</style>
<script type="text/javascript">if (a < b && c > d) { document.write("<p>not text</p>"); }</script>
</head>
<body>
  <div class="outer"><div class="inner">
    <p>Hello <b>bold <i>and <a href="/x">nested</a></i></b>   text &mdash; 3 &lt; 4 &#38; &#x263A;</p>
    <ul><li>first item</li><li>second <em>item</em></li></ul>
  </div></div>
  <noscript><p>Please enable scripts.</p></noscript>
  <!-- a comment -->
  <pre>def f():
    return 1</pre>
  <table><tr><td>a</td><td>b</td></tr></table>
  line<br>break<br/>again
</body></html>"""


def test_html_is_turned_into_its_visible_text():
    text = clean_text(PAGE, CleanConfig(strip_html=True))
    assert text == (
        "Hello bold and nested text — 3 < 4 & ☺\n\n"  # nested tags gone, entities decoded
        "  • first item\n  • second item\n"  # list items on their own lines
        "def f():\n    return 1\n"  # <pre> keeps its whitespace
        "a\t\tb\n"
        "line\nbreak\nagain"
    )
    for hidden in ("Caf", "color", "document.write", "not text", "enable scripts", "comment", "href", "<p>"):
        assert hidden not in text  # head, style, script, noscript, comments and attributes are not text


def test_html_entities_are_decoded_without_tags_and_markup_is_kept_when_off():
    assert html_to_text("Fish &amp; chips &eacute;t&eacute;") == "Fish & chips été"
    assert html_to_text("no markup at all\n\n  indented") == "no markup at all\n\n  indented"
    assert clean_text(PAGE, CleanConfig()) == PAGE.strip()


def test_malformed_html_is_handled_quickly():
    for broken in ("a <![if b", "<!x y", "<p>open <b>never closed", "<![CDATA[x", "</", "<a href='", "<div <p>"):
        assert isinstance(clean_text(broken, CleanConfig(strip_html=True)), str)
    assert clean_text("<p>lone \ud800 surrogate</p>", CleanConfig(strip_html=True)) == "lone \ufffd surrogate"
    # The standard library's html.parser takes minutes on this (quadratic in the number of unclosed tags).
    started = time.perf_counter()
    assert clean_text("a<b " * 50_000, CleanConfig(strip_html=True)) == "a"
    assert time.perf_counter() - started < 5


# -- URLs and e-mail addresses --------------------------------------------------------------------------------
def test_urls_are_removed_or_masked():
    text = "See https://example.com/a?b=1&c=2. Or www.example.org/path, or ftp://files.example.net now."
    assert clean_text(text, CleanConfig(urls="remove")) == "See. Or, or now."
    assert clean_text(text, CleanConfig(urls="mask")) == "See <url>. Or <url>, or <url> now."
    assert clean_text(text, CleanConfig(urls="mask", url_token="[LINK]")) == "See [LINK]. Or [LINK], or [LINK] now."
    assert clean_text(text, CleanConfig()) == text
    assert clean_text("https://a.org starts the line", CleanConfig(urls="remove")) == "starts the line"


def test_emails_are_removed_or_masked():
    text = "Write to jane.doe+news@mail.example.co.uk or to bob@example.com."
    assert clean_text(text, CleanConfig(emails="remove")) == "Write to or to."
    assert clean_text(text, CleanConfig(emails="mask")) == "Write to <email> or to <email>."
    assert clean_text(text, CleanConfig(emails="mask", email_token="\\E")) == "Write to \\E or to \\E."
    assert clean_text("@decorator and a@b are not addresses", CleanConfig(emails="remove")).startswith("@decorator")
    assert clean_text(text, CleanConfig()) == text


def test_a_missing_package_is_reported_when_the_config_is_made(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "ftfy" else real_find_spec(name))
    with pytest.raises(DataPrepError, match="clean.fix_mojibake needs the ftfy package"):
        CleanConfig(fix_mojibake=True)
    CleanConfig(strip_html=True)


def test_unknown_url_or_email_action_is_an_error():
    with pytest.raises(DataPrepError, match="clean.urls"):
        CleanConfig(urls="delete")
    with pytest.raises(DataPrepError, match="clean.emails"):
        CleanConfig(emails="hide")


# -- whitespace -----------------------------------------------------------------------------------------------
def test_whitespace_normalisation_collapses_runs_and_blank_lines():
    text = "  Title \t here  \n\n\n\n\nFirst\u00a0\u00a0paragraph   line.\t\nSecond line.\n\n\nLast."
    assert clean_text(text, CleanConfig(normalize_whitespace=True)) == (
        "Title here\n\nFirst paragraph line.\nSecond line.\n\nLast."
    )
    # Paragraph breaks (one blank line) survive.
    assert clean_text("a\n\nb", CleanConfig(normalize_whitespace=True)) == "a\n\nb"


def test_every_switch_together_in_order():
    text = "<p>Caf\u00c3\u00a9 ﬁne   at https://x.org</p>\n\n\n\n<p>mail a@b.org</p>"
    everything = CleanConfig(
        fix_mojibake=True, strip_html=True, unicode_nfkc=True, urls="mask", emails="mask", normalize_whitespace=True
    )
    assert clean_text(text, everything) == "Café fine at <url>\n\nmail <email>"
