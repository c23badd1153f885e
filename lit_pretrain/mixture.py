"""A weighted mixture of prepared datasets ("sources"), optionally in phases (a curriculum), as one exact,
resumable stream of training windows.

The stream is a sequence of global sample positions 0, 1, 2, ... (the same on every rank; rank ``r`` of ``W``
data-parallel ranks takes positions ``r, r + W, ...``, so each global batch is ``batch_size x W`` consecutive
positions). Position ``p`` draws its source from the weights of the phase it falls in, with a uniform number fixed
by ``(seed, p)`` alone (drawn a block of positions at a time): the same config gives the same sequence, whatever
the number of ranks or workers, and a resumed run needs only where it was. Within a source, its ``k``-th draw
takes window ``k mod n`` of that source's own permutation for epoch ``k div n`` (``n``: the source's windows), so
a small source that runs out starts its next epoch while the others go on.

The state of the stream at a position is that position and how many windows each source has given so far: the
loader saves it in checkpoints (:class:`MixtureDataLoader`), and a resumed run continues with exactly the windows
the uninterrupted run would have taken.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, DistributedSampler

from lit_pretrain.errors import ConfigError
from lit_pretrain.windows import TrainLoader, WindowDataset, check_layout

SOURCE_KEYS = ("name", "dataset_dir", "prepare_config", "weight")
PHASE_KEYS = ("start_step", "weights")
# Source names become metric names (val/<name>/loss) and directory-safe labels.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Positions whose uniform numbers are drawn together: one generator per block, so any position's draw is cheap.
BLOCK = 4096


@dataclass(frozen=True)
class Source:
    """One prepared dataset of a mixture (``data.sources[i]``)."""

    name: str
    dataset_dir: Path
    prepare_config: str | None
    weight: float


@dataclass(frozen=True)
class Phase:
    """From optimizer step ``start_step`` on, sources are drawn with ``weights`` (one per source, in order)."""

    start_step: int
    weights: tuple[float, ...]


def _mapping(entry, key: str, keys: tuple[str, ...]) -> dict:
    """``entry`` when it is a mapping of only ``keys``, else one line naming ``key``."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{key} is a {type(entry).__name__}; give a mapping with keys {', '.join(keys)}")
    unknown = sorted(set(entry) - set(keys))
    if unknown:
        raise ConfigError(f"{key} has unknown key '{unknown[0]}'; the keys are {', '.join(keys)}")
    return entry


def _is_weight(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def parse_sources(sources: list) -> list[Source]:
    """``data.sources`` as :class:`Source` objects; one line naming the key for anything wrong."""
    if not isinstance(sources, list) or not sources:
        raise ConfigError("data.sources must be a non-empty list of {name, dataset_dir, prepare_config, weight}")
    parsed: list[Source] = []
    for index, entry in enumerate(sources):
        key = f"data.sources[{index}]"
        entry = _mapping(entry, key, SOURCE_KEYS)
        for required in ("name", "dataset_dir"):
            if not entry.get(required):
                raise ConfigError(f"{key} has no {required}; every source needs a name and a dataset_dir")
        name = str(entry["name"])
        if not NAME.match(name) or name == "all":
            raise ConfigError(
                f"{key}.name '{name}' must be letters, digits, '_', '.' or '-' (it names metrics such as "
                f"val/<name>/loss) and not 'all'"
            )
        if name in (source.name for source in parsed):
            raise ConfigError(f"{key}.name '{name}' is used twice; give every source its own name")
        weight = entry.get("weight", 1.0)
        if not _is_weight(weight):
            raise ConfigError(f"{key}.weight {weight!r} ('{name}') must be a number >= 0, e.g. 0.2")
        parsed.append(Source(name, Path(entry["dataset_dir"]), entry.get("prepare_config"), float(weight)))
    if not any(source.weight > 0 for source in parsed):
        raise ConfigError("data.sources: every weight is 0; give at least one source a weight > 0")
    return parsed


def parse_phases(phases: list | None, sources: list[Source]) -> list[Phase]:
    """``data.phases`` as :class:`Phase` objects, with the sources' own weights before the first phase starts (and
    as the only phase when there are none). A phase's ``weights`` name sources; one it leaves out gets 0."""
    names = [source.name for source in sources]
    base = Phase(0, tuple(source.weight for source in sources))
    if not phases:
        return [base]
    if not isinstance(phases, list):
        raise ConfigError("data.phases must be a list of {start_step, weights: {source name: weight}}")
    parsed: list[Phase] = []
    for index, entry in enumerate(phases):
        key = f"data.phases[{index}]"
        entry = _mapping(entry, key, PHASE_KEYS)
        start = entry.get("start_step")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ConfigError(f"{key}.start_step {start!r} must be an optimizer step >= 0")
        if parsed and start <= parsed[-1].start_step:
            raise ConfigError(
                f"{key}.start_step {start} is not after data.phases[{index - 1}].start_step "
                f"{parsed[-1].start_step}; list the phases in order of their start steps"
            )
        weights = entry.get("weights")
        if not isinstance(weights, dict) or not weights:
            raise ConfigError(f"{key}.weights must map source names to weights, e.g. {{{names[0]}: 1.0}}")
        for name, weight in weights.items():
            if name not in names:
                raise ConfigError(f"{key}.weights names '{name}', which is not a source; the sources are {names}")
            if not _is_weight(weight):
                raise ConfigError(f"{key}.weights.{name} {weight!r} must be a number >= 0")
        if not any(weight > 0 for weight in weights.values()):
            raise ConfigError(f"{key}.weights are all 0; give at least one source a weight > 0")
        parsed.append(Phase(start, tuple(float(weights.get(name, 0.0)) for name in names)))
    return parsed if parsed[0].start_step == 0 else [base, *parsed]


class MixtureStream:
    """Which source each global position draws from and which of its windows it takes (see the module doc).

    Args:
        sizes: Training windows of each source.
        seed: ``data.seed``.
        phases: The phases in order; ``samples_per_step`` converts their start steps into positions.
        samples_per_step: Windows per optimizer step over all data-parallel ranks (batch x ranks x accumulation).
    """

    def __init__(self, sizes: list[int], seed: int, phases: list[Phase], samples_per_step: int) -> None:
        self.sizes, self.seed = [int(n) for n in sizes], int(seed)
        self.phase_starts = np.array([phase.start_step * samples_per_step for phase in phases], dtype=np.int64)
        # Cumulative probabilities per phase; a source's last edge is exactly 1 so that u < 1 always lands.
        weights = np.array([phase.weights for phase in phases], dtype=np.float64)
        self.cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
        self.cumulative[:, -1] = 1.0
        self._block: tuple[int, np.ndarray] | None = None
        self._permutations: dict[tuple[int, int], np.ndarray] = {}

    def phase_at(self, position: int) -> int:
        """Index of the phase position ``position`` falls in."""
        return int(np.searchsorted(self.phase_starts, position, side="right") - 1)

    def _uniforms(self, block: int) -> np.ndarray:
        if self._block is None or self._block[0] != block:
            self._block = (block, np.random.default_rng([self.seed, 0x6D6978, block]).random(BLOCK))
        return self._block[1]

    def sources(self, start: int, stop: int) -> np.ndarray:
        """The source index of every position in ``[start, stop)``."""
        out = np.empty(stop - start, dtype=np.int64)
        position = start
        while position < stop:
            block, offset = divmod(position, BLOCK)
            end = min(stop, (block + 1) * BLOCK)
            # The phase can change inside a block: split the block at phase starts.
            phase = self.phase_at(position)
            if phase + 1 < len(self.phase_starts):
                end = min(end, int(self.phase_starts[phase + 1]))
            uniforms = self._uniforms(block)[offset : offset + end - position]
            out[position - start : end - start] = np.searchsorted(self.cumulative[phase], uniforms, side="right")
            position = end
        return out

    def permutation(self, source: int, epoch: int) -> np.ndarray:
        key = (source, epoch)
        if key not in self._permutations:
            if len(self._permutations) > 2 * len(self.sizes):  # only the current (and next) epochs are in use
                self._permutations.clear()
            self._permutations[key] = np.random.default_rng([self.seed, 1 + source, epoch]).permutation(
                self.sizes[source]
            )
        return self._permutations[key]

    def windows(self, start: int, stop: int, taken: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source, window within the source) of every position in ``[start, stop)`` given ``taken``, the windows
        each source gave before ``start``; and ``taken`` after ``stop``."""
        sources = self.sources(start, stop)
        local = np.empty_like(sources)
        after = taken.copy()
        for source in np.unique(sources):
            where = np.flatnonzero(sources == source)
            draws = taken[source] + np.arange(len(where), dtype=np.int64)  # the k-th draws of this source
            size = self.sizes[source]
            for epoch in np.unique(draws // size):
                in_epoch = draws // size == epoch
                local[where[in_epoch]] = self.permutation(int(source), int(epoch))[draws[in_epoch] % size]
            after[source] += len(where)
        return sources, local, after

    def advance(self, start: int, stop: int, taken: np.ndarray) -> np.ndarray:
        """``taken`` after positions ``[start, stop)`` (without looking up their windows)."""
        return taken + np.bincount(self.sources(start, stop), minlength=len(self.sizes))


class MixtureDataset(Dataset):
    """The sources' window datasets side by side: global index ``offsets[s] + i`` is window ``i`` of source
    ``s``. Keeps the single dataset's interface (``locate``, ``dtype``, ``seq_len``, ``id_check``)."""

    def __init__(self, datasets: list[WindowDataset]) -> None:
        self.datasets = datasets
        self.offsets = np.concatenate([[0], np.cumsum([len(d) for d in datasets])]).astype(np.int64)
        self._starts = self.offsets[:-1].tolist()  # a Python list: bisect on a few sources beats a numpy call
        self.dtype, self.seq_len = datasets[0].dtype, datasets[0].seq_len
        self.id_check = datasets[0].id_check

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _split(self, index: int) -> tuple[int, int]:
        source = bisect.bisect_right(self._starts, index) - 1
        return source, index - self._starts[source]

    def locate(self, index: int) -> tuple[Path, int]:
        source, local = self._split(index)
        return self.datasets[source].locate(local)

    def __getitem__(self, index: int):
        source, local = self._split(index)
        item = self.datasets[source][local]
        if "window" in item:  # the global index, so the id check's error finds the shard through locate
            item["window"] += self._starts[source]
        return item


class MixtureSampler(DistributedSampler):
    """This rank's share of the stream from a start position and the windows each source gave before it, up to
    the end of the current (Lightning) epoch.

    An epoch is ``epoch_length`` positions (the sources' windows together, rounded down to whole global batches):
    it only tells Lightning how many batches an epoch has; the stream itself runs on across epochs. Subclasses
    ``DistributedSampler`` so that Lightning does not wrap it."""

    def __init__(
        self, stream: MixtureStream, offsets: np.ndarray, epoch_length: int, num_replicas: int = 1, rank: int = 0
    ) -> None:
        self.stream, self.offsets = stream, offsets
        self.epoch_length, self.num_replicas, self.rank = epoch_length, num_replicas, rank
        self.epoch = 0
        self.start = 0
        self.taken = np.zeros(len(stream.sizes), dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # the position is the loader's: it is where the loop stopped consuming

    def __iter__(self) -> Iterator[int]:
        position, taken = self.start, self.taken.copy()
        stop = (self.epoch + 1) * self.epoch_length
        chunk = BLOCK * self.num_replicas
        while position < stop:
            end = min(stop, position + chunk)
            sources, local, taken = self.stream.windows(position, end, taken)
            indices = self.offsets[sources] + local
            yield from indices[self.rank :: self.num_replicas].tolist()
            position = end

    def __len__(self) -> int:
        return self.epoch_length // self.num_replicas


class MixtureDataLoader(TrainLoader):
    """The training loader of a mixture, whose ``state_dict`` is the stream's state where the loop stopped
    consuming: the position, each source's windows taken (and so its epoch and place in it), and the layout.

    Consumption is counted by the data module's ``on_after_batch_transfer`` (:meth:`mark_consumed`), not when a
    batch is produced: the loader and Lightning read ahead."""

    sampler: MixtureSampler

    def __init__(self, dataset: MixtureDataset, sampler: MixtureSampler, names: list[str], accumulation: int = 1,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(dataset, sampler=sampler, drop_last=True, **kwargs)
        self.names, self.accumulation = names, accumulation
        self.position = 0
        self.taken = np.zeros(len(names), dtype=np.int64)

    def __iter__(self):
        self.sampler.start, self.sampler.taken = self.position, self.taken.copy()
        return super().__iter__()

    def mark_consumed(self, global_samples: int) -> None:
        stop = self.position + global_samples
        self.taken = self.sampler.stream.advance(self.position, stop, self.taken)
        self.position = stop

    def progress(self) -> dict:
        """The phase of the last batch the loop consumed, and the windows each source has given so far."""
        return {
            "phase": self.sampler.stream.phase_at(max(self.position - 1, 0)),
            "windows": dict(zip(self.names, self.taken.tolist())),
        }

    def state_dict(self) -> dict:
        sizes = self.sampler.stream.sizes
        return {
            "epoch": self.sampler.epoch,
            "position": self.position,
            "sources": {
                name: {"taken": int(taken), "epoch": int(taken) // size, "consumed": int(taken) % size}
                for name, taken, size in zip(self.names, self.taken, sizes)
            },
            **self.layout,
        }

    def load_state_dict(self, state: dict) -> None:
        check_layout(state, self.layout)
        missing = [name for name in self.names if name not in state.get("sources", {})]
        if "position" not in state or missing:
            raise ConfigError(
                "--ckpt_path: the checkpoint's loader state is not this mixture's "
                f"(no position for {missing or 'any source'}); start a new run"
            )
        self.sampler.epoch = state["epoch"]
        self.position = int(state["position"])
        self.taken = np.array([state["sources"][name]["taken"] for name in self.names], dtype=np.int64)
