"""Speed of the quality filters (data_prep/quality/filters.py) and of the cleaning steps (data_prep/quality/clean.py), one core.

    python benchmarks/filters_speed.py [--mb 1.5] [--jsonl crawl.jsonl --text-field text]

Corpora, all shipped with Python so the figures can be reproduced on any machine:
- prose: the Python reference manual as ``pydoc`` ships it (``pydoc_data.topics``), cut at its section headings,
  then the docstrings of the standard library's modules (one document per module), up to ``--mb`` MB;
  or the documents of a JSONL file (``--jsonl``), e.g. a sample of a real crawl;
- code: the standard library's ``.py`` files, up to ``--mb`` MB.
Each filter is timed alone on the whole corpus (so its cost is comparable), then the ``web`` and ``code``
profiles as the pipeline runs them (stopping at the first filter that removes a document).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout without an install

from data_prep.quality.clean import CleanConfig, clean_text
from data_prep.quality.filter_config import FILTER_ORDER, FilterConfig
from data_prep.quality.filters import QualityFilters
from data_prep.quality.language import LanguageIdentifier

STDLIB = Path(sysconfig.get_paths()["stdlib"])
HEADING_UNDERLINE = re.compile(r"\n[^\n]+\n[=*\-]{4,}\n")


def reference_manual_sections() -> list[str]:
    from pydoc_data.topics import topics

    sections = []
    for _, text in sorted(topics.items()):
        sections.extend(part.strip() for part in HEADING_UNDERLINE.split("\n" + text) if part.strip())
    return sections


def module_docstrings() -> list[str]:
    documents = []
    for path in sorted(STDLIB.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef)))]
        docstrings = [ast.get_docstring(node) for node in nodes]
        text = "\n\n".join(d for d in docstrings if d)
        if text:
            documents.append(text)
    return documents


def take(documents, megabytes: float) -> list[str]:
    taken, size = [], 0
    for text in documents:
        if size >= megabytes * 1e6:
            break
        taken.append(text)
        size += len(text.encode())
    return taken


def prose_corpus(megabytes: float, jsonl: str | None, text_field: str) -> list[str]:
    if jsonl:
        with open(jsonl, encoding="utf-8") as handle:
            return take((json.loads(line)[text_field] for line in handle), megabytes)
    return take(reference_manual_sections() + module_docstrings(), megabytes)


def code_corpus(megabytes: float) -> list[str]:
    files = (p for p in sorted(STDLIB.rglob("*.py")) if "site-packages" not in p.parts)
    return take((p.read_text(encoding="utf-8", errors="replace") for p in files), megabytes)


def best_of(repeats: int, work) -> float:
    """Fastest of ``repeats`` runs of ``work()``, in seconds: the least disturbed by other processes."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def run(filters: QualityFilters, documents: list[str], repeats: int) -> tuple[float, Counter]:
    removed = Counter(filters.apply(text)[0] or "kept" for text in documents)
    return best_of(repeats, lambda: [filters.apply(text) for text in documents]), removed


def line(label: str, seconds: float, documents: list[str], extra: str = "") -> str:
    megabytes = sum(len(t.encode()) for t in documents) / 1e6
    return (
        f"{label:<28} {seconds * 1e3:8.1f} ms {len(documents) / seconds:10.0f} docs/s "
        f"{megabytes / seconds:7.2f} MB/s  {extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.5, help="MB of each corpus")
    parser.add_argument("--jsonl", help="JSONL file of prose documents to use instead of the shipped corpus")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--repeats", type=int, default=3, help="time each step this many times, report the best")
    args = parser.parse_args()

    corpora = {"web": prose_corpus(args.mb, args.jsonl, args.text_field), "code": code_corpus(args.mb)}
    for profile, documents in corpora.items():
        megabytes = sum(len(t.encode()) for t in documents) / 1e6
        print(f"\n{profile}: {len(documents)} documents, {megabytes:.2f} MB")
        for name in FILTER_ORDER:
            config = FilterConfig(profile="none")
            getattr(config, name).enabled = True
            if name == "length":
                config.length.min_words = 50 if profile == "web" else 5
            seconds, removed = run(QualityFilters(config), documents, args.repeats)
            print(line(f"  {name} alone", seconds, documents, f"removes {sum(removed.values()) - removed['kept']}"))
        filters = QualityFilters(FilterConfig(profile=profile))
        seconds, removed = run(filters, documents, args.repeats)
        kept = removed.pop("kept", 0)
        print(line(f"  profile {profile}", seconds, documents, f"kept {kept}, removed {dict(removed)}"))

    documents = corpora["web"]
    identify = LanguageIdentifier()
    languages = Counter(identify(text)[0] for text in documents)
    seconds = best_of(args.repeats, lambda: [identify(text) for text in documents])
    print("\n" + line("language id alone", seconds, documents, f"{languages.most_common(3)}"))

    everything = CleanConfig(
        fix_mojibake=True, strip_html=True, unicode_nfkc=True, urls="mask", emails="mask", normalize_whitespace=True
    )
    for label, config in (("clean (defaults)", CleanConfig()), ("clean (every switch on)", everything)):
        for profile, documents in corpora.items():
            seconds = best_of(args.repeats, lambda: [clean_text(text, config) for text in documents])
            print(line(f"{label} {profile}", seconds, documents))


if __name__ == "__main__":
    main()
