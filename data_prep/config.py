"""Every knob of data preparation, typed and documented once.

Each stage module owns its section's dataclass (``sources.ReadConfig``, ``clean.CleanConfig``, ...); this
module composes them into :class:`DataPrepConfig`, which is what ``python -m data_prep --config X.yaml`` parses
(nested sections become ``--clean.unicode_nfc``-style flags) and what :func:`data_prep.pipeline.prepare` takes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from data_prep.dedup.exact import DedupConfig
from data_prep.engines import RayConfig
from data_prep.quality.clean import CleanConfig
from data_prep.quality.filter_config import FilterConfig
from data_prep.read.sources import ReadConfig
from data_prep.sections import build_section
from data_prep.split import SplitConfig
from data_prep.tokens.shards import ShardConfig
from data_prep.tokens.tokenizer import TokenizerConfig


@dataclass
class DataPrepConfig:
    """Raw text in, tokenized shards plus ``manifest.json`` out."""

    sources: list[str] = field(default_factory=list)
    """Files, directories (searched recursively) or glob patterns. ``{stdlib}`` expands to the Python standard
    library's directory (found with ``sysconfig``). ``{python_prose}`` is built-in English prose: the installed
    packages' long descriptions and the ``pydoc_data`` topics (``{python_prose}/package_descriptions``,
    ``{python_prose}/pydoc_topics`` for one of them)."""
    output_dir: str = "data/prepared"
    """Where ``manifest.json``, ``tokenizer.json`` and the shards are written."""
    num_workers: int = 0
    """Worker processes for reading, cleaning, filtering and MinHash; 0 means one per CPU core."""
    engine: Literal["local", "ray"] = "local"
    """Where the documents stage runs: ``local`` (this machine's processes) or ``ray`` (Ray tasks; ``ray.*``)."""
    ray: RayConfig = field(default_factory=RayConfig)
    read: ReadConfig = field(default_factory=ReadConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DataPrepConfig":
        """Build from a plain (e.g. YAML-loaded) dict; unknown keys raise ``DataPrepError`` naming them."""
        return build_section(cls, values or {}, prefix="")


# Keys that change where or how fast output is written, never what is written.
NON_SEMANTIC_KEYS = ("output_dir", "num_workers", "engine", "ray")
# read.part_mb splits large files into tasks; the dataset is the same whatever it is.
NON_SEMANTIC_READ_KEYS = ("part_mb",)
