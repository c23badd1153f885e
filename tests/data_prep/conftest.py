"""Corpora shared by the data preparation tests."""

from __future__ import annotations

import importlib.util
import json
import sys
from argparse import Namespace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def planted_corpus(tmp_path_factory) -> Path:
    """The accuracy benchmark's corpus, small: 60 bases with 3 planted variants each at known Jaccard levels,
    shuffled, written as 8 JSONL inputs (so duplicates cross inputs and Ray task groups), and a ninth input of
    exact copies of documents of the others."""
    spec = importlib.util.spec_from_file_location("near_dedup_accuracy", REPO / "benchmarks/near_dedup_accuracy.py")
    benchmark = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = benchmark  # its dataclasses look their module up there
    spec.loader.exec_module(benchmark)
    docs = benchmark.build_corpus(Namespace(bases=40, stdlib_bases=20, seed=0))
    directory = tmp_path_factory.mktemp("planted")
    for part in range(8):
        lines = [json.dumps({"text": doc.text}) for doc in docs[part::8]]
        (directory / f"part{part}.jsonl").write_text("\n".join(lines) + "\n")
    copies = [json.dumps({"text": doc.text}) for doc in docs[3::17]]
    (directory / "part8.jsonl").write_text("\n".join(copies) + "\n")
    return directory
