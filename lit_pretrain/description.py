"""What the module, its callbacks and export need to know about the data, described once by the data module.

The data module builds a :class:`DataDescription` in ``__init__`` (LightningCLI links it to ``model.data_description``, as it
links ``vocab_size``) and completes it in ``setup`` once the prepared datasets are there (bytes per token are
read from their manifests). Nothing outside the data module reads ``trainer.datamodule``: a mixture of sources,
per-source metrics, evaluations and export all read this.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from data_prep.tokens.shards import MANIFEST_FILE

# The key of a split's figure over all its sources (a single dataset has only this one).
ALL = "all"


class DataDescription:
    """Facts about the data a run trains on.

    Args:
        vocab_size: Embedding rows the model needs (the planned vocabulary size of the tokenizer).
        token_ids: The tokenizer's special ids (``end_of_text_id``, ``bos_token_id``, ``mask_token_id``, ...).
        tokenizer_dataset: The prepared dataset directory whose tokenizer the run uses (its manifest names the
            ``tokenizer.json`` and the Hugging Face tokenizer directory export copies).
        sources: Names of the mixture's sources, in config order; empty for a single dataset.
    """

    def __init__(
        self,
        vocab_size: int,
        token_ids: dict[str, int],
        tokenizer_dataset: str,
        sources: list[str] | None = None,
    ) -> None:
        self.vocab_size = int(vocab_size)
        self.token_ids = dict(token_ids)
        self.tokenizer_dataset = str(tokenizer_dataset)
        self.sources = list(sources or [])
        # split -> {ALL or source name: raw UTF-8 bytes per token}; filled by the data module's setup.
        self.bytes_per_token: dict[str, dict[str, float]] = {}
        self.test_split = "test"
        self.tokenizer_vocab_size: int | None = None
        # The training stream's progress (a mixture's active phase and windows per source), set with the train
        # loader: a callable returning {"phase": int, "windows": {name: int}} of what the loop has consumed.
        self.progress: Callable[[], dict] | None = None

    @property
    def tokenizer_path(self) -> Path | None:
        """The ``tokenizer.json`` of the run's tokenizer, once its dataset is prepared."""
        manifest = self.manifest()
        return None if manifest is None else Path(self.tokenizer_dataset) / manifest["tokenizer"]["file"]

    def manifest(self) -> dict | None:
        path = Path(self.tokenizer_dataset) / MANIFEST_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def bytes_per_token_of(self, split: str, source: str = ALL) -> float | None:
        """Bytes per token of ``split`` (of one ``source``, or over all of them), None before ``setup``."""
        return self.bytes_per_token.get(split, {}).get(source)

    def as_dict(self) -> dict:
        """What a checkpoint keeps of it (read by export and by tools that inspect a run)."""
        return {
            "vocab_size": self.vocab_size,
            "token_ids": self.token_ids,
            "tokenizer_dataset": self.tokenizer_dataset,
            "sources": self.sources,
            "bytes_per_token": self.bytes_per_token,
            "test_split": self.test_split,
        }

    def __repr__(self) -> str:
        return f"DataDescription({self.as_dict()})"
