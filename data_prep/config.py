"""Every knob of data preparation, typed and documented once.

Each stage module owns its section's dataclass (``sources.ReadConfig``, ``clean.CleanConfig``, ...); this
module composes them into :class:`DataPrepConfig`, which is what ``python -m data_prep --config X.yaml`` parses
(nested sections become ``--clean.unicode_nfc``-style flags) and what :func:`data_prep.pipeline.prepare` takes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass

from data_prep.clean import CleanConfig
from data_prep.dedup import DedupConfig
from data_prep.errors import DataPrepError
from data_prep.shards import ShardConfig
from data_prep.sources import ReadConfig
from data_prep.split import SplitConfig
from data_prep.tokenizer import TokenizerConfig


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
        sections = {f.name: f.default_factory for f in fields(cls) if is_dataclass(f.default_factory)}
        top_level = {f.name for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in top_level:
                raise DataPrepError(f"unknown data_prep config key '{key}'; expected one of {sorted(top_level)}")
            if key in sections:
                section = sections[key]
                known = set(section.__dataclass_fields__)
                for sub_key in value or {}:
                    if sub_key not in known:
                        raise DataPrepError(
                            f"unknown data_prep config key '{key}.{sub_key}'; expected one of {sorted(known)}"
                        )
                kwargs[key] = section(**(value or {}))
            else:
                kwargs[key] = value
        return cls(**kwargs)


# Keys that change where or how fast output is written, never what is written.
NON_SEMANTIC_KEYS = ("output_dir", "num_workers")
