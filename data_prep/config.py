"""Every knob of data preparation, typed and documented once.

The dataclasses below are what ``python -m data_prep --config X.yaml`` parses (nested sections become
``--clean.unicode_nfc``-style flags) and what :func:`data_prep.pipeline.prepare` takes from Python.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class ReadConfig:
    """How sources become documents."""

    include: list[str] = field(default_factory=lambda: ["*"])
    """Keep files found under a directory source whose name matches one of these fnmatch patterns."""
    exclude: list[str] = field(default_factory=list)
    """Drop files whose path relative to their directory source matches one of these fnmatch patterns."""
    text_field: str = "text"
    """Field holding the text in ``.jsonl`` records."""


@dataclass
class CleanConfig:
    """Text normalisation. Code corpora keep their whitespace, so nothing here touches indentation."""

    normalize_newlines: bool = True
    """Turn ``\\r\\n`` and lone ``\\r`` into ``\\n``."""
    unicode_nfc: bool = False
    """Apply Unicode NFC composition (off by default: it rewrites code identifiers and literals)."""
    strip: bool = True
    """Remove leading and trailing blank space around each document."""
    min_chars: int = 1
    """Drop documents shorter than this many characters after cleaning."""


@dataclass
class DedupConfig:
    """Duplicate removal."""

    exact: bool = True
    """Drop documents whose cleaned text is byte-identical to an earlier one (kept: the first in source order)."""


@dataclass
class SplitConfig:
    """Train/validation split, decided per document from a hash of its text: stable across runs and orders."""

    val_fraction: float = 0.01
    """Expected share of documents that go to the validation split."""
    seed: int = 0
    """Changes which documents are held out, reproducibly."""


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


@dataclass
class ShardConfig:
    """Token shards on disk."""

    tokens_per_shard: int = 100_000_000
    """Start a new shard file after this many tokens."""
    batch_documents: int = 512
    """Documents handed to the tokenizer per ``encode_batch`` call (parallel inside the tokenizer)."""


@dataclass
class DataPrepConfig:
    """Raw text in, tokenized shards plus ``manifest.json`` out."""

    sources: list[str] = field(default_factory=list)
    """Files, directories (searched recursively) or glob patterns. ``{stdlib}`` expands to the Python standard
    library's directory (found with ``sysconfig``)."""
    output_dir: str = "data/prepared"
    """Where ``manifest.json``, ``tokenizer.json`` and the shards are written."""
    num_workers: int = 0
    """Threads used to tokenize; 0 means one per CPU core."""
    read: ReadConfig = field(default_factory=ReadConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DataPrepConfig":
        """Build from a plain (e.g. YAML-loaded) dict; unknown keys raise ``DataPrepError`` naming them."""
        from data_prep.errors import DataPrepError

        sections = {
            "read": ReadConfig,
            "clean": CleanConfig,
            "dedup": DedupConfig,
            "split": SplitConfig,
            "tokenizer": TokenizerConfig,
            "shards": ShardConfig,
        }
        top_level = {"sources", "output_dir", "num_workers", *sections}
        kwargs = {}
        for key, value in values.items():
            if key not in top_level:
                raise DataPrepError(f"unknown data_prep config key '{key}'; expected one of {sorted(top_level)}")
            if key in sections:
                section = sections[key]
                known = set(section.__dataclass_fields__)
                for sub_key in value or {}:
                    if sub_key not in known:
                        raise DataPrepError(f"unknown data_prep config key '{key}.{sub_key}'; expected one of {sorted(known)}")
                kwargs[key] = section(**(value or {}))
            else:
                kwargs[key] = value
        return cls(**kwargs)


# Keys that change where or how fast output is written, never what is written.
NON_SEMANTIC_KEYS = ("output_dir", "num_workers")
