"""The pipeline's JSON-array reader (``data_prep.read.json_array.JsonRecords``: ijson's C backend plus a scan for
lone surrogate escapes and a record-size bound) against bare ``ijson.items`` on the same file, side by side in
one run, and its repair path (the text rewritten before yajl reads it; taken by files with invalid UTF-8 or
lone surrogate escapes): records/s, MB/s, ratios.

    python benchmarks/json_array_reader.py [--megabytes 100] [--repeats 3] [--record-chars 500]

The file is a top-level JSON array of ``{"text": ..., "id": n}`` records whose texts are standard-library
modules (escaped quotes, backslashes and non-ASCII included), whole or cut into ``--record-chars`` pieces. ``ijson.items(f, "item")`` is timed with its C
backend (yajl2_c) on the binary file. The repair path is timed by forcing it (``repair=True``) on the same valid
file. The best of ``--repeats`` runs is reported. All must yield the same records (checked).
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_prep.read.json_array import JsonRecords  # noqa: E402


def build(path: Path, megabytes: float, record_chars: int) -> int:
    texts = [
        p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    ]
    if record_chars:  # many short records, as in web-text dumps
        texts = [text[start : start + record_chars] for text in texts for start in range(0, len(text), record_chars)]
    written, count = 0, 0
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[\n")
        while written < megabytes * 1e6:
            line = json.dumps({"text": texts[count % len(texts)], "id": count}, ensure_ascii=False)
            handle.write(("," if count else "") + line + "\n")
            written += len(line.encode())
            count += 1
        handle.write("]\n")
    return count


def ours(path: Path, repair: bool = False) -> list:
    records = JsonRecords(str(path), lambda: open(path, "rb"))
    return [record["id"] for _, record, _ in records._records(repair=repair)]


def repair_path(path: Path) -> list:
    return ours(path, repair=True)


def theirs(path: Path) -> list:
    import ijson

    with open(path, "rb") as raw:
        return [record["id"] for record in ijson.items(raw, "item")]


def best(function, path: Path, repeats: int) -> tuple[float, list]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function(path)
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record-chars", type=int, default=0, help="cut texts into records of this many characters")
    options = parser.parse_args()
    import ijson

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "records.json"
        count = build(path, options.megabytes, options.record_chars)
        size = path.stat().st_size / 1e6
        ours_s, ours_ids = best(ours, path, options.repeats)
        theirs_s, theirs_ids = best(theirs, path, options.repeats)
        repair_s, repair_ids = best(repair_path, path, options.repeats)
    assert ours_ids == theirs_ids == repair_ids == list(range(count)), "the readers disagree"
    print(f"{count:,} records, {size:.0f} MB; ijson {ijson.__version__} backend {ijson.backend}")
    print("| reader | seconds | records/s | MB/s |")
    print("|---|---|---|---|")
    for name, seconds in (
        (f"bare ijson.items ({ijson.backend})", theirs_s),
        ("JsonRecords, fast path", ours_s),
        ("JsonRecords, repair path (rewritten text, yajl)", repair_s),
    ):
        print(f"| {name} | {seconds:.2f} | {count / seconds:,.0f} | {size / seconds:.0f} |")
    print(
        f"\nfast path time / bare ijson: {ours_s / theirs_s:.2f}; repair path time / fast path: {repair_s / ours_s:.2f}"
    )


if __name__ == "__main__":
    main()
