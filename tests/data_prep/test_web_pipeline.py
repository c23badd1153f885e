"""configs/data/web.yaml end to end on a crawl the test writes: WARC pages and compressed JSONL records."""

import gzip
import io
import json
from pathlib import Path
from pydoc_data.topics import topics

import yaml
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from data_prep.config import DataPrepConfig
from data_prep.pipeline import prepare

REPO = Path(__file__).resolve().parents[2]
GERMAN = (
    "Die Bibliothek stellt Funktionen bereit, mit denen man Dateien lesen und schreiben kann. Wenn die Datei "
    "nicht existiert, wird eine Ausnahme ausgelöst, und das Programm muss diese Ausnahme behandeln. Die "
    "Dokumentation beschreibt jede Funktion ausführlich und gibt Beispiele für die häufigsten Anwendungen. "
) * 3
SPAM = "Buy cheap watches now! Best prices! Click here! " * 60


def prose(name: str) -> str:
    """Real English prose: a section of Python's own language reference (shipped with the interpreter)."""
    return " ".join(topics[name].split())


def write_warc(path: Path, pages: dict[str, str]) -> None:
    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for url, text in pages.items():
            html = f"<html><head><title>t</title></head><body><article><p>{text}</p></article></body></html>"
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            record = writer.create_warc_record(url, "response", payload=io.BytesIO(html.encode()), http_headers=headers)
            writer.write_record(record)


def test_web_config_cleans_filters_and_deduplicates_a_crawl(tmp_path):
    names = ["assignment", "with", "try", "class", "function", "import", "lambda", "for", "while", "if"]
    pages = {f"https://example.org/{name}": prose(name) for name in names}
    pages["https://example.org/spam"] = SPAM
    pages["https://example.org/de"] = GERMAN
    near_copy = prose("assignment").replace("target", "destination", 2)
    pages["https://mirror.example.net/assignment"] = near_copy
    write_warc(tmp_path / "crawl.warc.gz", pages)
    with gzip.open(tmp_path / "records.jsonl.gz", "wt") as handle:
        for name in ["yield", "return", "raise", "global", "nonlocal", "del", "pass", "break", "continue", "assert"]:
            handle.write(
                json.dumps({"text": f"Contact docs@example.org or see https://docs.python.org. {prose(name)}"}) + "\n"
            )

    values = yaml.safe_load((REPO / "configs/data/web.yaml").read_text())
    values.update(sources=[str(tmp_path / "*.warc.gz"), str(tmp_path / "*.jsonl.gz")], output_dir=str(tmp_path / "out"))
    values["tokenizer"].update(vocab_size=500)
    values["split"].update(val_fraction=0.2, test_fraction=0.1)
    manifest = prepare(DataPrepConfig.from_dict(values), show_progress=False)

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["documents"]["read"] == 23
    assert sum(report["removed"].values()) >= 2  # the German and the spam pages, by the first filter each fails
    assert report["duplicates"]["near"] == 1
    audit = [json.loads(line) for line in (tmp_path / "out" / "duplicates.jsonl").read_text().splitlines()]
    assert audit[0]["kind"] == "near" and audit[0]["kept"]["source"].endswith("crawl.warc.gz")
    assert set(manifest["splits"]) == {"train", "val", "test"}
    # E-mails and URLs are masked, and no markup survives.
    from data_prep.tokens.shards import read_tokens
    from data_prep.tokens.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tmp_path / "out" / "tokenizer.json")
    text = "".join(
        tokenizer.decode(read_tokens(tmp_path / "out" / name, manifest["dtype"], 0, 10**9).tolist())
        for split in manifest["splits"].values()
        for name in split["files"]
    )
    assert "docs@example.org" not in text and "https://docs.python.org" not in text
    assert "<email>" in text and "<url>" in text and "<p>" not in text
    assert "Bibliothek" not in text and "cheap watches" not in text
    assert "destination" not in text  # the near-duplicate mirror page is gone, its original kept
