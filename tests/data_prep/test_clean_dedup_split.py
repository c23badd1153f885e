from data_prep.clean import clean_text
from data_prep.config import CleanConfig
from data_prep.dedup import ExactDeduplicator, text_digest
from data_prep.split import TRAIN, VAL, assign_split


def test_clean_normalises_newlines_but_keeps_indentation():
    text = "\n\ndef f():\r\n    return 1\r\n\n"
    assert clean_text(text, CleanConfig()) == "def f():\n    return 1"
    assert clean_text(text, CleanConfig(normalize_newlines=False, strip=False)) == text


def test_clean_nfc_is_a_switch():
    decomposed = "e\u0301"
    assert clean_text(decomposed, CleanConfig(unicode_nfc=True)) == "\u00e9"
    assert clean_text(decomposed, CleanConfig()) == decomposed


def test_exact_dedup_keeps_the_first_occurrence():
    dedup = ExactDeduplicator()
    flags = [dedup.is_duplicate(text_digest(t)) for t in ["a", "b", "a", "a"]]
    assert flags == [False, False, True, True] and dedup.removed == 2


def test_split_is_deterministic_disjoint_and_close_to_the_fraction():
    digests = [text_digest(f"document {i}") for i in range(4000)]
    first = [assign_split(d, 0.1, seed=0) for d in digests]
    assert first == [assign_split(d, 0.1, seed=0) for d in digests]
    assert set(first) == {TRAIN, VAL}
    assert 0.08 < first.count(VAL) / len(first) < 0.12
    assert first != [assign_split(d, 0.1, seed=1) for d in digests]  # the seed changes the held-out set
