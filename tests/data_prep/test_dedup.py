import io
import json
import sysconfig
from pathlib import Path

import numpy as np

from data_prep.dedup.exact import DedupConfig, DuplicateFinder, text_digest
from data_prep.dedup.minhash import NearDedupConfig, signatures
from data_prep.read.sources import Document

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def run_finder(texts: list[str], config: DedupConfig, tmp_path: Path, chunks: int = 1):
    """Feed the finder as the pipeline does: documents with digests, signatures from a raw .sig file."""
    documents = [(Document(text, f"doc{i}.txt", 0), text_digest(text)) for i, text in enumerate(texts)]
    sig_path = tmp_path / "input.sig"
    if config.near.enabled:
        sig_path.write_bytes(signatures(texts, config.near).tobytes())
    finder, audit = DuplicateFinder(config), io.StringIO()
    keep = finder.process_input(documents, sig_path, audit)
    return keep.tolist(), [json.loads(line) for line in audit.getvalue().splitlines()], finder.counts()


def test_exact_duplicates_keep_the_first_and_are_audited(tmp_path):
    texts = ["alpha beta", "gamma delta", "alpha beta", "alpha beta"]
    keep, audit, counts = run_finder(texts, DedupConfig(near=NearDedupConfig(enabled=False)), tmp_path)
    assert keep == [True, True, False, False]
    assert counts == {"exact": 2, "near": 0}
    assert [(r["removed"]["source"], r["kept"]["source"], r["kind"]) for r in audit] == [
        ("doc2.txt", "doc0.txt", "exact"),
        ("doc3.txt", "doc0.txt", "exact"),
    ]


def test_near_duplicates_point_at_the_kept_original(tmp_path):
    original = (STDLIB / "json" / "decoder.py").read_text()
    edited = original.replace("JSONDecodeError", "JSONDecodingError", 1)  # a one-word edit
    other = (STDLIB / "json" / "encoder.py").read_text()
    keep, audit, counts = run_finder([original, other, edited, original], DedupConfig(), tmp_path)
    assert keep == [True, True, False, False]
    assert counts["exact"] == 1 and counts["near"] == 1
    assert {(r["removed"]["source"], r["kept"]["source"], r["kind"]) for r in audit} == {
        ("doc2.txt", "doc0.txt", "near"),
        ("doc3.txt", "doc0.txt", "exact"),
    }


def test_exact_dedup_can_be_switched_off(tmp_path):
    config = DedupConfig(exact=False, near=NearDedupConfig(enabled=False))
    keep, audit, _ = run_finder(["same", "same"], config, tmp_path)
    assert keep == [True, True] and audit == []


def test_digest_is_16_bytes_and_text_sensitive():
    assert len(text_digest("x")) == 16
    assert text_digest("x") != text_digest("x ")
    assert np.frombuffer(text_digest("é"), dtype=np.uint8).size == 16


def test_a_chain_removes_every_link_and_the_audit_names_partner_and_survivor(tmp_path):
    """x -> y -> z (near, J(x, z) below the threshold), then an exact copy of z: each is removed for a smaller
    id it matches, whatever became of that one; ``duplicate_of`` is that partner, ``kept`` the survivor."""
    from tests.data_prep.test_near_dedup import change_words, exact_jaccard, stdlib_text

    near = NearDedupConfig(threshold=0.74, num_perm=512)
    x = stdlib_text("inspect.py")
    y = change_words(x, 50, tag="y")
    z = change_words(y, 50, offset=25, tag="z")
    assert exact_jaccard(x, z, near) < 0.68  # z matches y only
    keep, audit, counts = run_finder([x, y, z, z], DedupConfig(near=near), tmp_path)
    assert keep == [True, False, False, False] and counts["exact"] == 1 and counts["near"] == 2
    assert [(r["removed"]["source"], r["duplicate_of"]["source"], r["kept"]["source"], r["kind"]) for r in audit] == [
        ("doc1.txt", "doc0.txt", "doc0.txt", "near"),
        ("doc2.txt", "doc1.txt", "doc0.txt", "near"),
        ("doc3.txt", "doc2.txt", "doc0.txt", "exact"),
    ]
