"""Deduplication as a shuffle (``--engine ray``): no process holds the whole index.

The rule is :mod:`data_prep.dedup.exact`'s (a document is removed when a smaller-id document is an exact copy
or a near duplicate sharing an LSH band, kept or not), computed by three kinds of task:

map (one per group of inputs)
    Reads each input's digests and MinHash signatures from the documents stage's work files and writes, per
    partition, one *exact record* per document (keyed by its digest) and one *band record* per document and LSH
    band (keyed by :func:`data_prep.dedup.lsh.band_keys`), appended in chunks (bounded memory).
reduce (one per partition)
    Sorts its records. Exact: in each digest group every document but the first is a copy of the first.
    Near: each band bucket with two or more documents is checked on the full signatures (read from the work
    files): each document's partner is the earliest smaller-id member with estimated Jaccard >= threshold.
    With exact dedup on, a bucket member whose digest an earlier member has is a copy and takes no part (in
    one process copies never reach the index; the copy's first has the same signature, so it is in the same
    buckets and earlier). A partition holds about ``ray.partition_records`` records: that bounds its memory.
finalize (the driver, with locate tasks)
    Takes each document's smallest partner over all partitions (exact before near), follows chains to the
    surviving document, has locate tasks read the source and position of the documents the audit names, and
    writes the keep masks, ``duplicates.jsonl`` (in pipeline order) and the counts, exactly as the single
    process path does. The driver holds only the removed documents' (ordinal, partner) pairs.

Work files live in ``work/dedup.<fp>/shuffle/p<partitions>/``; each map group and reduce partition has its own
completion marker, so a driver killed mid-shuffle resumes where it stopped. The directory is removed at the end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from data_prep.dedup.exact import DedupConfig, _write_audit
from data_prep.dedup.lsh import band_keys, estimated_jaccard, lsh_params
from data_prep.dedup.minhash import _permutations
from data_prep.errors import naming_full_disk
from data_prep.workdir import atomic_path, read_json, tmp_sibling, write_json_atomic

EXACT_RECORD = np.dtype([("d0", "<u8"), ("d1", "<u8"), ("ordinal", "<i8"), ("nonempty", "u1")])
BAND_RECORD = np.dtype([("key", "<u8"), ("ordinal", "<i8"), ("d0", "<u8"), ("d1", "<u8")])
# Documents a map task reads at a time (their signatures and records are what it holds).
MAP_CHUNK_DOCUMENTS = 1 << 15
# Bucket members whose signatures a reduce task holds at a time while verifying candidates.
VERIFY_ROWS = 1 << 16
_DIGEST_PREFIX = '{"digest": "'


@dataclass(frozen=True)
class ShuffleSpec:
    """What every shuffle task needs: the config, where the work files are, and each input's documents."""

    dedup: DedupConfig
    directory: str
    jsonl: tuple[str, ...]  # per input: the documents stage's .jsonl ...
    signatures: tuple[str, ...]  # ... and .sig
    first: tuple[int, ...]  # per input, its first document's ordinal (pipeline order); one more at the end
    partitions: int

    inputs_per_task: int

    def groups(self) -> list[list[int]]:
        """The inputs of each map task (fixed by the input list, so a restarted driver finds its groups' files)."""
        step, count = self.inputs_per_task, len(self.jsonl)
        return [list(range(lo, min(lo + step, count))) for lo in range(0, count, step)]

    @property
    def near(self) -> bool:
        return self.dedup.near.enabled

    def rows(self, ordinals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(input index, row in that input) of each ordinal."""
        inputs = np.searchsorted(np.asarray(self.first), ordinals, side="right") - 1
        return inputs, ordinals - np.asarray(self.first)[inputs]


def partition_count(documents: int, dedup: DedupConfig, partition_records: int) -> int:
    """Partitions so that each holds about ``partition_records`` records (depends on the corpus and config only,
    never on the number of workers, so every run of the same data cuts the same partitions)."""
    bands = lsh_params(dedup.near)[0] if dedup.near.enabled else 0
    per_document = bands + (1 if dedup.exact else 0)
    return max(1, math.ceil(documents * per_document / max(1, partition_records)))


# -- map ---------------------------------------------------------------------------------------------------
def read_digests(jsonl: str) -> np.ndarray:
    """``(documents, 2)`` uint64: each document's 16-byte digest, read from the start of its line."""
    values = []
    with open(jsonl, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(_DIGEST_PREFIX):
                values.append(line[len(_DIGEST_PREFIX) : len(_DIGEST_PREFIX) + 32])
            else:  # not written by this version's documents stage: the slow, general way
                values.append(json.loads(line)["digest"])
    raw = bytes.fromhex("".join(values))
    return np.frombuffer(raw, dtype="<u8").reshape(-1, 2) if raw else np.empty((0, 2), dtype="<u8")


def _append(directory: Path, stem: str, records: np.ndarray, partitions: np.ndarray, count: int) -> None:
    if not records.size:
        return
    order = np.argsort(partitions, kind="stable")
    records, partitions = records[order], partitions[order]
    bounds = np.searchsorted(partitions, np.arange(count + 1))
    for p in range(count):
        if bounds[p + 1] > bounds[p]:
            path = directory / f"{stem}.p{p}"
            with naming_full_disk(path), open(path, "ab") as handle:
                handle.write(records[bounds[p] : bounds[p + 1]].tobytes())


def map_group(spec: ShuffleSpec, group: int, inputs: list[int]) -> int:
    """Writes this group's records into its partition files ``map/g<group>.<near|exact>.p<N>``; returns its
    documents with shingles. Written under temporary names, renamed, then marked done."""
    directory = Path(spec.directory) / "map"
    marker = directory / f"g{group}.done.json"
    if marker.is_file():
        return read_json(marker)["nonempty"]
    directory.mkdir(parents=True, exist_ok=True)
    stem = tmp_sibling(directory / f"g{group}").name
    for stale in directory.glob(f"{stem}.*"):  # this process's own leftovers (a retried task may reuse a pid)
        stale.unlink()
    nonempty = _map_inputs(spec, inputs, directory, stem)
    for part in sorted(directory.glob(f"{stem}.*")):
        part.replace(directory / f"g{group}.{part.name[len(stem) + 1 :]}")
    write_json_atomic(marker, {"nonempty": nonempty})
    return nonempty


def _map_inputs(spec: ShuffleSpec, inputs: list[int], directory: Path, stem: str) -> int:
    near = spec.dedup.near
    bands, rows = lsh_params(near)
    permutations = _permutations(near.num_perm, near.seed, near.scheme)
    nonempty_total = 0
    for i in inputs:
        digests = read_digests(spec.jsonl[i])
        count = spec.first[i + 1] - spec.first[i]
        if len(digests) != count:
            raise RuntimeError(f"{spec.jsonl[i]}: {len(digests)} documents, the stage's stats say {count}")
        signatures = None
        if spec.near and count:
            signatures = np.memmap(spec.signatures[i], dtype=permutations.dtype, mode="r").reshape(-1, near.num_perm)
        for lo in range(0, count, MAP_CHUNK_DOCUMENTS):
            hi = min(lo + MAP_CHUNK_DOCUMENTS, count)
            ordinals = np.arange(spec.first[i] + lo, spec.first[i] + hi, dtype=np.int64)
            chunk = digests[lo:hi]
            nonempty = np.ones(hi - lo, dtype=bool)
            if signatures is not None:
                sigs = np.asarray(signatures[lo:hi])
                nonempty = (sigs != permutations.empty).any(axis=1)
                nonempty_total += int(nonempty.sum())
                keys = band_keys(sigs[nonempty], bands, rows)
                records = np.empty(keys.size, dtype=BAND_RECORD)
                records["key"] = keys.ravel()
                records["ordinal"] = np.repeat(ordinals[nonempty], bands)
                records["d0"] = np.repeat(chunk[nonempty, 0], bands)
                records["d1"] = np.repeat(chunk[nonempty, 1], bands)
                _append(
                    directory, f"{stem}.near", records, records["key"] % np.uint64(spec.partitions), spec.partitions
                )
            if spec.dedup.exact:
                records = np.empty(hi - lo, dtype=EXACT_RECORD)
                records["d0"], records["d1"], records["ordinal"], records["nonempty"] = (
                    chunk[:, 0],
                    chunk[:, 1],
                    ordinals,
                    nonempty,
                )
                _append(
                    directory, f"{stem}.exact", records, records["d0"] % np.uint64(spec.partitions), spec.partitions
                )
    return nonempty_total


# -- reduce ------------------------------------------------------------------------------------------------
def _load(spec: ShuffleSpec, kind: str, partition: int, dtype: np.dtype) -> np.ndarray:
    directory = Path(spec.directory) / "map"
    files = [directory / f"g{group}.{kind}.p{partition}" for group in range(len(spec.groups()))]
    parts = [np.fromfile(path, dtype=dtype) for path in files if path.is_file()]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def _group_starts(*columns: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values (over all columns) in sorted columns, and the end."""
    if not columns[0].size:
        return np.zeros(1, dtype=np.int64)
    change = np.zeros(columns[0].size, dtype=bool)
    change[0] = True
    for column in columns:
        change[1:] |= column[1:] != column[:-1]
    return np.append(np.flatnonzero(change), columns[0].size)


def reduce_partition(spec: ShuffleSpec, partition: int) -> str:
    """Decides this partition's exact copies and near-duplicate candidates; writes them to ``reduce/``."""
    out = Path(spec.directory) / "reduce" / f"p{partition}.npz"
    if out.is_file():
        return str(out)
    exact_ordinal, exact_partner, copies_nonempty = _reduce_exact(_load(spec, "exact", partition, EXACT_RECORD))
    near_ordinal, near_partner = (np.empty(0, np.int64),) * 2
    if spec.near:
        near_ordinal, near_partner = _reduce_near(spec, _load(spec, "near", partition, BAND_RECORD))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            exact_ordinal=exact_ordinal,
            exact_partner=exact_partner,
            copies_nonempty=np.int64(copies_nonempty),
            near_ordinal=near_ordinal,
            near_partner=near_partner,
        )
    return str(out)


def _reduce_exact(records: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    records = records[np.lexsort((records["ordinal"], records["d1"], records["d0"]))]
    starts = _group_starts(records["d0"], records["d1"])
    sizes = np.diff(starts)
    first = np.repeat(records["ordinal"][starts[:-1]], sizes)
    copy = records["ordinal"] != first
    return records["ordinal"][copy], first[copy], int(records["nonempty"][copy].sum())


def _reduce_near(spec: ShuffleSpec, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    records = records[np.lexsort((records["ordinal"], records["key"]))]
    starts = _group_starts(records["key"])
    sizes = np.diff(starts)
    buckets = [(int(s), int(n)) for s, n in zip(starts[:-1], sizes) if n > 1]
    ordinals, partners = [], []
    batch: list[tuple[np.ndarray, np.ndarray]] = []  # (member ordinals, member digests) per bucket
    rows = 0
    for start, size in buckets:
        members = records[start : start + size]
        if spec.dedup.exact:  # a copy of an earlier member takes no part (see the module's docstring)
            digests = members[["d0", "d1"]]
            _, first = np.unique(digests, return_index=True)
            members = members[np.sort(first)]
            if members.size < 2:
                continue
        batch.append(members["ordinal"])
        rows += members.size
        if rows >= VERIFY_ROWS:
            _verify(spec, batch, ordinals, partners)
            batch, rows = [], 0
    _verify(spec, batch, ordinals, partners)
    if not ordinals:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(ordinals), np.concatenate(partners)


def read_signatures(spec: ShuffleSpec, ordinals: np.ndarray) -> np.ndarray:
    """Signature rows of the given (sorted, unique) ordinals, read from the documents stage's ``.sig`` files."""
    near = spec.dedup.near
    dtype = _permutations(near.num_perm, near.seed, near.scheme).dtype
    out = np.empty((ordinals.size, near.num_perm), dtype=dtype)
    inputs, rows = spec.rows(ordinals)
    bounds = _group_starts(inputs)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        table = np.memmap(spec.signatures[inputs[lo]], dtype=dtype, mode="r").reshape(-1, near.num_perm)
        out[lo:hi] = table[rows[lo:hi]]
    return out


def _verify(spec: ShuffleSpec, batch: list[np.ndarray], ordinals: list, partners: list) -> None:
    """For each bucket's members (ascending ordinals): each member's earliest earlier member with estimated
    Jaccard >= threshold."""
    if not batch:
        return
    needed = np.unique(np.concatenate(batch))
    table = read_signatures(spec, needed)
    num_perm, threshold = spec.dedup.near.num_perm, spec.dedup.near.threshold
    found_ordinals, found_partners = [], []
    for members in batch:
        sigs = table[np.searchsorted(needed, members)]
        for j in range(1, members.size):
            hits = np.flatnonzero(estimated_jaccard(sigs[:j], sigs[j], num_perm) >= threshold)
            if hits.size:
                found_ordinals.append(members[j])
                found_partners.append(members[hits[0]])
    ordinals.append(np.asarray(found_ordinals, dtype=np.int64))
    partners.append(np.asarray(found_partners, dtype=np.int64))


# -- finalize ----------------------------------------------------------------------------------------------
def merge_partitions(paths: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(removed ordinals ascending, their partner, kind: 0 exact / 1 near, copies with shingles) over all
    partitions: a copy's exact partner; any other document's smallest near partner over all its buckets."""
    exact_o, exact_p, near_o, near_p, copies_nonempty = [], [], [], [], 0
    for path in paths:
        with np.load(path) as data:
            exact_o.append(data["exact_ordinal"])
            exact_p.append(data["exact_partner"])
            near_o.append(data["near_ordinal"])
            near_p.append(data["near_partner"])
            copies_nonempty += int(data["copies_nonempty"])
    exact_o, exact_p = (
        np.concatenate(exact_o or [np.empty(0, np.int64)]),
        np.concatenate(exact_p or [np.empty(0, np.int64)]),
    )
    near_o, near_p = (
        np.concatenate(near_o or [np.empty(0, np.int64)]),
        np.concatenate(near_p or [np.empty(0, np.int64)]),
    )
    order = np.lexsort((near_p, near_o))
    near_o, near_p = near_o[order], near_p[order]
    first = np.ones(near_o.size, dtype=bool)
    first[1:] = near_o[1:] != near_o[:-1]
    near_o, near_p = near_o[first], near_p[first]
    # A copy never has a near partner (copies take no part in the buckets), so the two sets are disjoint.
    ordinal = np.concatenate([exact_o, near_o])
    partner = np.concatenate([exact_p, near_p])
    kind = np.concatenate([np.zeros(exact_o.size, np.int8), np.ones(near_o.size, np.int8)])
    order = np.argsort(ordinal, kind="stable")
    return ordinal[order], partner[order], kind[order], copies_nonempty


def surviving_documents(ordinal: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """For each removed document (``ordinal`` ascending), the kept document its chain of partners leads to, by
    pointer jumping over numpy arrays (log of the longest chain passes; no per-document Python objects)."""
    kept = partner.copy()
    while ordinal.size:
        at = np.minimum(np.searchsorted(ordinal, kept), ordinal.size - 1)
        removed = ordinal[at] == kept
        if not removed.any():
            break
        kept[removed] = kept[at[removed]]
    return kept


def locate(jsonl: str, first: int, ordinals: list[int]) -> list[tuple[str, int]]:
    """(source, position) of the given ordinals (ascending) of one input's documents file."""
    wanted = iter(ordinals)
    target = next(wanted, None)
    found = []
    with open(jsonl, encoding="utf-8") as handle:
        for row, line in enumerate(handle):
            if target is None:
                break
            if first + row == target:
                record = json.loads(line)
                found.append((record["source"], record["position"]))
                target = next(wanted, None)
    return found


def locate_many(jobs: list[tuple[str, int, list[int]]]) -> list[list[tuple[str, int]]]:
    """:func:`locate` for each ``(jsonl, first, ordinals)``."""
    return [locate(*job) for job in jobs]


def run_shuffle_dedup(spec: ShuffleSpec, engine, audit_path: Path, show: bool) -> dict:
    """The three steps on ``engine``; writes the audit. Returns ``counts`` (what the single-process path writes
    to ``done.json``) and ``masks`` (each input's keep mask, one at a time)."""
    groups = spec.groups()
    directory = Path(spec.directory)
    with tqdm(total=len(groups), desc="dedup map", unit="group", disable=not show) as bar:
        # The spec goes with the function, which the Ray engine stores once for all the tasks.
        nonempty = engine.run_tasks(partial(map_group, spec), list(enumerate(groups)), directory, bar.update)
    with tqdm(total=spec.partitions, desc="dedup reduce", unit="part", disable=not show) as bar:
        paths = engine.run_tasks(
            partial(reduce_partition, spec), [(p,) for p in range(spec.partitions)], directory, bar.update
        )
    ordinal, partner, kind, copies_nonempty = merge_partitions(paths)
    kept = surviving_documents(ordinal, partner)
    needed = np.unique(np.concatenate([ordinal, partner, kept]))
    owner, _ = spec.rows(needed)
    bounds = _group_starts(owner)
    jobs = [
        (spec.jsonl[owner[lo]], spec.first[owner[lo]], needed[lo:hi].tolist())
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    # A task per inputs_per_task inputs, not per input: thousands of tiny tasks cost more than their reads.
    batches = [(jobs[i : i + spec.inputs_per_task],) for i in range(0, len(jobs), spec.inputs_per_task)]
    with tqdm(total=len(batches), desc="dedup audit", unit="task", disable=not show) as bar:
        found = engine.run_tasks(locate_many, batches, directory, bar.update)
    location = dict(zip(needed.tolist(), (where for batch in found for part in batch for where in part)))
    with atomic_path(audit_path) as tmp, open(tmp, "w") as audit:
        for o, p, k, survivor_of in zip(ordinal.tolist(), partner.tolist(), kind.tolist(), kept.tolist()):
            _write_audit(audit, location[o], location[survivor_of], location[p], "exact" if k == 0 else "near")
    counts = {"exact": int((kind == 0).sum()), "near": int((kind == 1).sum())}
    if spec.near:
        counts["index_documents"] = int(sum(nonempty)) - (copies_nonempty if spec.dedup.exact else 0)
    return {"counts": counts, "masks": keep_masks(spec, ordinal)}


def keep_masks(spec: ShuffleSpec, removed: np.ndarray) -> Iterator[np.ndarray]:
    """Each input's keep mask, in input order, from the removed ordinals (ascending)."""
    removed_inputs, removed_rows = spec.rows(removed)
    bounds = np.searchsorted(removed_inputs, np.arange(len(spec.jsonl) + 1))
    for i in range(len(spec.jsonl)):
        mask = np.ones(spec.first[i + 1] - spec.first[i], dtype=bool)
        mask[removed_rows[bounds[i] : bounds[i + 1]]] = False
        yield mask
