"""One huge document costs memory in proportion to itself, never more, at every stage: the length filter counts
its words in pieces, the documents stage processes it in the main process instead of pickling it to a worker and
back, and it reaches ``tokenizers`` in pieces cut where the byte-level pre-tokenizer ends words anyway, so
training counts the same words and encoding gives the same ids as for the whole text, while no call ever gets
more than the configured characters; the training sample takes at most its share of it."""

from __future__ import annotations

import json
from pydoc_data.topics import topics

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from data_prep import process
from data_prep.batching import batched
from data_prep.dedup.minhash import NearDedupConfig
from data_prep.pipeline import prepare
from data_prep.process import DocumentProcessor
from data_prep.quality import stats
from data_prep.quality.clean import CleanConfig
from data_prep.quality.filter_config import FilterConfig
from data_prep.quality.length import LengthConfig
from data_prep.quality.registry import REGISTRY
from data_prep.quality.stats import DocumentStats
from data_prep.read.sources import Document
from data_prep.segments import whitespace_segments
from data_prep.tokens import stage
from data_prep.tokens import tokenizer as tokenizer_module
from data_prep.tokens.pieces import cut_safe_special_tokens, text_pieces
from data_prep.tokens.stage import document_sample
from data_prep.tokens.tokenizer import TokenizerConfig, encode_documents, text_tokens, train_tokenizer
from tests.conftest import STDLIB, copy_stdlib_corpus, small_prep_config

# Code, prose, text without spaces but with punctuation (Chinese), combining accents, digits inside words,
# contractions, and the tokenizers' special tokens written out in the text, where a careless cut would split one.
TEXTS = [
    (STDLIB / "json" / "decoder.py").read_text(),
    (STDLIB / "textwrap.py").read_text(),
    topics["assignment"],
    "中文文本，没有空格。这是一个测试！日本語のテキストです。" * 20,
    "e\u0301te\u0301 naïve café 123abc456 x_y ...---___ " * 20,
    "it's they're I'll x'sy don't " * 20,
    "a <|endoftext|> b<|endoftext|>c <mask> d<mask>e <s>f <pad>g " * 20,
]
PIECE = 150  # characters: every text above is cut many times, and always at a word end


def word_end_cuts(text: str, pieces: list[str]) -> list[int]:
    """The positions where ``pieces`` cut ``text`` (a word end: a letter or digit, then anything else)."""
    positions = np.cumsum([len(piece) for piece in pieces[:-1]]).tolist()
    assert all(text[p - 1].isalnum() and not text[p].isalnum() for p in positions), "a cut is not at a word end"
    return positions


@pytest.fixture(scope="module", params=["bpe", "mlm"])
def tokenizer(request) -> Tokenizer:
    return train_tokenizer(TEXTS[:3], TokenizerConfig(kind=request.param, vocab_size=600), show_progress=False)


def test_pieces_cut_at_word_ends_outside_special_tokens(tokenizer):
    specials = cut_safe_special_tokens(tokenizer)
    assert "<|endoftext|>" in specials
    for text in TEXTS:
        pieces = list(text_pieces(text, PIECE, specials))
        assert "".join(pieces) == text and max(map(len, pieces)) <= PIECE
        assert len(word_end_cuts(text, pieces)) >= len(text) // PIECE  # cut as often as the limit needs
        for special in specials:
            assert sum(piece.count(special) for piece in pieces) == text.count(special)  # never split


def test_encoding_in_pieces_gives_the_ids_of_whole_documents_in_bounded_calls(tokenizer, monkeypatch):
    whole_tokens, whole_lengths = encode_documents(tokenizer, TEXTS, 0)
    calls = []
    encode = tokenizer.encode_batch_fast

    class Spy:  # the tokenizer as the encoder sees it, recording what each call is given
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def encode_batch_fast(self, texts, **kwargs):
            calls.append([len(text) for text in texts])
            return encode(texts, **kwargs)

    tokens, lengths = encode_documents(Spy(), TEXTS, 0, max_piece_chars=PIECE)
    assert np.array_equal(tokens, whole_tokens) and np.array_equal(lengths, whole_lengths)
    assert sum(len(call) for call in calls) >= sum(len(text) for text in TEXTS) // PIECE  # pieces, not documents
    assert max(max(call) for call in calls) <= PIECE and max(len(call) for call in calls) <= len(TEXTS)
    assert text_tokens(tokenizer, TEXTS, PIECE) == int(whole_lengths.sum()) - len(TEXTS)


def test_a_run_without_word_ends_is_cut_at_the_limit_and_still_decodes(tokenizer):
    genome = "acgt" * 100 + "ACGT" * 100
    pieces = list(text_pieces(genome, PIECE, cut_safe_special_tokens(tokenizer)))
    assert [len(piece) for piece in pieces] == [PIECE] * (len(genome) // PIECE) + [len(genome) % PIECE]
    tokens, lengths = encode_documents(tokenizer, [genome], 0, max_piece_chars=PIECE)
    assert tokenizer.decode(tokens[:-1].tolist()) == genome and lengths[0] == len(tokens)


def test_tokenizers_whose_ids_could_change_at_a_cut_get_whole_documents(tokenizer):
    for change in ("normalizer", "metaspace", "prefix_space"):
        other = Tokenizer.from_str(tokenizer.to_str())
        if change == "normalizer":
            other.normalizer = normalizers.NFKC()
        elif change == "metaspace":
            other.pre_tokenizer = pre_tokenizers.Metaspace()
        else:
            other.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        assert cut_safe_special_tokens(other) is None, change
    bare = Tokenizer(models.BPE())
    bare.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert cut_safe_special_tokens(bare) == ()


def test_training_on_pieces_counts_the_same_words_as_on_whole_documents():
    config = TokenizerConfig(vocab_size=600)
    whole = train_tokenizer(TEXTS, config, show_progress=False)
    pieces = [piece for text in TEXTS for piece in text_pieces(text, PIECE, ["<|endoftext|>"])]
    assert len(pieces) > 3 * len(TEXTS)
    assert train_tokenizer(pieces, config, show_progress=False).to_str() == whole.to_str()


def test_a_huge_document_gives_the_training_sample_evenly_spaced_pieces_up_to_its_share():
    settings = TokenizerConfig(max_piece_chars=PIECE, sample_chars_per_document=2_000)
    huge = " ".join(f"word{i:06d}" for i in range(20_000))  # 220,000 characters
    sample = list(document_sample(huge, settings))
    assert max(map(len, sample)) <= PIECE
    assert 2_000 - PIECE <= sum(map(len, sample)) <= 2_000 + PIECE  # its share, not 220,000 characters
    spread = [huge.index(piece) for piece in sample]
    assert spread == sorted(spread) and spread[0] == 0 and spread[-1] > 0.9 * len(huge)  # all across it
    short = TEXTS[5]  # under sample_chars_per_document: all of it, in pieces
    assert len(short) < 2_000 and "".join(document_sample(short, settings)) == short


def test_pieces_change_nothing_in_the_dataset(tmp_path, monkeypatch):
    """The same dataset, byte for byte, whether documents reach the tokenizer whole or in 300-character pieces
    (training and the tokens stage both cut the 154,000-character document, never past the limit)."""
    corpus = copy_stdlib_corpus(tmp_path / "corpus", packages=("json",))
    huge = " ".join(json.dumps(text) for text in TEXTS) * 3
    (corpus / "huge.txt").write_text(huge)
    outputs, pieces = {}, {}
    for where in (stage, tokenizer_module):  # the training sample's pieces and the encoder's, recorded

        def recorded(text, max_chars, specials=(), where=where):
            for piece in text_pieces(text, max_chars, specials):
                pieces.setdefault(where.__name__, []).append(len(piece))
                yield piece

        monkeypatch.setattr(where, "text_pieces", recorded)
    for name, piece in (("whole", 10**9), ("pieces", 300)):
        pieces.clear()
        config = small_prep_config(corpus, tmp_path / name)
        config.split.val_fraction, config.split.seed = 0.3, 1  # seed 1: the huge document is in train
        config.tokenizer.max_piece_chars, config.tokenizer.sample_chars_per_document = piece, 10**9
        manifest = prepare(config, show_progress=False)
        assert set(pieces) == {"data_prep.tokens.stage", "data_prep.tokens.tokenizer"}
        for lengths in pieces.values():  # the huge document is in train: sampled whole, and encoded
            assert max(lengths) <= piece and len(lengths) > (len(huge) // piece if piece == 300 else 0)
        outputs[name] = {
            path.name: path.read_bytes()
            for path in (tmp_path / name).iterdir()
            if path.suffix in (".bin", ".idx") or path.name == "tokenizer.json"
        }
        outputs[name]["splits"] = json.dumps(manifest["splits"]).encode()
    assert len(outputs["whole"]) > 4 and outputs["pieces"] == outputs["whole"]


def test_the_length_filter_counts_words_in_pieces_without_building_their_list(monkeypatch):
    monkeypatch.setattr(stats, "COUNT_SEGMENT_CHARS", 50)
    text = " ".join(f"w{i}" for i in range(1_000)) + "\n\tend"
    document = DocumentStats(text)
    keep = REGISTRY["length"].build(LengthConfig(max_words=100), "web")
    assert not keep(document) and document.word_count == len(text.split()) == 1_001
    assert "words" not in document.__dict__  # never built
    assert len(list(whitespace_segments(text, 50))) > 50  # and counted in pieces


def test_batches_stop_at_a_character_bound_and_a_huge_one_is_processed_in_this_process(monkeypatch):
    monkeypatch.setattr(process, "BATCH_CHARS", 1_000)
    texts = [f"document {i} " * 20 for i in range(12)]  # 220 characters each (240 from the tenth): 4 per batch
    texts[5] = TEXTS[2]  # 11,204 characters: a batch alone
    documents = [Document(text=text, source="s", position=i) for i, text in enumerate(texts)]
    batches = list(batched(documents, 256, process.BATCH_CHARS, lambda d: len(d.text)))
    assert [len(batch) for batch in batches] == [4, 1, 1, 4, 2]  # the huge document is a batch alone
    arguments = (CleanConfig(), FilterConfig(profile="web"), NearDedupConfig(), True)
    expected = [DocumentProcessor(*arguments)(batch) for batch in batches]
    submitted = []
    with process.ParallelProcessor(2, *arguments) as pool:
        submit = pool._pool.submit
        monkeypatch.setattr(pool._pool, "submit", lambda f, batch: submitted.append(batch) or submit(f, batch))
        results = list(pool.map(batches))
    assert [len(batch) for batch in submitted] == [4, 1, 4, 2]  # the huge document never went to a worker
    for result, reference in zip(results, expected, strict=True):  # in order, as the workers would have done
        assert result.documents == reference.documents and result.removed == reference.removed
        assert np.array_equal(result.signatures, reference.signatures)
