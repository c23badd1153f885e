"""Windows over prepared token shards, their seeded resumable order, and the loader that saves its position.

Window ``i`` of a split is ``seq_len`` consecutive tokens; windows tile each shard without overlap (the tail of a
shard shorter than ``seq_len`` is unused). Training visits windows in a permutation drawn from
``(seed, epoch)``; the position in that permutation (epoch and global sample index, identical on every rank) is
what :class:`ResumableDataLoader` saves in checkpoints, so a resumed run continues with the next unseen window.
The data module (:mod:`lit_pretrain.data`) builds these from a prepared dataset directory.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from data_prep.tokens.shards import read_tokens, shard_token_count
from lit_pretrain.errors import ConfigError


def pinned_like(batch: dict[str, torch.Tensor], source: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """A transformed batch in page-locked memory when it goes to a CUDA ``device`` and the loader pinned its
    ``source`` (the MLM transform makes new tensors, which would otherwise go to the GPU from ordinary memory,
    with a sync before each copy). Other devices: as it is, without asking CUDA about the memory."""
    if device.type != "cuda" or not source.is_pinned():
        return batch
    return {key: value if value.is_pinned() else value.pin_memory() for key, value in batch.items()}


class WindowDataset(Dataset):
    """Non-overlapping ``seq_len`` windows over a split's shards, read from disk on access."""

    def __init__(self, directory: Path, files: list[str], dtype: str, seq_len: int) -> None:
        self.paths = [Path(directory) / name for name in files]
        self.dtype = np.dtype(dtype)
        self.seq_len = seq_len
        # (vocabulary size, error factory taking the dataset and a window index): set when the shards' ids are not
        # vouched for by a hash check; the loaders then check each batch's largest id in the main process, before
        # it reaches an embedding.
        self.id_check: tuple[int, Callable[[WindowDataset, int], Exception]] | None = None
        missing = next((path for path in self.paths if not path.is_file()), None)
        if missing is not None:
            raise ConfigError(f"'{missing}' is missing (its dataset's manifest lists it); prepare the dataset again")
        windows_per_shard = [shard_token_count(path, self.dtype) // seq_len for path in self.paths]
        # first_window[k] is the global index of shard k's first window (prefix sums).
        self.first_window = np.concatenate([[0], np.cumsum(windows_per_shard)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.first_window[-1])

    def locate(self, index: int) -> tuple[Path, int]:
        """(shard, first token) of window ``index``."""
        shard = int(np.searchsorted(self.first_window, index, side="right") - 1)
        return self.paths[shard], (index - int(self.first_window[shard])) * self.seq_len

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        # A negative index -1-i is window i as padding (EvalWindowSampler): served so every rank runs the same
        # number of batches, never counted in a loss.
        counted = index >= 0
        index = index if counted else -1 - index
        path, start = self.locate(index)
        tokens = read_tokens(path, self.dtype, start, self.seq_len)
        # Inputs only: labels (and any masking) are the objective's business, per batch.
        item = {"input_ids": torch.from_numpy(tokens.astype(np.int64)), "counted": torch.tensor(counted)}
        if self.id_check is not None:  # where each row comes from, to name the shard of a bad id
            item["window"] = torch.tensor(index)
        return item


class ResumableWindowSampler(DistributedSampler):
    """Seeded permutation per epoch, split across ranks by stride, starting at a global sample position.

    Subclasses ``DistributedSampler`` so that Lightning does not wrap it in another distributed sampler.
    ``set_epoch`` (called by Lightning at every epoch start) keeps the position when the epoch is unchanged,
    which is what happens right after a restore.
    """

    def __init__(self, num_windows: int, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.num_windows, self.seed = num_windows, seed
        self.num_replicas, self.rank = num_replicas, rank
        # Every rank must see the same number of samples: drop the tail that does not divide evenly.
        self.total = num_windows - num_windows % num_replicas
        self.epoch = 0
        self.start = 0  # global samples of this epoch already consumed

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.start = epoch, 0

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.epoch)
        return iter(order[self.start + self.rank : self.total : self.num_replicas].tolist())

    def __len__(self) -> int:
        # The whole epoch's length, also right after a restore mid-epoch: Lightning reads it once per fit as the
        # number of batches of *every* epoch (a restored run counts the batches it already took in its own loop
        # state); the length of what is left would make every later epoch that short.
        return self.total // self.num_replicas


class EvalWindowSampler(DistributedSampler):
    """Validation/test windows in order, split across ranks by stride without duplicates in the loss.

    Every rank gets the same number of samples (a sharded model runs collectives in every forward): the ranks
    short of one take a padding window, yielded as ``-1 - index`` so the dataset marks it ``counted: False``.
    Losses over the split are then exact: each window counted once, whatever the number of ranks."""

    def __init__(self, num_windows: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.num_windows, self.num_replicas, self.rank = num_windows, num_replicas, rank
        self.per_rank = -(-num_windows // num_replicas)

    def set_epoch(self, epoch: int) -> None:
        pass

    def __iter__(self) -> Iterator[int]:
        for position in range(self.rank, self.per_rank * self.num_replicas, self.num_replicas):
            yield position if position < self.num_windows else -1 - (position % self.num_windows)

    def __len__(self) -> int:
        return self.per_rank


def ignore_interrupts(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process: a terminal sends SIGINT to the whole process group,
    and a worker that died of it would fail the batch the main process is still finishing before it saves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class CheckedLoader(DataLoader):
    """A DataLoader that checks each batch's largest token id in the main process when its dataset asks for it
    (``WindowDataset.id_check``), and whose workers ignore Ctrl-C."""

    def __init__(self, dataset: Dataset, **kwargs) -> None:
        if kwargs.get("num_workers", 0) > 0:
            kwargs.setdefault("worker_init_fn", ignore_interrupts)
        super().__init__(dataset, **kwargs)

    def __iter__(self):
        batches = super().__iter__()
        check = getattr(self.dataset, "id_check", None)
        return batches if check is None else self._checked(batches, *check)

    def _checked(self, batches, vocab_size: int, error: Callable[[WindowDataset, int], Exception]):
        for batch in batches:
            ids = batch["input_ids"]
            if int(ids.max()) >= vocab_size:  # on the CPU, before the copy: microseconds per batch
                row = int((ids >= vocab_size).any(dim=1).nonzero()[0])
                raise error(self.dataset, int(batch["window"][row]))
            yield batch


class EvalDataLoader(CheckedLoader):
    """The validation/test loader (a plain loader with the id check)."""


class TrainLoader(CheckedLoader):
    """A training loader: it knows its layout (what a saved position counts in; see :func:`check_layout`)."""

    accumulation: int = 1

    @property
    def layout(self) -> dict[str, int]:
        """How this run takes its windows: per process and micro-batch, processes, micro-batches per step."""
        return {
            "batch_size": self.batch_size,
            "processes": self.sampler.num_replicas,
            "accumulation": self.accumulation,
        }


class ResumableDataLoader(TrainLoader):
    """A DataLoader whose ``state_dict`` is the global position of the next unseen sample.

    Lightning saves this state in checkpoints and restores it before iterating (Lightning >= 2.2). Consumption
    is counted by :meth:`PretrainDataModule.on_after_batch_transfer`, i.e. when the training loop takes a batch,
    not when the loader (or Lightning's one-batch prefetch) produces it.
    """

    sampler: ResumableWindowSampler

    def __init__(
        self, dataset: WindowDataset, sampler: ResumableWindowSampler, accumulation: int = 1, **kwargs
    ) -> None:
        super().__init__(dataset, sampler=sampler, drop_last=True, **kwargs)
        self.consumed = 0
        self.accumulation = accumulation

    def __iter__(self):
        self.consumed = self.sampler.start
        return super().__iter__()

    def mark_consumed(self, global_samples: int) -> None:
        self.consumed += global_samples

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "consumed": self.consumed, "seed": self.sampler.seed, **self.layout}

    def load_state_dict(self, state: dict) -> None:
        check_layout(state, self.layout)
        self.sampler.epoch = state["epoch"]
        self.sampler.start = state["consumed"]
        self.consumed = state["consumed"]


def check_layout(saved: dict, now: dict[str, int]) -> None:
    """A checkpoint written by another number of processes resumes at its global sample position when each
    optimizer step still takes the same windows in the same number of micro-batches (batch_size x processes and
    accumulation unchanged): Lightning's loop counts micro-batches per process, and only then does its count mean
    the same windows. Anything else is refused before a step is taken (the CLI checks it before the run directory
    is touched; this loader again when Lightning restores it)."""
    if "processes" not in saved:  # written before the layout was recorded
        return
    if (saved["batch_size"] * saved["processes"], saved["accumulation"]) == (
        now["batch_size"] * now["processes"],
        now["accumulation"],
    ):
        return
    needed = saved["batch_size"] * saved["processes"]
    hint = f" (here: --data.batch_size {needed // now['processes']})" if needed % now["processes"] == 0 else ""
    raise ConfigError(
        f"--ckpt_path: the checkpoint was written with {describe(saved)} and this run takes {describe(now)}; "
        f"resume with batch_size x processes = {needed} and accumulation {saved['accumulation']}{hint}, "
        "or start a new run"
    )


def describe(layout: dict[str, int]) -> str:
    return (
        f"{layout['processes']} process(es) x batch_size {layout['batch_size']} x accumulation {layout['accumulation']}"
    )
