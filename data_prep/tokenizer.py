"""Stage 4: train a byte-level BPE tokenizer on (a sample of) the train split.

Byte-level means every input byte is representable, so no text is ever mapped to an unknown token. The
end-of-text token is the first special token (id 0); it separates documents in the shards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


@dataclass
class TokenizerConfig:
    """Byte-level BPE tokenizer trained on the train split."""

    vocab_size: int = 8192
    """Target vocabulary size, special tokens included; the model's embedding table gets exactly this size."""
    min_frequency: int = 2
    """A pair must occur this often to be merged."""
    sample_bytes: int = 100_000_000
    """Train on at most this many bytes of train documents (BPE training memory grows with the sample)."""
    end_of_text: str = "<|endoftext|>"
    """Special token appended after every document in the shards (token id 0)."""


TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_DIR = "hf_tokenizer"


def train_tokenizer(texts: Iterable[str], config: TokenizerConfig, show_progress: bool = True) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=[config.end_of_text],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def sample_for_training(texts: Iterable[str], max_bytes: int) -> list[str]:
    """The first documents (in deterministic pipeline order) up to ``max_bytes`` of UTF-8 text."""
    sample, total = [], 0
    for text in texts:
        if total >= max_bytes:
            break
        sample.append(text)
        total += len(text.encode("utf-8", errors="surrogatepass"))
    return sample


def save_tokenizer(tokenizer: Tokenizer, directory: Path, end_of_text: str) -> None:
    """Write ``tokenizer.json`` and a Hugging Face tokenizer directory (loadable with ``AutoTokenizer``)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer.save(str(directory / TOKENIZER_FILE))
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=end_of_text, eos_token=end_of_text, unk_token=end_of_text
    )
    hf_tokenizer.save_pretrained(str(directory / HF_TOKENIZER_DIR))


def load_tokenizer(path: str | Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))
