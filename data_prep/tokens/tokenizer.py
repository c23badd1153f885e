"""Stage 4: the tokenizer (trained on a sample of the train split, or loaded from a local directory) and the
document encoder that the tokens stage runs over the whole corpus.

Both kinds are byte-level BPE: every input byte is representable, so no text ever maps to an unknown token,
and ``decode(encode(text)) == text``. Special-token ids are fixed by the order in which training adds them;
shards, manifests and models rely on them:

=====  ==========================================  =============================================================
kind   id: token                                   Hugging Face roles in the saved directory
=====  ==========================================  =============================================================
bpe    0: ``end_of_text`` (``<|endoftext|>``)       bos = eos = unk = ``end_of_text`` (GPT-2 style; no pad token)
mlm    0: ``end_of_text``, 1: ``<pad>``,             eos = sep = ``end_of_text``, pad ``<pad>``, unk ``<unk>``,
       2: ``<unk>``, 3: ``<mask>``, 4: ``<s>``       mask ``<mask>``, bos = cls ``<s>`` (RoBERTa style)
=====  ==========================================  =============================================================

In both kinds ``end_of_text`` (id 0) is what separates documents in the shards. The ``mlm`` tokenizer also
gets a RoBERTa-style template (``<s> text end_of_text``) for callers that encode raw text with special tokens;
the shards never contain it (:func:`encode_documents` encodes without special tokens).

A ``pretrained`` tokenizer keeps its own ids: :func:`end_of_text_id` looks ``end_of_text`` up in its vocabulary
(``<|endoftext|>`` for GPT-2; set it to ``</s>`` for RoBERTa, ``[SEP]`` for BERT).

Throughput and parallelism. ``encode_batch`` spreads the documents of one call over Rayon's thread pool
(``RAYON_NUM_THREADS`` threads, default one per core). So, for the best throughput:

* call :func:`encode_documents` from the main process with batches of at least a few hundred documents
  (``shards.batch_documents``), so that every thread has work: a batch of one document runs on one thread;
* do not call it from a process that was *forked* after this process had already encoded a batch: tokenizers
  then turns parallelism off in the child (to avoid a deadlock) and it encodes on one core.
  ``TOKENIZERS_PARALLELISM=false`` has the same effect;
* to encode in worker processes instead (spawned, or forked before this process encoded anything), give each
  worker one Rayon thread (``RAYON_NUM_THREADS=1`` before its first encode) and start one per core, rather
  than N workers of N threads each.

The pipeline encodes in its main process, after the document workers of :mod:`data_prep.process` (which do
not tokenize) are done.
"""

from __future__ import annotations

import array
import errno
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from data_prep.errors import DataPrepError, disk_full_error
from data_prep.tokens.pieces import cut_safe_special_tokens, text_pieces
from data_prep.workdir import tmp_sibling


@dataclass
class TokenizerConfig:
    """Byte-level BPE tokenizer trained on the train split, or an existing one loaded from disk."""

    kind: Literal["bpe", "mlm"] = "bpe"
    """``bpe``: for causal LMs, one special token (``end_of_text``, id 0). ``mlm``: for masked LMs, also
    ``<pad>`` 1, ``<unk>`` 2, ``<mask>`` 3 and ``<s>`` 4 (cls/bos), set as such in the Hugging Face directory."""
    vocab_size: int = 8192
    """Target vocabulary size, special tokens included; the model's embedding table gets exactly this size."""
    min_frequency: int = 2
    """A pair must occur this often to be merged."""
    sample_bytes: int = 100_000_000
    """Train on at most this many bytes of train documents. BPE training memory grows with the sample
    (tokenizers #1681), so keep it a sample, not the corpus."""
    sample_chars_per_document: int = 1_000_000
    """At most about this many characters of any one document enter the training sample: a longer document gives
    evenly spaced pieces (of ``max_piece_chars``) adding up to this much, so that one huge document (a dump, a
    genome) can neither dominate the vocabulary nor hold the trainer's memory (which grows with the distinct
    words it is given: about 40 bytes per character of text without repeated words)."""
    max_piece_chars: int = 10_000
    """Longest text handed to ``tokenizers`` at once, in characters. A longer document is trained on and encoded
    in pieces cut where the byte-level pre-tokenizer ends a word anyway (after a letter or digit, before anything
    else), so its ids are those of the whole document, while the memory of training and encoding follows this
    size instead of the document's (encoding one 20 MB text at once took 2.7 GB; a call of
    ``shards.batch_documents`` = 512 pieces of 10,000 characters, 0.28 GB). A run of more characters with no such
    place (a genome, a line of dashes) is cut at this size, which changes the tokens at the cut. The training
    sample is thinned piece by piece, so a huge document gives the sample its share, not itself whole. A
    pretrained tokenizer with a normalizer or another pre-tokenizer is given whole documents (its ids could change
    at a cut)."""
    end_of_text: str = "<|endoftext|>"
    """Special token appended after every document in the shards (token id 0 when trained here). With
    ``pretrained``, the name of that tokenizer's document separator, e.g. ``</s>`` (RoBERTa), ``[SEP]`` (BERT)."""
    pretrained: str | None = None
    """Load this tokenizer instead of training one: a local Hugging Face tokenizer directory (as written by
    ``save_pretrained``) or a ``tokenizer.json`` file. ``vocab_size``, ``min_frequency`` and ``sample_bytes``
    are then unused; ``kind`` only picks the Hugging Face roles written for a bare ``tokenizer.json``."""
    compare_with: str | None = None
    """Also measure this tokenizer (a local Hugging Face tokenizer directory or ``tokenizer.json``) on the same
    kept text: ``report.json``'s ``tokenizer.compare_with`` gives its bytes per token per split beside ours.
    Changes only the report, never the dataset."""


TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_DIR = "hf_tokenizer"
INFO_FILE = "tokenizer_info.json"
KINDS = ("bpe", "mlm")

# The mlm kind's special tokens after end_of_text (id 0), in id order (1, 2, 3, 4), by Hugging Face role.
MLM_SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>", "cls_token": "<s>"}

# array.array("I") is the fastest way from the Python lists that ``Encoding.ids`` returns to a uint32 buffer
# (4.6 ns/token, against 17-20 ns for np.array, np.fromiter or per-document slices; measured on the stdlib).
_UINT32_TYPECODE = next(code for code in "IL" if array.array(code).itemsize == 4)


def check_config(config: TokenizerConfig) -> None:
    """Raise ``DataPrepError`` naming the key when the tokenizer section cannot work."""
    if config.kind not in KINDS:
        raise DataPrepError(f"tokenizer.kind '{config.kind}' is not one of {', '.join(KINDS)}")
    if config.kind == "mlm" and config.end_of_text in MLM_SPECIAL_TOKENS.values() and config.pretrained is None:
        raise DataPrepError(
            f"tokenizer.end_of_text '{config.end_of_text}' is also an mlm special token; choose another string"
        )
    for key in ("max_piece_chars", "sample_chars_per_document"):
        if int(getattr(config, key)) < 1:
            raise DataPrepError(f"tokenizer.{key} must be at least 1, got {getattr(config, key)}")
    if config.pretrained is None and config.vocab_size < 256 + len(special_tokens(config)):
        raise DataPrepError(
            f"tokenizer.vocab_size {config.vocab_size} is below the 256 byte tokens plus the special tokens; raise it"
        )


def special_tokens(config: TokenizerConfig) -> list[str]:
    """The special tokens training adds, in id order (ids 0, 1, ...)."""
    if config.kind == "mlm":
        return [config.end_of_text, *MLM_SPECIAL_TOKENS.values()]
    return [config.end_of_text]


def train_tokenizer(texts: Iterable[str], config: TokenizerConfig, show_progress: bool = True) -> Tokenizer:
    """Train byte-level BPE on ``texts`` (give it a sample: see ``sample_bytes``)."""
    check_config(config)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials: list[str | AddedToken] = special_tokens(config)
    if config.kind == "mlm":
        # lstrip: "a <mask>" masks the word with its leading space, as byte-level BPE tokenizes " word" (RoBERTa).
        mask = MLM_SPECIAL_TOKENS["mask_token"]
        specials = [AddedToken(t, lstrip=True, special=True) if t == mask else t for t in specials]
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if config.kind == "mlm":
        cls, eot = MLM_SPECIAL_TOKENS["cls_token"], config.end_of_text
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {eot}",
            pair=f"{cls} $A {eot} {eot} $B {eot}",
            special_tokens=[(cls, tokenizer.token_to_id(cls)), (eot, tokenizer.token_to_id(eot))],
        )
    return tokenizer


def sample_for_training(texts: Iterable[str], max_bytes: int) -> Iterator[str]:
    """The first texts (in deterministic pipeline order) up to ``max_bytes`` of UTF-8 text, lazily: the trainer
    counts words as they come, so the sample is never held in memory at once."""
    total = 0
    for text in texts:
        if total >= max_bytes:
            return
        yield text
        total += len(text.encode("utf-8", errors="surrogatepass"))


def _hf_roles(end_of_text: str, kind: str) -> dict[str, str]:
    if kind == "mlm":
        return {
            **MLM_SPECIAL_TOKENS,
            "bos_token": MLM_SPECIAL_TOKENS["cls_token"],
            "eos_token": end_of_text,
            "sep_token": end_of_text,
        }
    return {"bos_token": end_of_text, "eos_token": end_of_text, "unk_token": end_of_text}


def save_tokenizer(tokenizer: Tokenizer, directory: Path, end_of_text: str, kind: str = "bpe") -> None:
    """Write ``tokenizer.json`` and a Hugging Face tokenizer directory (loadable with ``AutoTokenizer``)."""
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    tokenizer.save(str(directory / TOKENIZER_FILE))
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **_present_roles(tokenizer, end_of_text, kind))
    hf_tokenizer.save_pretrained(str(directory / HF_TOKENIZER_DIR))


def _present_roles(tokenizer: Tokenizer, end_of_text: str, kind: str) -> dict[str, str]:
    """The kind's roles whose token the tokenizer has (transformers would add a missing one, changing the ids)."""
    return {
        role: token for role, token in _hf_roles(end_of_text, kind).items() if tokenizer.token_to_id(token) is not None
    }


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A ``tokenizer.json`` file, or the ``tokenizers`` object behind a local Hugging Face tokenizer directory."""
    return _load_pretrained(path)[0]


# Files of which a Hugging Face tokenizer directory holds at least one.
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model")


def _load_pretrained(path: str | Path, key: str = "tokenizer"):
    """(tokenizers object, transformers tokenizer or None for a bare ``tokenizer.json``); one-line errors that
    name ``key`` and the path."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataPrepError(
            f"{key} '{path}' does not exist; give a local Hugging Face tokenizer directory or a tokenizer.json file"
        )
    if path.is_file():
        try:
            return Tokenizer.from_file(str(path)), None
        except Exception as error:  # tokenizers raises a bare Exception for malformed files
            raise DataPrepError(f"{key} '{path}' is not a tokenizers JSON file: {_one_line(error)}") from error
    if not any((path / name).is_file() for name in HF_TOKENIZER_FILES):
        raise DataPrepError(
            f"{key} '{path}' is a directory without a tokenizer (none of {', '.join(HF_TOKENIZER_FILES)})"
        )
    from transformers import AutoTokenizer

    try:
        # An absolute path: transformers takes a relative path it cannot find for a Hub model id.
        hf_tokenizer = AutoTokenizer.from_pretrained(str(path.resolve()), local_files_only=True)
    except Exception as error:
        raise DataPrepError(f"{key} '{path}' could not be loaded by AutoTokenizer: {_one_line(error)}") from error
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise DataPrepError(f"{key} '{path}' holds a slow (Python) tokenizer; save it as a fast one")
    return backend, hf_tokenizer


def _pretrained_roles(tokenizer: Tokenizer, hf_tokenizer, config: TokenizerConfig) -> dict[str, str]:
    """Hugging Face role -> token of a loaded tokenizer: a directory's own roles, or those of ``config.kind``
    that a bare ``tokenizer.json`` has."""
    if hf_tokenizer is None:
        return _present_roles(tokenizer, config.end_of_text, config.kind)
    return {k: str(v) for k, v in hf_tokenizer.special_tokens_map.items() if isinstance(v, str)}


def role_token_ids(tokenizer: Tokenizer, roles: dict[str, str], end_of_text_id: int) -> dict[str, int]:
    """The ids the model and its samplers need, named as in a ``transformers`` config: ``end_of_text_id``
    (the document separator in the shards) and ``<role>_id`` for each role whose token the tokenizer has
    (``bos_token_id``, ``eos_token_id``, ``pad_token_id``, ``mask_token_id``, ``cls_token_id``, ...)."""
    ids = {"end_of_text_id": int(end_of_text_id)}
    for role, token in sorted(roles.items()):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            ids[f"{role}_id"] = int(token_id)
    return ids


def planned_vocab_size(config: TokenizerConfig, trained: Tokenizer | None = None) -> int:
    """The model's embedding rows for the tokenizer ``config`` describes: a pretrained tokenizer's own size; for a
    trained one the configured ``vocab_size`` (a small corpus may give a few tokens fewer, and the model's shape
    should not depend on that), or the ``trained`` tokenizer's size should it come out larger. The one place this
    is decided: data_prep writes it to the manifest, the data module plans the model with it before preparing."""
    if config.pretrained is not None:
        return (trained or load_tokenizer(config.pretrained)).get_vocab_size()
    return max(config.vocab_size, trained.get_vocab_size() if trained is not None else 0)


def planned_token_ids(config: TokenizerConfig) -> dict[str, int]:
    """:func:`role_token_ids` of the tokenizer ``config`` will produce, known before any data is read: a
    trained tokenizer's ids are fixed by its kind; a pretrained one is loaded (not trained) to look them up."""
    check_config(config)
    if config.pretrained is None:
        order = special_tokens(config)  # the id of a trained special token is its place in this list
        roles = _hf_roles(config.end_of_text, config.kind)
        return {"end_of_text_id": 0, **{f"{role}_id": order.index(token) for role, token in sorted(roles.items())}}
    tokenizer, hf_tokenizer = _load_pretrained(config.pretrained, "tokenizer.pretrained")
    roles = _pretrained_roles(tokenizer, hf_tokenizer, config)
    return role_token_ids(tokenizer, roles, end_of_text_id(tokenizer, config))


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def end_of_text_id(tokenizer: Tokenizer, config: TokenizerConfig) -> int:
    """Id of ``config.end_of_text`` (0 for tokenizers trained here); ``DataPrepError`` when it is not a token."""
    token_id = tokenizer.token_to_id(config.end_of_text)
    if token_id is None:
        where = f" loaded from '{config.pretrained}'" if config.pretrained else ""
        raise DataPrepError(
            f"tokenizer.end_of_text '{config.end_of_text}' is not in the tokenizer{where}; set it to one of its "
            f"special tokens: {list(_special_token_ids(tokenizer))}"
        )
    return token_id


def _special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    decoder = tokenizer.get_added_tokens_decoder()
    return {decoder[i].content: i for i in sorted(decoder) if decoder[i].special}


def tokenizer_info(tokenizer: Tokenizer, config: TokenizerConfig, roles: dict[str, str]) -> dict:
    """What the manifest records about the tokenizer (JSON-serialisable, deterministic)."""
    return {
        "kind": config.kind if config.pretrained is None else "pretrained",
        "pretrained": str(Path(config.pretrained).expanduser().resolve()) if config.pretrained else None,
        "vocab_size": tokenizer.get_vocab_size(),
        "end_of_text": config.end_of_text,
        "end_of_text_id": end_of_text_id(tokenizer, config),
        "special_tokens": _special_token_ids(tokenizer),
        "roles": dict(sorted(roles.items())),
    }


def load_or_train_tokenizer(
    config: TokenizerConfig,
    directory: Path,
    training_texts: Callable[[], Iterable[str]],
    show_progress: bool | None = None,
) -> tuple[Tokenizer, dict]:
    """The tokenizer stage: fill ``directory`` with ``tokenizer.json``, the Hugging Face directory and an info
    file, or reuse it when a previous run finished it. Returns the tokenizer and its info for the manifest.

    ``training_texts`` is called only when a tokenizer is trained (not when ``config.pretrained`` is set); at most
    ``config.sample_bytes`` of what it returns are used. ``show_progress=None`` shows the trainer's progress bar
    unless ``TQDM_DISABLE`` is set (as ``prepare(show_progress=False)`` does).
    """
    check_config(config)
    directory = Path(directory)
    if not (directory / INFO_FILE).is_file():
        if show_progress is None:
            show_progress = os.environ.get("TQDM_DISABLE", "") in ("", "0")
        _build(config, directory, training_texts, show_progress)
    tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
    return tokenizer, json.loads((directory / INFO_FILE).read_text())


def _build(config: TokenizerConfig, directory: Path, training_texts, show_progress: bool) -> None:
    """Write the stage's files under a temporary name and rename the directory when complete."""
    tmp = tmp_sibling(directory)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        if config.pretrained is not None:
            tokenizer, hf_tokenizer = _load_pretrained(config.pretrained, "tokenizer.pretrained")
            end_of_text_id(tokenizer, config)  # fail now, naming the token, rather than after saving
            if hf_tokenizer is None:  # a bare tokenizer.json: give it the roles of its kind
                save_tokenizer(tokenizer, tmp, config.end_of_text, config.kind)
                # Its bytes as they are, not as this tokenizers version serialises them: datasets prepared with one
                # tokenizer file share its SHA-256 (what a mixture of datasets checks), and the ids are the same.
                shutil.copyfile(Path(config.pretrained).expanduser(), tmp / TOKENIZER_FILE)
            else:  # keep the directory's own special tokens and settings
                tokenizer.save(str(tmp / TOKENIZER_FILE))
                hf_tokenizer.save_pretrained(str(tmp / HF_TOKENIZER_DIR))
            roles = _pretrained_roles(tokenizer, hf_tokenizer, config)
        else:
            texts = sample_for_training(training_texts(), config.sample_bytes)
            first = next(texts, None)
            if first is None:
                raise DataPrepError(
                    "no train documents to train the tokenizer on; add documents or set tokenizer.pretrained"
                )
            tokenizer = train_tokenizer(chain([first], texts), config, show_progress)
            save_tokenizer(tokenizer, tmp, config.end_of_text, config.kind)
            roles = _hf_roles(config.end_of_text, config.kind)
        info = tokenizer_info(tokenizer, config, roles)
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(directory, ignore_errors=True)  # an unfinished directory (no info file) from elsewhere
        os.replace(tmp, directory)
    except Exception as error:
        # A full disk, from Python's writes (OSError) or tokenizers' save (a bare Exception with the OS's text).
        full = getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error)
        if full and not isinstance(error, DataPrepError):
            raise disk_full_error(directory) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def encode_documents(
    tokenizer: Tokenizer,
    texts: list[str],
    end_of_text_id: int,
    dtype: np.dtype | type = np.uint32,
    max_piece_chars: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode ``texts`` in parallel batches (no special tokens) and pack them for the shards.

    Returns ``(tokens, lengths)``: ``tokens`` (``dtype``) holds the documents back to back, each followed by
    ``end_of_text_id``; ``lengths`` (int64) is each document's token count, end-of-text included. Beyond what
    ``encode_batch`` itself costs (including the ``.ids`` lists every caller must build), this adds one pass at
    about 5 ns/token. It encodes with ``encode_batch_fast`` where available, which skips the character offsets
    that ``encode_batch`` computes: 7.7 against 4.7 MB/s on the stdlib sources on 2 cores
    (``benchmarks/tokenize_pack_speed.py``). See the module docstring for how to call it for best throughput.

    With ``max_piece_chars``, longer documents are encoded as their pieces (:mod:`data_prep.tokens.pieces`: the
    same ids, cut at word ends) and each ``encode_batch`` call gets at most ``len(texts)`` texts, so one call never
    holds more than ``len(texts) * max_piece_chars`` characters however long a document is.
    """
    flat = array.array(_UINT32_TYPECODE)
    lengths = np.ones(len(texts), dtype=np.int64)  # the end-of-text token of each document
    current = -1
    for index, ids in _encoded_pieces(tokenizer, texts, max_piece_chars):
        if index != current:  # a document's pieces come in order, one document after the other
            if current >= 0:
                flat.append(end_of_text_id)
            current = index
        flat.fromlist(ids)
        lengths[index] += len(ids)
    if current >= 0:
        flat.append(end_of_text_id)
    tokens = np.frombuffer(flat, dtype=np.uint32) if len(flat) else np.zeros(0, dtype=np.uint32)
    dtype = np.dtype(dtype)
    if dtype != tokens.dtype:
        if tokens.size and int(tokens.max()) > np.iinfo(dtype).max:
            raise DataPrepError(f"token id {int(tokens.max())} does not fit in {dtype.name}; use a wider dtype")
        tokens = tokens.astype(dtype)
    return tokens, lengths


def text_tokens(tokenizer: Tokenizer, texts: list[str], max_piece_chars: int | None = None) -> int:
    """Tokens of ``texts`` encoded without special tokens (what a document costs before its end of text); long
    documents in pieces, as :func:`encode_documents` encodes them."""
    return sum(len(ids) for _, ids in _encoded_pieces(tokenizer, texts, max_piece_chars))


def _encoded_pieces(
    tokenizer: Tokenizer, texts: list[str], max_piece_chars: int | None
) -> Iterator[tuple[int, list[int]]]:
    """(index of the document, ids of one of its pieces), in order; at most ``len(texts)`` pieces per call."""
    encode = getattr(tokenizer, "encode_batch_fast", None) or tokenizer.encode_batch  # _fast: no offsets
    specials = cut_safe_special_tokens(tokenizer) if max_piece_chars else None
    if specials is None:  # whole documents, in one call
        for index, encoding in enumerate(encode(texts, add_special_tokens=False)):
            yield index, encoding.ids
        return
    owners: list[int] = []
    pieces: list[str] = []
    for index, text in enumerate(texts):
        for piece in text_pieces(text, max_piece_chars, specials):
            owners.append(index)
            pieces.append(piece)
            if len(pieces) == len(texts):
                yield from zip(owners, (encoding.ids for encoding in encode(pieces, add_special_tokens=False)))
                owners, pieces = [], []
    if pieces:
        yield from zip(owners, (encoding.ids for encoding in encode(pieces, add_special_tokens=False)))


def load_comparison_tokenizer(path: str) -> Tokenizer:
    return _load_pretrained(path, "tokenizer.compare_with")[0]
