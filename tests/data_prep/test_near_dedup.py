"""Near-duplicate removal: shingles, MinHash signatures (checked against datasketch itself) and the LSH index."""

from __future__ import annotations

import random
import re
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash

from data_prep.dedup import lsh as near_lsh
from data_prep.dedup import minhash as near_dedup
from data_prep.dedup.lsh import NearDuplicateIndex, lsh_params
from data_prep.dedup.minhash import (
    NearDedupConfig,
    shingle_strings,
    shingles,
    signature_dtype,
    signatures,
)
from data_prep.errors import DataPrepError

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Sizeable modules present in every supported Python version.
MODULES = (
    "argparse.py",
    "textwrap.py",
    "difflib.py",
    "inspect.py",
    "json/decoder.py",
    "shutil.py",
    "tarfile.py",
    "typing.py",
    "calendar.py",
    "configparser.py",
    "pathlib.py",
    "zipfile.py",
)
WORD = re.compile(r"\S+")


def stdlib_text(name: str) -> str:
    path = STDLIB / name
    if not path.is_file():  # pathlib and zipfile became packages in Python 3.12
        path = STDLIB / name.removesuffix(".py") / "__init__.py"
    return path.read_text(encoding="utf-8")


def change_words(text: str, every: int, offset: int = 0, tag: str = "changed") -> str:
    """``text`` with every ``every``-th word replaced, its layout kept."""
    counter = iter(range(10**9))

    def replace(match: re.Match) -> str:
        i = next(counter)
        return f"{tag}{i}" if (i + offset) % every == 0 else match.group(0)

    return WORD.sub(replace, text)


def exact_jaccard(a: str, b: str, config: NearDedupConfig) -> float:
    x, y = shingle_strings(a, config), shingle_strings(b, config)
    return len(x & y) / len(x | y)


def decide(texts: list[str], config: NearDedupConfig, batch: int | None = None, sigs=None) -> list[str | None]:
    sigs = signatures(texts, config) if sigs is None else sigs
    index = NearDuplicateIndex(config)
    batch = batch or len(texts)
    verdicts: list[str | None] = []
    for lo in range(0, len(texts), batch):
        verdicts += index.add_batch([f"doc{i}" for i in range(lo, min(lo + batch, len(texts)))], sigs[lo : lo + batch])
    return verdicts


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """Distinct stdlib modules, planted near-copies (a few words changed, re-indented) and a copy of a copy,
    shuffled so that copies sometimes come before their originals."""
    originals = [stdlib_text(name) for name in MODULES]
    planted = [
        change_words(originals[0], 200),
        change_words(originals[1], 150, tag="x"),
        change_words(originals[2], 100).replace("    ", "  "),
        change_words(originals[3], 300).upper(),
        change_words(change_words(originals[4], 300), 250, tag="again"),
    ]
    texts = originals + planted
    random.Random(7).shuffle(texts)
    return texts


# -- shingles ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shingle", ["word", "char"])
def test_fast_shingles_are_the_reference_shingle_set(shingle):
    config = NearDedupConfig(shingle=shingle)
    texts = [stdlib_text(name) for name in MODULES[:4]] + [
        "Ünïcödé wörds\u00a0split\u2003on all whitespace, Σίσυφος ΣΊΣΥΦΟΣ",
        "ascii\x1cseparators\x1dthat\x1estr.split\x1fhonours too and more words",
        "lone surrogate \udcff survives hashing in this text",
    ]
    for text in texts:
        assert len(shingles(text, config)) == len(shingle_strings(text, config))
    # Intersections agree too: one shared hash per shared shingle.
    a, b = texts[0], change_words(texts[0], 50)
    shared = len(np.intersect1d(shingles(a, config), shingles(b, config)))
    assert shared == len(shingle_strings(a, config) & shingle_strings(b, config))


def test_short_documents_are_one_shingle_and_empty_ones_have_none():
    config = NearDedupConfig(ngram=5)
    assert shingle_strings("Just  Three\nwords", config) == {"just three words"}
    assert len(shingles("Just  Three\nwords", config)) == 1
    assert len(shingles("just three words", config)) == 1
    assert np.array_equal(shingles("just three words", config), shingles("JUST three   words", config))
    char = NearDedupConfig(shingle="char", ngram=5)
    assert shingle_strings(" ab\tc ", char) == {"ab c"} and len(shingles(" ab\tc ", char)) == 1
    for text in ("", "   \n\t"):
        assert shingles(text, config).size == 0 and shingle_strings(text, config) == set()

    texts = ["just three words", "Just three  words", "just three words more", "", "  ", "x"]
    sigs = signatures(texts, config)
    empty = MinHash(num_perm=config.num_perm, seed=config.seed).hashvalues
    assert np.array_equal(sigs[3], empty) and np.array_equal(sigs[4], empty)
    index = NearDuplicateIndex(config)
    verdicts = index.add_batch([str(i) for i in range(len(texts))], sigs)
    # Same short text -> duplicate; one more word -> a different (single) shingle; empty texts are never
    # duplicates (of each other or anything) and are not indexed. The duplicate is indexed too (a later
    # document that matches only it is its duplicate, whatever became of it).
    assert verdicts == [None, "0", None, None, None, None]
    assert len(index) == 4


def test_large_documents_are_shingled_in_pieces_with_identical_results(monkeypatch):
    texts = [stdlib_text(name) for name in MODULES[:3]] + ["Σίσυφος ΣΊΣΥΦΟΣ İstanbul " * 300]
    configs = [NearDedupConfig(), NearDedupConfig(shingle="char", ngram=7), NearDedupConfig(ngram=1)]
    whole = [signatures(texts, c) for c in configs]
    whole_shingles = [shingles(t, c) for c in configs for t in texts]
    monkeypatch.setattr(near_dedup, "SEGMENT_CHARS", 37)
    monkeypatch.setattr(near_dedup, "BLOCK_ROWS", 64)
    monkeypatch.setattr(near_dedup, "FLUSH_ROWS", 200)
    for config, expected in zip(configs, whole):
        assert np.array_equal(signatures(texts, config), expected)
    pieces = [shingles(t, c) for c in configs for t in texts]
    assert all(np.array_equal(a, b) for a, b in zip(pieces, whole_shingles))


# -- signatures -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["affine32", "affine64", "legacy"])
@pytest.mark.parametrize("shingle", ["word", "char"])
def test_signatures_equal_datasketch_update_batch(scheme, shingle):
    """Each row is what datasketch's own MinHash computes from the shingles' hash values."""
    config = NearDedupConfig(shingle=shingle, scheme=scheme, num_perm=64, seed=3)
    texts = [stdlib_text("textwrap.py")[:5000], "a b", "", "one two three four five six seven"]
    sigs = signatures(texts, config)
    assert sigs.shape == (len(texts), 64) and sigs.dtype == signature_dtype(config)
    for text, row in zip(texts, sigs):
        hashes = np.concatenate([np.empty(0, np.uint64), *near_dedup._shingle_hashes(text, config)])
        values = hashes if scheme == "affine64" else hashes & np.uint64(0xFFFFFFFF)
        reference = MinHash(num_perm=64, seed=3, scheme=scheme, hashfunc=lambda v: v)
        reference.update_batch(values.tolist())
        assert np.array_equal(reference.hashvalues, row)


# -- decisions --------------------------------------------------------------------------------------------
def test_planted_near_duplicates_are_found_and_distinct_documents_kept(corpus):
    config = NearDedupConfig()
    verdicts = decide(corpus, config)
    originals = [stdlib_text(name) for name in MODULES]
    removed = {i for i, v in enumerate(verdicts) if v is not None}
    assert len(removed) == 5
    for i in removed:
        original = corpus[int(verdicts[i].removeprefix("doc"))]
        assert exact_jaccard(corpus[i], original, config) >= config.threshold
        assert corpus.index(original) < i  # the first in pipeline order survives
    kept = [corpus[i] for i in range(len(corpus)) if i not in removed]
    assert len(kept) == len(MODULES)
    # Each family (an original and its copies) keeps exactly its first member.
    for n, original in enumerate(originals):
        members = [i for i, t in enumerate(corpus) if t == original or exact_jaccard(t, original, config) > 0.8]
        assert [i for i in members if i not in removed] == [min(members)], MODULES[n]


def test_survivors_do_not_depend_on_batch_size(corpus):
    config = NearDedupConfig()
    reference = decide(corpus, config, batch=len(corpus))
    assert sum(v is not None for v in reference) == 5
    for batch in (1, 3, 7):
        assert decide(corpus, config, batch=batch) == reference


def test_duplicates_within_one_batch_are_found():
    config = NearDedupConfig()
    base = stdlib_text("argparse.py")
    a, b, c = base, change_words(base, 400), change_words(base, 400, offset=200)
    texts = [stdlib_text("difflib.py"), b, a, c]  # a, b, c are near-duplicates of each other; b comes first
    assert decide(texts, config, batch=4) == [None, None, "doc1", "doc1"]
    assert decide(texts, config, batch=1) == [None, None, "doc1", "doc1"]


def test_a_document_similar_to_several_kept_ones_duplicates_the_earliest():
    config = NearDedupConfig(threshold=0.74, num_perm=512)
    base = stdlib_text("argparse.py")
    x, y = change_words(base, 50, tag="x"), change_words(base, 50, offset=25, tag="y")
    assert exact_jaccard(x, base, config) > 0.8 and exact_jaccard(y, base, config) > 0.8
    assert exact_jaccard(x, y, config) < 0.68  # both survive
    assert decide([x, y, base], config) == [None, None, "doc0"]
    assert decide([y, x, base], config) == [None, None, "doc0"]


def test_a_chain_is_decided_by_pairs_with_smaller_ids_whatever_became_of_them():
    """Chain x -> y -> z with J(x, y), J(y, z) above and J(x, z) below the threshold: z is a duplicate of y, the
    smaller id it matches, although y was itself removed; a rule that compared z with kept documents only
    would keep z, and its answer would depend on the order the pairs were decided in."""
    config = NearDedupConfig(threshold=0.74, num_perm=512)
    x = stdlib_text("inspect.py")
    y = change_words(x, 50, tag="y")
    z = change_words(y, 50, offset=25, tag="z")
    assert exact_jaccard(x, y, config) > 0.8 and exact_jaccard(y, z, config) > 0.8
    assert exact_jaccard(x, z, config) < 0.68
    assert decide([x, y, z], config) == [None, "doc0", "doc1"]
    assert decide([x, z], config) == [None, None]  # without y, nothing links them


def test_threshold_changes_the_decision():
    base = stdlib_text("typing.py")
    variant = change_words(base, 25)
    j = exact_jaccard(base, variant, NearDedupConfig())
    assert 0.6 < j < 0.75
    assert decide([base, variant], NearDedupConfig(threshold=0.5)) == [None, "doc0"]
    assert decide([base, variant], NearDedupConfig(threshold=0.9)) == [None, None]
    assert decide([base, variant], NearDedupConfig(threshold=round(j - 0.12, 2))) == [None, "doc0"]
    assert decide([base, variant], NearDedupConfig(threshold=round(j + 0.12, 2))) == [None, None]


def test_char_shingles_forgive_typos_that_word_shingles_do_not():
    base = stdlib_text("calendar.py")
    # A letter added to every 10th word: most word 5-grams break, most character 5-grams survive.
    counter = iter(range(10**9))
    typos = WORD.sub(lambda m: m.group(0) + "s" if next(counter) % 10 == 0 else m.group(0), base)
    word, char = NearDedupConfig(shingle="word"), NearDedupConfig(shingle="char", ngram=5)
    assert exact_jaccard(base, typos, word) < 0.5 < 0.8 < exact_jaccard(base, typos, char)
    assert decide([base, typos], word) == [None, None]
    assert decide([base, typos], char) == [None, "doc0"]
    # Both ignore re-indentation and case.
    reformatted = base.replace("    ", "\t").upper()
    assert decide([base, reformatted], word) == [None, "doc0"]
    assert decide([base, reformatted], char) == [None, "doc0"]


def test_index_takes_uint64_rows_and_refuses_bad_ones(corpus):
    config = NearDedupConfig()
    sigs = signatures(corpus, config)
    reference = decide(corpus, config, sigs=sigs)
    assert decide(corpus, config, sigs=sigs.astype(np.uint64)) == reference  # as stored in the .sig files
    with pytest.raises(ValueError, match="out of range"):
        NearDuplicateIndex(config).add_batch(["a"], np.full((1, config.num_perm), 1 << 40, dtype=np.uint64))
    with pytest.raises(ValueError, match="shape"):
        NearDuplicateIndex(config).add_batch(["a"], sigs[:2])


def test_index_memory_is_reported():
    config = NearDedupConfig()
    index = NearDuplicateIndex(config)
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 1 << 32, size=(500, config.num_perm), dtype=np.uint64)
    assert index.add_batch([str(i) for i in range(500)], sigs) == [None] * 500
    assert len(index) == 500
    # At least the band keys and kept signatures; the 16384-row signature block dominates a small index.
    assert index.bytes_per_document() > config.num_perm * 4 + index.bands * 40


# -- configuration ----------------------------------------------------------------------------------------
def test_lsh_parameters_catch_pairs_at_the_threshold():
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        for num_perm in (64, 128, 256):
            bands, rows = lsh_params(NearDedupConfig(threshold=threshold, num_perm=num_perm))
            assert bands >= 2 and bands * rows <= num_perm
            assert 1 - (1 - threshold**rows) ** bands >= near_lsh.CANDIDATE_RECALL
    assert lsh_params(NearDedupConfig(bands=8, rows=16)) == (8, 16)
    assert lsh_params(NearDedupConfig(bands=16)) == (16, 8)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shingle": "line"},
        {"ngram": 0},
        {"num_perm": 1},
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"scheme": "sha1"},
        {"bands": 20, "rows": 10},
        {"bands": 1},
    ],
)
def test_bad_configuration_is_rejected(kwargs):
    with pytest.raises(DataPrepError, match="dedup.near"):
        NearDedupConfig(**kwargs)
