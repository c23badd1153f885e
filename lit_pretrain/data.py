"""The data module: prepared token shards in, fixed-length windows out, in a resumable seeded order (the
windows, samplers and loader themselves are in :mod:`lit_pretrain.windows`).

Window ``i`` of a split is ``seq_len`` consecutive tokens; windows tile each shard without overlap (the tail of a
shard shorter than ``seq_len`` is unused). Training visits windows in a permutation drawn from
``(seed, epoch)``; the position in that permutation (epoch and global sample index, identical on every rank) is
saved in checkpoints, so a resumed run continues with the next unseen window instead of restarting the epoch.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
import yaml

from data_prep.cli_errors import yaml_problem
from data_prep.config import DataPrepConfig
from data_prep.errors import DataPrepError
from data_prep.pipeline import prepare
from data_prep.tokens.shards import MANIFEST_FILE, read_manifest, read_tokens
from data_prep.tokens.tokenizer import load_tokenizer, planned_token_ids, role_token_ids
from data_prep.tokens.verify import content_fingerprint, record, verify
from lit_pretrain.errors import ConfigError
from lit_pretrain.windows import (
    EvalDataLoader,
    EvalWindowSampler,
    ResumableDataLoader,
    ResumableWindowSampler,
    WindowDataset,
)

NEW_RUN = "or start a new run in another run directory (--trainer.logger.init_args.name NEW, without --ckpt_path)"


class PretrainDataModule(L.LightningDataModule):
    """Serves windows from a prepared dataset directory, preparing it first when it has no manifest.

    Args:
        dataset_dir: Directory with ``manifest.json`` and shards (written by ``python -m data_prep``).
        prepare_config: data_prep YAML used to build ``dataset_dir`` when it is missing (its ``output_dir`` is
            replaced by ``dataset_dir``). None: the dataset must already exist.
        seq_len: Tokens per training window; linked to ``model.seq_len``.
        batch_size: Windows per micro-batch on each device.
        global_batch_size: Windows per optimizer step over all devices and nodes. When set, gradient accumulation
            is derived from it: ``global_batch_size / (batch_size x devices x nodes)``, which must divide evenly.
        num_workers: DataLoader worker processes (0 reads in the main process; reads are cheap).
        seed: Seed of the per-epoch shuffle of training windows.
        tokens_per_parameter: Train on this many tokens per model parameter (Chinchilla: about 20) instead of
            ``trainer.max_steps``: the step count is derived from the exact parameter count and the global batch,
            printed at the start of fit, and replaces ``trainer.max_steps``. ``estimate`` shows the same figures.
        prepare_data_per_node: Where a missing dataset is prepared on a multi-node run. False (the default): by
            global rank 0 only, while the other nodes wait, which is right when ``dataset_dir`` is on storage every
            node sees (N nodes preparing one shared directory would race). True: by local rank 0 of every node,
            for node-local disks (Lightning's ``prepare_data_per_node``). One node: the same either way.
        pin_memory: Batches in page-locked host memory, so their copy to the GPU runs asynchronously (from
            ordinary memory CUDA waits for the device's queued work before each copy: a host-device sync every
            step). None (the default): on when the Trainer runs on a CUDA device.
        verify: How the shards are checked against their manifest at ``setup``, before any step. ``size``: every
            shard and index is there with the length the manifest and index say (a stat per file), and each batch's
            largest token id is checked against the vocabulary. ``hash`` (the default): the sizes, and each file's
            SHA-256 too, once per dataset: global rank 0 of the first run that reads it hashes (the other ranks
            wait) and records it in ``verified.json`` beside the manifest, so later runs of the same files skip it
            (about 1 s per GB; see docs/benchmarks.md). ``off``: no check of the files (the id check stays).
    """

    def __init__(
        self,
        dataset_dir: str = "data/stdlib",
        prepare_config: str | None = "configs/data/stdlib.yaml",
        seq_len: int = 256,
        batch_size: int = 32,
        global_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 1234,
        tokens_per_parameter: float | None = None,
        prepare_data_per_node: bool = False,
        pin_memory: bool | None = None,
        verify: Literal["size", "hash", "off"] = "hash",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for key, value in (("seq_len", seq_len), ("batch_size", batch_size)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(
                    f"data.{key} {value} must be a positive number of {'tokens' if key == 'seq_len' else 'windows'}, e.g. --data.{key} {256 if key == 'seq_len' else 32}"
                )
        if num_workers < 0:
            raise ConfigError(f"data.num_workers {num_workers} must be 0 (read in the main process) or more")
        if verify not in ("size", "hash", "off"):
            raise ConfigError(f"data.verify '{verify}' is not one of size, hash, off")
        self.verify = verify
        self._sizes_checked = False
        self._hash_result: str | None | bool = False  # False: not run yet; None: passed or not this rank's job
        self.prepare_data_per_node = prepare_data_per_node  # read by Lightning to choose who calls prepare_data
        self.pin_memory = pin_memory
        self.dataset_dir = Path(dataset_dir)
        self.prepare_config = prepare_config
        self.seq_len, self.batch_size, self.num_workers, self.seed = seq_len, batch_size, num_workers, seed
        self.global_batch_size = global_batch_size
        if tokens_per_parameter is not None and not tokens_per_parameter > 0:
            raise ConfigError(f"data.tokens_per_parameter {tokens_per_parameter} must be positive, e.g. 20")
        self.tokens_per_parameter = tokens_per_parameter
        self.manifest: dict | None = None
        self._train_loader: ResumableDataLoader | None = None
        # Known now (not in setup) so LightningCLI can link them to the model at instantiation.
        self.vocab_size = self._planned_vocab_size()
        self.token_ids = self._planned_token_ids()

    # -- preparation ---------------------------------------------------------------------------------------
    def _prep_config(self) -> DataPrepConfig:
        path = Path(self.prepare_config)
        if not path.is_file():
            raise ConfigError(
                f"data.prepare_config '{path}' not found and '{self.dataset_dir / MANIFEST_FILE}' does not exist; "
                "pass --data.prepare_config or prepare the dataset first with python -m data_prep"
            )
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(
                f"data.prepare_config '{path}' is not valid YAML ({yaml_problem(error)}); fix the file"
            ) from None
        if not isinstance(values, dict):
            raise ConfigError(
                f"data.prepare_config '{path}' holds a {type(values).__name__}, not a mapping of data_prep keys"
            )
        values["output_dir"] = str(self.dataset_dir)
        return DataPrepConfig.from_dict(values)

    def _planned_vocab_size(self) -> int:
        if (self.dataset_dir / MANIFEST_FILE).is_file():
            return int(read_manifest(self.dataset_dir)["vocab_size"])
        if self.prepare_config is None:
            raise ConfigError(f"'{self.dataset_dir / MANIFEST_FILE}' does not exist and data.prepare_config is null")
        tokenizer = self._prep_config().tokenizer
        if tokenizer.pretrained is not None:  # the model gets exactly the pretrained tokenizer's size
            return load_tokenizer(tokenizer.pretrained).get_vocab_size()
        return tokenizer.vocab_size

    def _planned_token_ids(self) -> dict[str, int]:
        """The tokenizer's special ids (``end_of_text_id``, ``<role>_id``), from the prepared dataset or, before
        it exists, from the data_prep config (fixed by the tokenizer kind, or read from a pretrained one)."""
        try:
            if (self.dataset_dir / MANIFEST_FILE).is_file():
                return manifest_token_ids(self.dataset_dir, read_manifest(self.dataset_dir))
            return planned_token_ids(self._prep_config().tokenizer)
        except DataPrepError as error:
            raise ConfigError(str(error)) from error

    def accumulation(self, devices: int, nodes: int, configured: int = 1) -> int:
        """Micro-batches per optimizer step that make ``global_batch_size`` on ``devices x nodes``
        (``configured``, the Trainer's ``accumulate_grad_batches``, when no global batch size is set)."""
        if self.global_batch_size is None:
            return configured
        per_step = self.batch_size * devices * nodes
        if self.global_batch_size <= 0 or self.global_batch_size % per_step:
            raise ConfigError(
                f"data.global_batch_size {self.global_batch_size} is not a multiple of data.batch_size "
                f"{self.batch_size} x {devices} devices x {nodes} nodes = {per_step}; choose a multiple of {per_step} "
                "or change data.batch_size"
            )
        steps = self.global_batch_size // per_step
        if configured not in (1, steps):
            raise ConfigError(
                f"trainer.accumulate_grad_batches {configured} disagrees with data.global_batch_size "
                f"{self.global_batch_size} (which needs {steps} on {devices} devices x {nodes} nodes); drop one of them"
            )
        return steps

    def horizon(self, parameters: int, processes: int, accumulation: int) -> tuple[float, int, int] | None:
        """(tokens, steps, tokens per step) that ``tokens_per_parameter`` asks for, or None when it is unset."""
        if self.tokens_per_parameter is None:
            return None
        per_step = self.batch_size * self.seq_len * processes * accumulation
        tokens = self.tokens_per_parameter * parameters
        return tokens, max(1, math.ceil(tokens / per_step)), per_step

    def apply_global_batch_size(self, trainer: L.Trainer) -> None:
        """Set the Trainer's gradient accumulation from ``global_batch_size`` (the CLI does this before fit starts)."""
        trainer.accumulate_grad_batches = self.accumulation(
            trainer.num_devices, trainer.num_nodes, trainer.accumulate_grad_batches
        )

    def prepare_data(self) -> None:
        """Runs before ``setup`` on global rank 0 (or on local rank 0 of each node with ``prepare_data_per_node``;
        the other processes wait at a barrier): build the dataset if it is not there yet."""
        if self.trainer is not None:  # a Trainer driven from Python: still refuse a bad batch size before any work
            self.apply_global_batch_size(self.trainer)
        if (self.dataset_dir / MANIFEST_FILE).is_file() or self.prepare_config is None:
            return
        manifest = prepare(self._prep_config())
        # Its shards were hashed as they were written: that is this dataset's verification.
        record(self.dataset_dir, manifest)

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None:
            self.apply_global_batch_size(self.trainer)
        if self.manifest is not None:
            return
        try:
            self.manifest = read_manifest(self.dataset_dir)
        except DataPrepError as error:
            node = self.trainer.node_rank if self.trainer is not None else 0
            if node > 0 and not self.prepare_data_per_node and self.prepare_config is not None:
                raise ConfigError(
                    f"node {node} does not see '{self.dataset_dir / MANIFEST_FILE}' that node 0 prepared; put "
                    "data.dataset_dir on storage every node sees, or pass --data.prepare_data_per_node true"
                ) from error
            raise ConfigError(str(error)) from error
        if self.manifest["vocab_size"] != self.vocab_size:
            raise ConfigError(
                f"'{self.dataset_dir / MANIFEST_FILE}' was prepared with vocab_size {self.manifest['vocab_size']} but "
                f"this run was configured for {self.vocab_size}; restart so both agree"
            )
        prepared_ids = manifest_token_ids(self.dataset_dir, self.manifest)
        if prepared_ids != self.token_ids:
            raise ConfigError(
                f"'{self.dataset_dir / MANIFEST_FILE}' was prepared with special token ids {prepared_ids} but this "
                f"run was configured for {self.token_ids}; restart so both agree"
            )
        self.verify_dataset(collective=True)
        self.train_dataset = self._windows("train")
        self.val_dataset = self._windows("val")
        self.test_dataset = self._windows(self.test_split)

    # -- verification of the files, and of what a resumed run continues --------------------------------------
    def verify_dataset(self, collective: bool = False, rank: int | None = None) -> None:
        """Check the shards against the manifest (``verify``; see the class doc) and stop with one line naming the
        file on a mismatch. Hashing is the job of one process (global rank 0, or local rank 0 of each node with
        ``prepare_data_per_node``): ``rank`` is this process's rank in that sense (by default the attached
        Trainer's); with ``collective`` every rank then learns its verdict, so all stop together. The CLI calls
        this before the run directory is touched (passing the rank: LightningCLI attaches the data module to the
        Trainer only in ``fit``), ``setup`` again with ``collective`` (each check runs once per process)."""
        manifest = self.manifest if self.manifest is not None else read_manifest(self.dataset_dir)
        if self.verify == "off":
            return
        trainer = self.trainer
        if self._hash_result is False:
            if rank is None:
                rank = 0 if trainer is None else self.hashing_rank(trainer)
            try:
                hashed = verify(self.dataset_dir, manifest, hashes=self.verify == "hash" and rank == 0)
                self._hash_result = None
            except DataPrepError as error:
                self._hash_result = str(error)
                hashed = None
            if hashed is not None:
                read, seconds, recorded = hashed
                note = (
                    "recorded in verified.json: later runs skip it" if recorded else "not recorded: read-only or full"
                )
                sys.stderr.write(
                    f"lit_pretrain: verified the SHA-256 of {self.dataset_dir}'s {read / 1e6:,.1f} MB of shards in "
                    f"{seconds:.2f} s ({note})\n"
                )
        message = self._hash_result
        if collective and trainer is not None and trainer.world_size > 1 and torch.distributed.is_initialized():
            verdicts = [None] * trainer.world_size
            torch.distributed.all_gather_object(verdicts, message)  # the others wait for the hashing rank here
            message = next((verdict for verdict in verdicts if verdict), None)
        if message:
            raise ConfigError(message)

    def hashing_rank(self, trainer: L.Trainer) -> int:
        """This process's rank among those that may hash: 0 hashes (see :meth:`verify_dataset`)."""
        return trainer.local_rank if self.prepare_data_per_node else trainer.global_rank

    def data_order(self) -> dict:
        """What decides which windows a step takes, saved in checkpoints and compared on resume: the dataset (a
        digest of its shards' hashes in the manifest: the same data prepared again resumes), the window length and
        the seed of the permutation."""
        manifest = self.manifest if self.manifest is not None else read_manifest(self.dataset_dir)
        return {
            "dataset_fingerprint": content_fingerprint(manifest),
            "dataset_dir": str(self.dataset_dir),
            "seq_len": self.seq_len,
            "seed": self.seed,
        }

    def check_data_order(self, saved: dict, source: str) -> None:
        """Refuse to continue a run whose saved data order (:meth:`data_order` of the run that wrote ``source``)
        is not this config's, with one line naming the key, both values and the two ways on."""
        now = self.data_order()
        for key in ("seq_len", "seed"):
            if key in saved and saved[key] != now[key]:
                why = (
                    "its saved position counts windows of that length"
                    if key == "seq_len"
                    else "it seeds the window order"
                )
                raise ConfigError(
                    f"{source} was trained with data.{key} {saved[key]} and this run has {now[key]} ({why}); resume "
                    f"with --data.{key} {saved[key]}, {NEW_RUN}"
                )
        theirs = saved.get("dataset_fingerprint")
        if theirs is not None and now["dataset_fingerprint"] is not None and theirs != now["dataset_fingerprint"]:
            raise ConfigError(
                f"{source} was trained on the dataset in '{saved.get('dataset_dir')}' (fingerprint {theirs}) and "
                f"data.dataset_dir '{self.dataset_dir}' holds another (fingerprint {now['dataset_fingerprint']}); "
                f"resume with --data.dataset_dir {saved.get('dataset_dir')} (or that dataset prepared again), {NEW_RUN}"
            )

    def layout(self, trainer: L.Trainer) -> dict[str, int]:
        """How this run takes its windows (what the saved position counts in): see ``windows.check_layout``."""
        return {
            "batch_size": self.batch_size,
            "processes": trainer.world_size,
            "accumulation": trainer.accumulate_grad_batches,
        }

    def state_dict(self) -> dict:
        return {"data_order": self.data_order()} if self.manifest is not None else {}

    def load_state_dict(self, state: dict) -> None:
        """A run driven from Python resumes through Lightning's restore: the same check as the CLI's (which runs it
        earlier, before anything in the run directory is written)."""
        if state.get("data_order"):
            self.check_data_order(state["data_order"], "the checkpoint")

    def _windows(self, split: str) -> WindowDataset:
        info = self.manifest["splits"][split]
        dataset = WindowDataset(self.dataset_dir, info["files"], self.manifest["dtype"], self.seq_len)
        if self.verify != "hash":  # ids are not vouched for by a hash: check each batch's largest one
            dataset.id_check = (int(self.manifest["vocab_size"]), self._out_of_range)
        if len(dataset) == 0:
            raise ConfigError(
                f"the {split} split of '{self.dataset_dir}' has {info['tokens']} tokens, fewer than one window of "
                f"data.seq_len={self.seq_len}; lower --data.seq_len or add data"
            )
        return dataset

    def _out_of_range(self, dataset: WindowDataset, window: int) -> ConfigError:
        """The error for window ``window`` holding an id >= the vocabulary, naming the shard and the token."""
        vocab = int(self.manifest["vocab_size"])
        path, start = dataset.locate(window)
        tokens = read_tokens(path, dataset.dtype, start, dataset.seq_len)
        position = int(np.flatnonzero(tokens >= vocab)[0])
        return ConfigError(
            f"'{path}' holds token id {int(tokens[position]):,} at token {start + position:,}, beyond the vocabulary "
            f"of {vocab:,} ids in '{self.dataset_dir / MANIFEST_FILE}': the shard is damaged; prepare the dataset "
            "again (data.verify hash finds such a file before the first step)"
        )

    # -- facts the module and callbacks use ----------------------------------------------------------------
    @property
    def test_split(self) -> str:
        """The ``test`` split when the dataset has one, else ``val`` (then ``test`` re-measures validation)."""
        assert self.manifest is not None, "call setup() first"
        return "test" if "test" in self.manifest["splits"] else "val"

    @property
    def tokenizer_path(self) -> Path:
        assert self.manifest is not None, "call setup() first"
        return self.dataset_dir / self.manifest["tokenizer"]["file"]

    @property
    def tokenizer_vocab_size(self) -> int:
        assert self.manifest is not None, "call setup() first"
        return int(self.manifest["tokenizer"]["vocab_size"])

    def bytes_per_token(self, split: str) -> float:
        """Raw UTF-8 bytes per token of a split: converts a loss per token into bits per byte."""
        assert self.manifest is not None, "call setup() first"
        info = self.manifest["splits"][split]
        return info["bytes"] / info["tokens"]

    # -- loaders -------------------------------------------------------------------------------------------
    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    @property
    def pinned(self) -> bool:
        """Whether the loaders pin their batches: ``pin_memory``, or by default whether training is on CUDA."""
        if self.pin_memory is not None:
            return self.pin_memory
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self) -> ResumableDataLoader:
        rank, world_size = self._rank_and_world()
        sampler = ResumableWindowSampler(len(self.train_dataset), self.seed, num_replicas=world_size, rank=rank)
        self._train_loader = ResumableDataLoader(
            self.train_dataset,
            sampler,
            accumulation=self.trainer.accumulate_grad_batches if self.trainer is not None else 1,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pinned,
        )
        return self._train_loader

    def _eval_loader(self, dataset: WindowDataset) -> EvalDataLoader:
        rank, world_size = self._rank_and_world()
        sampler = EvalWindowSampler(len(dataset), num_replicas=world_size, rank=rank)
        return EvalDataLoader(
            dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers, pin_memory=self.pinned
        )

    def val_dataloader(self) -> EvalDataLoader:
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> EvalDataLoader:
        return self._eval_loader(self.test_dataset)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Called once per batch the training loop actually takes: count it towards the resume position.

        (``on_before_batch_transfer`` is the module's: its objective transforms the batch there.)"""
        trainer = self.trainer
        if trainer is not None and trainer.training and self._train_loader is not None:
            self._train_loader.mark_consumed(batch["input_ids"].shape[0] * trainer.world_size)
        return batch


def manifest_token_ids(directory: Path, manifest: dict) -> dict[str, int]:
    """The special ids of a prepared dataset's tokenizer (see ``data_prep.tokens.tokenizer.role_token_ids``)."""
    info = manifest["tokenizer"]
    tokenizer = load_tokenizer(Path(directory) / info["file"])
    return role_token_ids(tokenizer, info.get("roles", {}), manifest["end_of_text_id"])
