"""The shards stage: the per-input token parts of each split packed, in pipeline order, into the final shards.

The driver plans the shards from the parts' document lengths alone (the same rule as :class:`ShardWriter`: a
shard closes at the first document boundary after it holds ``tokens_per_shard`` tokens), then each shard is
written by its own engine task (in this process on the local engine, in parallel on Ray), reading only its
documents' tokens, a bounded number at a time. So the shards are the same bytes whichever engine writes them.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from data_prep.read.sources import Input
from data_prep.tokens.shards import ShardWriter
from data_prep.workdir import TMP_GLOB

# Documents copied into a shard at a time.
PACK_CHUNK_DOCUMENTS = 65536
# A shard task's own writer never splits its shard further.
_UNBOUNDED = 1 << 62

Segment = tuple[str, int, int]  # (input id, first document, end document) of one input's split part


def plan_shards(parts: dict, inputs: list[Input], split: str, tokens_dir: Path, tokens_per_shard: int) -> list:
    """Each shard of ``split`` as its segments, in order."""
    shards: list[list[Segment]] = []
    shard_tokens = None
    for item in inputs:
        if parts[item.id][split]["documents"] == 0:
            continue
        ends = np.cumsum(np.fromfile(tokens_dir / f"{item.id}.{split}.len", dtype=np.int64))
        first = 0
        while first < len(ends):
            if shard_tokens is None or shard_tokens >= tokens_per_shard:
                shards.append([])
                shard_tokens = 0
            begin = int(ends[first - 1]) if first else 0
            # Documents up to and including the one that fills the shard.
            last = min(int(np.searchsorted(ends, begin + tokens_per_shard - shard_tokens, side="left")), len(ends) - 1)
            shards[-1].append((item.id, first, last + 1))
            shard_tokens += int(ends[last]) - begin
            first = last + 1
    return shards


def write_shard(output: str, split: str, tokens_dir: str, dtype: str, index: int, segments: list[Segment]) -> dict:
    """Writes shard ``index`` of ``split`` (``.bin``, ``.idx``, renamed into place); returns its files, hashes
    and counts."""
    writer = ShardWriter(Path(output), split, np.dtype(dtype), _UNBOUNDED, first_index=index)
    itemsize = np.dtype(dtype).itemsize
    try:
        for input_id, first, end in segments:
            lengths_path = Path(tokens_dir) / f"{input_id}.{split}.len"
            tokens_path = Path(tokens_dir) / f"{input_id}.{split}.bin"
            offset = int(np.fromfile(lengths_path, dtype=np.int64, count=first).sum())  # tokens before the segment
            for lo in range(first, end, PACK_CHUNK_DOCUMENTS):
                hi = min(lo + PACK_CHUNK_DOCUMENTS, end)
                lengths = np.fromfile(lengths_path, dtype=np.int64, count=hi - lo, offset=lo * 8)
                count = int(lengths.sum())
                tokens = np.fromfile(tokens_path, dtype=dtype, count=count, offset=offset * itemsize)
                writer.add(tokens, lengths, 0)
                offset += count
        return writer.close()
    except BaseException:  # a full disk, a kill by Ctrl-C: no half-written shard stays behind, even unnamed
        writer.discard()
        raise


def pack_shards(parts: dict, inputs: list[Input], splits, dtype, tokens_dir: Path, output: Path, config, engine,
                show: bool = False) -> dict:  # fmt: skip
    """Shards stage: plan, then one engine task per shard; the splits' manifest entries."""
    for stale in [*output.glob("*.bin"), *output.glob("*.idx"), *output.glob(TMP_GLOB)]:
        stale.unlink()
    split_info = {}
    for split in splits:
        shards = plan_shards(parts, inputs, split, tokens_dir, config.shards.tokens_per_shard)
        write = partial(write_shard, str(output), split, str(tokens_dir), np.dtype(dtype).name)
        with tqdm(total=len(shards), desc=f"shards {split}", unit="shard", disable=not show) as bar:
            written = engine.run_tasks(write, list(enumerate(shards)), output, bar.update)
        split_info[split] = {
            "files": [name for shard in written for name in shard["files"]],
            "tokens": sum(shard["tokens"] for shard in written),
            "documents": sum(shard["documents"] for shard in written),
            "bytes": sum(parts[item.id][split]["bytes"] for item in inputs),
            "sha256": {name: digest for shard in written for name, digest in shard["sha256"].items()},
        }
    return split_info
