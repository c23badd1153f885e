"""Shared fixtures: small real corpora taken from the standard library's own sources (no downloads)."""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

if "PYTEST_XDIST_WORKER" in os.environ:
    # The suite runs as two pytest workers on the 2-core CI machine: one thread each (and in the subprocesses and
    # notebook kernels they start), set before torch is imported. Two processes each spinning two OpenMP threads on
    # two cores made CPU-bound tests up to ten times slower (a notebook: 16 s alone, 157 s beside another worker).
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

import lightning as L  # noqa: E402
import pytest

from data_prep.config import DataPrepConfig, SplitConfig, TokenizerConfig
from data_prep.pipeline import prepare

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Packages of the standard library used as a ~1 MB test corpus: real code, present on every machine.
CORPUS_PACKAGES = ("json", "email", "collections", "logging", "importlib", "unittest", "http", "xml/dom")


def copy_stdlib_corpus(destination: Path, packages=CORPUS_PACKAGES) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for package in packages:
        for source in sorted((STDLIB / package).glob("*.py")):
            target = destination / package.replace("/", "_") / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return destination


def small_prep_config(corpus: Path, output: Path, **overrides) -> DataPrepConfig:
    config = DataPrepConfig(
        sources=[str(corpus)],
        output_dir=str(output),
        split=SplitConfig(val_fraction=0.1, seed=0),
        tokenizer=TokenizerConfig(vocab_size=512, min_frequency=2),
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="session")
def stdlib_corpus(tmp_path_factory) -> Path:
    return copy_stdlib_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def prepared_dataset(stdlib_corpus, tmp_path_factory) -> Path:
    """A prepared dataset (vocab 512) shared by tests that only read it."""
    output = tmp_path_factory.mktemp("prepared") / "dataset"
    prepare(small_prep_config(stdlib_corpus, output), show_progress=False)
    return output


@pytest.fixture(scope="session")
def prepared_mlm_dataset(stdlib_corpus, tmp_path_factory) -> Path:
    """The same corpus prepared for masked LM: a tokenizer with ``<pad> <unk> <mask> <s>`` (ids 1-4)."""
    output = tmp_path_factory.mktemp("prepared-mlm") / "dataset"
    config = small_prep_config(stdlib_corpus, output, tokenizer=TokenizerConfig(kind="mlm", vocab_size=512))
    prepare(config, show_progress=False)
    return output


# A second, smaller source for mixtures: other packages of the standard library, tokenized with the tokenizer of
# ``prepared_dataset`` (every source of a mixture shares one tokenizer).
SECOND_SOURCE_PACKAGES = ("asyncio",)


@pytest.fixture(scope="session")
def prepared_second_dataset(prepared_dataset, tmp_path_factory) -> Path:
    """A second prepared dataset sharing ``prepared_dataset``'s tokenizer (for mixtures of sources)."""
    root = tmp_path_factory.mktemp("second")
    corpus = copy_stdlib_corpus(root / "corpus", SECOND_SOURCE_PACKAGES)
    tokenizer = TokenizerConfig(pretrained=str(prepared_dataset / "tokenizer.json"))
    prepare(small_prep_config(corpus, root / "dataset", tokenizer=tokenizer), show_progress=False)
    return root / "dataset"


def quiet_trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    """A Trainer for in-process tests: no logger, checkpoints, progress bar, summary or sanity check."""
    options = dict(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    return L.Trainer(**{**options, **kwargs})


# The longest test files, started first: the suite runs on two workers that take whole files (pytest-xdist's
# loadfile), and a long file started last leaves the other worker idle at the end.
LONGEST_FIRST = ("tests/e2e/test_strategies_cli.py", "tests/e2e/test_resume_cli.py", "tests/e2e/test_preemption_cli.py")


def pytest_collection_modifyitems(config, items) -> None:
    order = {path: index for index, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: order.get(item.nodeid.split("::")[0], len(order)))  # stable: the rest as collected
