"""The built-in ``{python_prose}`` source (installed packages' long descriptions and the pydoc topics), and
preparing a dataset with another prepared dataset's tokenizer file."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from pydoc_data.topics import topics

import pytest

from data_prep.config import DataPrepConfig, ReadConfig, SplitConfig, TokenizerConfig
from data_prep.errors import DataPrepError
from data_prep.pipeline import _input_identity, prepare
from data_prep.read import python_prose
from data_prep.read.sources import list_inputs
from data_prep.tokens.tokenizer import TOKENIZER_FILE, load_or_train_tokenizer
from tests.data_prep.corpus_files import read_all

DESCRIPTIONS = "{python_prose}/package_descriptions"
TOPICS = "{python_prose}/pydoc_topics"


@pytest.fixture(scope="module")
def prose_documents():
    """The documents of ``{python_prose}`` as the reader gives them, with the read stats."""
    return read_all(["{python_prose}"])


@pytest.fixture(scope="module")
def descriptions() -> dict[str, str]:
    return dict(python_prose.documents(DESCRIPTIONS))


def test_placeholder_is_two_inputs_and_each_part_is_a_source_alone():
    inputs = list_inputs(["{python_prose}"], ReadConfig())
    assert [(item.path, item.kind) for item in inputs] == [(DESCRIPTIONS, "python_prose"), (TOPICS, "python_prose")]
    assert [item.path for item in list_inputs([TOPICS, "{python_prose}"], ReadConfig())] == [DESCRIPTIONS, TOPICS]
    assert [item.path for item in list_inputs([TOPICS], ReadConfig())] == [TOPICS]
    for bad in ("{python_prose}/nothing", "{python_prose}x", "/x/{python_prose}"):
        with pytest.raises(DataPrepError, match=r"built-in source, not a path") as error:
            list_inputs([bad], ReadConfig())
        assert "\n" not in str(error.value)


def test_documents_are_the_same_on_every_read_sorted_and_unique(prose_documents):
    documents, stats = prose_documents
    again, _ = read_all(["{python_prose}"])
    assert again == documents  # text, source and position of every document
    for path in (DESCRIPTIONS, TOPICS):
        names = [name for name, _ in python_prose.documents(path)]
        assert names == sorted(set(names)) and len(names) > 10
        positions = [d.position for d in documents if d.source == path]
        assert positions == list(range(len(names)))
    assert all(d.text.strip() for d in documents)
    assert stats.files == 2 and stats.documents == len(documents)
    assert stats.bytes == sum(len(d.text.encode("utf-8")) for d in documents)


def test_every_pydoc_topic_is_one_document(prose_documents):
    documents, _ = prose_documents
    texts = [d.text for d in documents if d.source == TOPICS]
    assert texts == [topics[name] for name in sorted(topics)]
    assert "Assignment statements" in topics["assignment"] and topics["assignment"] in texts


@pytest.mark.parametrize(
    "package, phrase",
    [("pytest", "framework makes it easy to write small tests"), ("torch", "PyTorch is a Python package")],
)
def test_installed_packages_give_their_long_description(prose_documents, descriptions, package, phrase):
    documents, _ = prose_documents
    # Read from the METADATA file itself (the body after the first blank line): in a long suite run another
    # in-process library once left importlib.metadata's parsed message without its payload.
    metadata = Path(importlib.metadata.distribution(package).locate_file(f"{package}-x")).parent
    files = sorted(metadata.glob(f"{package}-*.dist-info/METADATA"))
    independent = files[0].read_text(encoding="utf-8").split("\n\n", 1)[1]
    assert phrase in independent
    assert descriptions[package] == independent
    matching = [d for d in documents if d.source == DESCRIPTIONS and phrase in d.text]
    assert [d.text for d in matching] == [independent]


def test_reading_ignores_the_current_directory_and_sys_path(tmp_path, monkeypatch):
    """A package's metadata found through the current directory (a checkout's ``*.egg-info``) or ``sys.path`` is
    not read: the corpus is the environment's, whatever directory the command runs in."""
    before = python_prose.documents(DESCRIPTIONS)
    metadata = tmp_path / "planted_prose_package-1.0.dist-info" / "METADATA"
    metadata.parent.mkdir()
    metadata.write_text(
        "Metadata-Version: 2.1\nName: planted-prose-package\nVersion: 1.0\n\nA planted description of a package.\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert importlib.metadata.distribution("planted-prose-package").version == "1.0"  # importlib sees it here
    assert python_prose.documents(DESCRIPTIONS) == before


def test_description_of_old_metadata_comes_from_its_header(tmp_path, monkeypatch):
    """Metadata 1.x keeps the long description in a folded ``Description`` header, not in the body."""
    info = tmp_path / "site" / "old_style-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 1.1\nName: Old_Style\nVersion: 0.1\n"
        "Description: Old style\n        ===========\n        \n        Described in a header.\n"
    )
    other = tmp_path / "site" / "UNKNOWN_desc-0.1.dist-info"
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 1.1\nName: unknown-desc\nVersion: 0.1\nDescription: UNKNOWN\n")
    monkeypatch.setattr(python_prose, "site_directories", lambda: [str(tmp_path / "site")])
    assert python_prose.package_descriptions() == [("old-style", "Old style\n===========\n\nDescribed in a header.")]


def test_identity_follows_the_texts(monkeypatch):
    (item,) = list_inputs([TOPICS], ReadConfig())
    assert _input_identity(item) == _input_identity(item)
    original = python_prose.pydoc_topics()
    monkeypatch.setattr(python_prose, "pydoc_topics", lambda: [*original[:-1], (original[-1][0], "changed")])
    changed = _input_identity(item)
    monkeypatch.undo()
    assert changed != _input_identity(item)


def test_prepared_with_another_datasets_tokenizer_file_shares_it_byte_for_byte(prepared_dataset, tmp_path):
    """The pydoc topics prepared with the tokenizer of the shared prepared dataset: the same tokenizer file
    (SHA-256), special tokens, vocabulary size and end-of-text id, so the two datasets can be mixed; and the
    source counts in report.json like any other."""
    source = json.loads((prepared_dataset / "manifest.json").read_text())
    config = DataPrepConfig(
        sources=[TOPICS],
        output_dir=str(tmp_path / "prose"),
        split=SplitConfig(val_fraction=0.2, seed=0),
        tokenizer=TokenizerConfig(pretrained=str(prepared_dataset / TOKENIZER_FILE)),
    )
    manifest = prepare(config, show_progress=False)
    output = tmp_path / "prose"
    assert (output / TOKENIZER_FILE).read_bytes() == (prepared_dataset / TOKENIZER_FILE).read_bytes()
    assert manifest["tokenizer"]["sha256"] == source["tokenizer"]["sha256"]
    for key in ("special_tokens", "roles", "end_of_text_id"):
        assert manifest["tokenizer"][key] == source["tokenizer"][key]
    assert (manifest["vocab_size"], manifest["end_of_text_id"], manifest["dtype"]) == (
        source["vocab_size"],
        source["end_of_text_id"],
        source["dtype"],
    )
    report = json.loads((output / "report.json").read_text())
    assert report["files"] == 1 and report["documents"]["read"] == len(topics)
    assert report["bytes"]["read"] == sum(len(text.encode()) for text in topics.values())
    assert sum(split["documents"] for split in manifest["splits"].values()) == report["documents"]["kept"] > 50


def test_pretrained_tokenizer_file_is_copied_not_serialised_again(prepared_dataset, tmp_path):
    """A tokenizer.json written by another tokenizers version (here: compact JSON, which this version never
    writes) keeps its bytes, so its hash is the same in every dataset prepared with it."""
    compact = tmp_path / "compact.json"
    compact.write_text(json.dumps(json.loads((prepared_dataset / TOKENIZER_FILE).read_text()), separators=(",", ":")))
    _, info = load_or_train_tokenizer(TokenizerConfig(pretrained=str(compact)), tmp_path / "t", lambda: [])
    assert (tmp_path / "t" / TOKENIZER_FILE).read_bytes() == compact.read_bytes()
    assert info["special_tokens"] == {"<|endoftext|>": 0}
