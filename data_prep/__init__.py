"""Corpus preparation: raw text files to cleaned, deduplicated, tokenized shards. No Lightning imports here."""

from data_prep.config import DataPrepConfig
from data_prep.errors import DataPrepError
from data_prep.pipeline import prepare

__all__ = ["DataPrepConfig", "DataPrepError", "prepare"]
