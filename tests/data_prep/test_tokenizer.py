"""Tokenizer stage: training both kinds on real code, loading a pretrained one, and the document encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_prep.errors import DataPrepError
from data_prep.tokens.tokenizer import (
    HF_TOKENIZER_DIR,
    INFO_FILE,
    MLM_SPECIAL_TOKENS,
    TOKENIZER_FILE,
    TokenizerConfig,
    encode_documents,
    end_of_text_id,
    load_or_train_tokenizer,
    load_tokenizer,
    sample_for_training,
    train_tokenizer,
)
from tests.conftest import STDLIB

# Code with the things a byte-level tokenizer must give back exactly: indentation by spaces and tabs, blank
# lines with trailing spaces, CRLF, and non-ASCII text (accents, CJK, emoji, a zero-width joiner, a BOM).
TRICKY_TEXTS = [
    'def greet(name: str) -> str:\n    """Grüße, ça va? 你好 👋🏽"""\n\n    \n\tif name:\r\n\t\treturn f"hi {name}"\n',
    "class A:\n        pass\n\n\n# trailing spaces   \n\ufeffx = '\u200d' * 3  # zero-width joiner\n",
    "",
    "   leading spaces and a lone newline\n",
]


def stdlib_texts(*packages: str) -> list[str]:
    return [p.read_text(encoding="utf-8") for package in packages for p in sorted((STDLIB / package).glob("*.py"))]


def never_called():
    raise AssertionError("training texts were read although nothing had to be trained")


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return stdlib_texts("json", "email", "collections")  # ~0.6 MB of real code


@pytest.fixture(scope="module")
def bpe(corpus):
    return train_tokenizer(corpus, TokenizerConfig(vocab_size=512), show_progress=False)


def test_bpe_training_gives_the_requested_vocabulary_and_end_of_text_id_0(bpe):
    assert bpe.get_vocab_size() == 512
    assert end_of_text_id(bpe, TokenizerConfig()) == 0
    assert bpe.id_to_token(0) == "<|endoftext|>"


def test_tiny_corpus_gives_at_most_the_requested_vocabulary():
    tokenizer = train_tokenizer(["x = 1\n", "y = 2\n"], TokenizerConfig(vocab_size=1000), show_progress=False)
    assert 257 <= tokenizer.get_vocab_size() <= 1000  # 256 bytes + end_of_text, few merges to learn


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_decode_of_encode_gives_the_text_back(bpe, text):
    assert bpe.decode(bpe.encode(text, add_special_tokens=False).ids) == text


def test_mlm_kind_has_fixed_special_ids_and_loads_with_auto_tokenizer(corpus, tmp_path):
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    config = TokenizerConfig(kind="mlm", vocab_size=512)
    tokenizer, info = load_or_train_tokenizer(config, tmp_path / "tok", lambda: corpus, show_progress=False)
    expected = {"<|endoftext|>": 0, "<pad>": 1, "<unk>": 2, "<mask>": 3, "<s>": 4}
    assert info["special_tokens"] == expected
    assert {token: tokenizer.token_to_id(token) for token in expected} == expected
    assert end_of_text_id(tokenizer, config) == 0 and tokenizer.get_vocab_size() == 512

    hf = AutoTokenizer.from_pretrained(str(tmp_path / "tok" / HF_TOKENIZER_DIR))
    assert (hf.mask_token, hf.mask_token_id, hf.pad_token, hf.pad_token_id) == ("<mask>", 3, "<pad>", 1)
    assert (hf.cls_token, hf.sep_token, hf.eos_token, hf.unk_token) == (
        "<s>",
        "<|endoftext|>",
        "<|endoftext|>",
        "<unk>",
    )
    assert hf("x = 1")["input_ids"][0] == 4 and hf("x = 1")["input_ids"][-1] == 0  # <s> ... end_of_text
    text = TRICKY_TEXTS[0]
    assert hf.decode(hf(text)["input_ids"], skip_special_tokens=True) == text
    assert hf(text, add_special_tokens=False)["input_ids"] == tokenizer.encode(text, add_special_tokens=False).ids

    collator = DataCollatorForLanguageModeling(hf, mlm=True, mlm_probability=0.5)
    batch = collator([{"input_ids": tokenizer.encode(t, add_special_tokens=False).ids[:40]} for t in corpus[:3]])
    masked = batch["labels"] != -100
    assert masked.any() and batch["input_ids"].shape == (3, 40)


def test_mlm_end_of_text_must_differ_from_its_special_tokens():
    with pytest.raises(DataPrepError, match="tokenizer.end_of_text '<pad>'"):
        train_tokenizer(["x"], TokenizerConfig(kind="mlm", end_of_text=MLM_SPECIAL_TOKENS["pad_token"]))


def test_unknown_kind_is_a_one_line_error():
    with pytest.raises(DataPrepError, match="tokenizer.kind 'gpt' is not one of bpe, mlm"):
        load_or_train_tokenizer(TokenizerConfig(kind="gpt"), None, never_called)


def test_stage_writes_both_formats_then_reuses_them(corpus, tmp_path):
    config = TokenizerConfig(vocab_size=400, sample_bytes=200_000)
    tokenizer, info = load_or_train_tokenizer(config, tmp_path / "tok", lambda: corpus, show_progress=False)
    assert (tmp_path / "tok" / TOKENIZER_FILE).is_file() and (tmp_path / "tok" / HF_TOKENIZER_DIR).is_dir()
    assert info == json.loads((tmp_path / "tok" / INFO_FILE).read_text())
    assert info["vocab_size"] == 400 and info["end_of_text_id"] == 0 and info["special_tokens"] == {"<|endoftext|>": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # no temporary directory left behind

    again, again_info = load_or_train_tokenizer(config, tmp_path / "tok", never_called)
    assert again_info == info and again.to_str() == tokenizer.to_str()


def test_sample_caps_the_training_bytes(corpus):
    sample = list(sample_for_training(corpus, 100_000))
    assert 100_000 <= sum(len(t.encode()) for t in sample) < 100_000 + max(len(t.encode()) for t in sample)
    assert sample == corpus[: len(sample)]


def test_pretrained_hf_directory_gives_the_same_ids(corpus, tmp_path):
    trained, _ = load_or_train_tokenizer(
        TokenizerConfig(kind="mlm", vocab_size=512), tmp_path / "trained", lambda: corpus, show_progress=False
    )
    config = TokenizerConfig(pretrained=str(tmp_path / "trained" / HF_TOKENIZER_DIR))
    loaded, info = load_or_train_tokenizer(config, tmp_path / "loaded", never_called)
    for text in [*TRICKY_TEXTS, corpus[0]]:
        assert loaded.encode(text, add_special_tokens=False).ids == trained.encode(text, add_special_tokens=False).ids
    assert info["vocab_size"] == 512 and info["kind"] == "pretrained"
    assert info["pretrained"] == str((tmp_path / "trained" / HF_TOKENIZER_DIR).resolve())
    assert info["special_tokens"] == {"<|endoftext|>": 0, "<pad>": 1, "<unk>": 2, "<mask>": 3, "<s>": 4}
    assert info["roles"]["mask_token"] == "<mask>" and info["roles"]["pad_token"] == "<pad>"

    from transformers import AutoTokenizer  # the copied directory keeps the roles

    assert AutoTokenizer.from_pretrained(str(tmp_path / "loaded" / HF_TOKENIZER_DIR)).mask_token_id == 3


def test_pretrained_tokenizer_json_file(bpe, tmp_path):
    bpe.save(str(tmp_path / "my.json"))
    loaded, info = load_or_train_tokenizer(
        TokenizerConfig(pretrained=str(tmp_path / "my.json")), tmp_path / "t", never_called
    )
    assert loaded.to_str() == bpe.to_str() and load_tokenizer(tmp_path / "my.json").to_str() == bpe.to_str()
    assert info["special_tokens"] == {"<|endoftext|>": 0} and info["vocab_size"] == 512
    assert (tmp_path / "t" / HF_TOKENIZER_DIR / "tokenizer_config.json").is_file()


def test_missing_pretrained_directory_is_a_one_line_error_naming_it(tmp_path):
    missing = tmp_path / "no_such_tokenizer"
    with pytest.raises(DataPrepError) as error:
        load_or_train_tokenizer(TokenizerConfig(pretrained=str(missing)), tmp_path / "t", never_called)
    message = str(error.value)
    assert str(missing) in message and "does not exist" in message and "\n" not in message
    assert not (tmp_path / "t").exists() and list(tmp_path.iterdir()) == []


def test_directory_without_a_tokenizer_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataPrepError, match="is a directory without a tokenizer") as error:
        load_tokenizer(tmp_path / "empty")
    assert "\n" not in str(error.value)


def test_pretrained_without_the_end_of_text_token_names_its_special_tokens(bpe, tmp_path):
    bpe.save(str(tmp_path / "my.json"))
    config = TokenizerConfig(pretrained=str(tmp_path / "my.json"), end_of_text="</s>")
    with pytest.raises(DataPrepError, match=r"tokenizer.end_of_text '</s>' is not in .*\['<\|endoftext\|>'\]"):
        load_or_train_tokenizer(config, tmp_path / "t", never_called)


def test_encode_documents_equals_per_document_encode_plus_end_of_text(bpe, corpus):
    texts = [*TRICKY_TEXTS, *corpus[:20]]
    tokens, lengths = encode_documents(bpe, texts, 0)
    expected = [bpe.encode(text, add_special_tokens=False).ids + [0] for text in texts]
    assert tokens.dtype == np.uint32 and lengths.dtype == np.int64
    assert lengths.tolist() == [len(ids) for ids in expected]
    assert tokens.tolist() == [token for ids in expected for token in ids]
    assert lengths[TRICKY_TEXTS.index("")] == 1  # an empty document is just its end-of-text

    narrow, narrow_lengths = encode_documents(bpe, texts, 7, dtype=np.uint16)
    assert narrow.dtype == np.uint16 and np.array_equal(narrow_lengths, lengths)
    assert np.array_equal(narrow[np.cumsum(lengths) - 1], np.full(len(texts), 7))


def test_encode_documents_of_no_documents(bpe):
    tokens, lengths = encode_documents(bpe, [], 0, dtype=np.uint16)
    assert tokens.shape == lengths.shape == (0,) and tokens.dtype == np.uint16


def test_encode_documents_refuses_a_dtype_too_narrow(bpe):
    with pytest.raises(DataPrepError, match="does not fit in uint16"):
        encode_documents(bpe, ["x"], 70_000, dtype=np.uint16)


def test_prepare_with_a_missing_pretrained_tokenizer_fails_with_one_line(tmp_path):
    from data_prep.pipeline import prepare
    from tests.conftest import copy_stdlib_corpus, small_prep_config

    corpus = copy_stdlib_corpus(tmp_path / "corpus", packages=("json",))
    config = small_prep_config(corpus, tmp_path / "out")
    config.tokenizer.pretrained = str(tmp_path / "missing_tokenizer")
    with pytest.raises(DataPrepError, match=r"tokenizer.pretrained '.*missing_tokenizer' does not exist"):
        prepare(config, show_progress=False)


def test_report_gives_bytes_per_token_and_compare_with_measures_another_tokenizer_on_the_same_text(
    stdlib_corpus, prepared_dataset, tmp_path
):
    """Ours per split from the shards' own figures; compare_with = the same tokenizer gives the same figures,
    a coarser one (vocab 300) fewer bytes per token; the dataset itself does not change."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from data_prep.pipeline import prepare
    from data_prep.tokens.tokenizer import TokenizerConfig
    from tests.conftest import small_prep_config

    coarse = Tokenizer(models.BPE())
    coarse.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    texts = [path.read_text() for path in sorted((STDLIB / "json").glob("*.py"))]
    coarse.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    coarse.save(str(tmp_path / "coarse.json"))
    reports, manifests = {}, {}
    for name, compare in (("same", str(prepared_dataset / "hf_tokenizer")), ("coarse", str(tmp_path / "coarse.json"))):
        tokenizer = TokenizerConfig(vocab_size=512, min_frequency=2, compare_with=compare)
        manifests[name] = prepare(small_prep_config(stdlib_corpus, tmp_path / name, tokenizer=tokenizer), False)
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())["tokenizer"]
    splits = manifests["same"]["splits"]
    ours = {s: round(i["bytes"] / (i["tokens"] - i["documents"]), 4) for s, i in splits.items()}
    assert reports["same"]["bytes_per_token"] == ours and set(ours) == {"train", "val"}
    assert reports["same"]["compare_with"]["bytes_per_token"] == ours  # the dataset's own tokenizer
    assert all(reports["coarse"]["compare_with"]["bytes_per_token"][s] < ours[s] for s in ours)
    assert manifests["same"] == manifests["coarse"]  # compare_with changes the report only
    assert "compare_with" not in manifests["same"]["config"]["tokenizer"]
    assert (tmp_path / "same/train_00000.bin").read_bytes() == (tmp_path / "coarse/train_00000.bin").read_bytes()
