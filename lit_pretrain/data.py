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
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import yaml

from data_prep.cli_errors import yaml_problem
from data_prep.config import DataPrepConfig
from data_prep.errors import DataPrepError
from data_prep.pipeline import prepare
from data_prep.tokens.shards import MANIFEST_FILE, read_manifest, read_tokens, sha256_file
from data_prep.tokens.tokenizer import (
    TOKENIZER_FILE,
    load_tokenizer,
    planned_token_ids,
    planned_vocab_size,
    role_token_ids,
)
from data_prep.tokens.verify import content_fingerprint, record, verify
from lit_pretrain.description import ALL, DataDescription
from lit_pretrain.errors import ConfigError
from lit_pretrain.mixture import (
    MixtureDataLoader,
    MixtureDataset,
    MixtureSampler,
    MixtureStream,
    Phase,
    Source,
    parse_phases,
    parse_sources,
)
from lit_pretrain.parallel import data_parallel
from lit_pretrain.windows import (
    EvalDataLoader,
    EvalWindowSampler,
    ResumableDataLoader,
    ResumableWindowSampler,
    WindowDataset,
)

DEFAULT_DATASET_DIR = "data/stdlib"
DEFAULT_PREPARE_CONFIG = "configs/data/stdlib.yaml"
NEW_RUN = "or start a new run in another run directory (--trainer.logger.init_args.name NEW, without --ckpt_path)"


class PretrainDataModule(L.LightningDataModule):
    """Serves windows from a prepared dataset directory, or from a weighted mixture of several, preparing each
    first when it has no manifest.

    Args:
        dataset_dir: Directory with ``manifest.json`` and shards (written by ``python -m data_prep``). None (the
            default): ``data/stdlib``, unless ``sources`` is given (one of the two).
        prepare_config: data_prep YAML used to build ``dataset_dir`` when it is missing (its ``output_dir`` is
            replaced by ``dataset_dir``). None: the dataset must already exist. A mixture's sources each have
            their own.
        sources: A mixture of prepared datasets instead of ``dataset_dir``: a list of ``{name, dataset_dir,
            prepare_config (optional), weight}``. Each training window comes from source *s* with probability
            ``weight_s / sum(weights)``, drawn from ``seed``; a source that runs out starts its next epoch while
            the others go on; every source is validated on its own (``val/<name>/loss``, ``/ppl``, ``/bpb``) and
            together (``val/loss``). All must share one tokenizer (the same ``tokenizer.json``): prepare the
            others with ``tokenizer.pretrained: <first dataset_dir>/tokenizer.json`` in their data_prep config.
        phases: A curriculum over ``sources``: ``[{start_step: 0, weights: {web: 1.0}}, {start_step: 200,
            weights: {web: 0.7, code: 0.3}}]``; from each ``start_step`` (an optimizer step) on, windows are drawn
            with that phase's weights (a source a phase leaves out gets 0). Before the first phase (when it
            starts after step 0), the sources' own weights apply.
        seq_len: Tokens per training window; linked to ``model.seq_len``.
        batch_size: Windows per micro-batch on each device.
        global_batch_size: Windows per optimizer step over all devices and nodes. When set, gradient accumulation
            is derived from it: ``global_batch_size / (batch_size x devices x nodes)``, which must divide evenly.
        num_workers: DataLoader worker processes (0 reads in the main process; reads are cheap).
        seed: Seed of the per-epoch shuffle of training windows (and of a mixture's draws).
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
        dataset_dir: str | None = None,
        prepare_config: str | None = DEFAULT_PREPARE_CONFIG,
        sources: list[dict[str, Any]] | None = None,
        phases: list[dict[str, Any]] | None = None,
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
        self._hash_result: str | None | bool = False  # False: not run yet; None: passed or not this rank's job
        self.prepare_data_per_node = prepare_data_per_node  # read by Lightning to choose who calls prepare_data
        self.pin_memory = pin_memory
        self.sources, self.phases = self._parse_sources(dataset_dir, prepare_config, sources, phases)
        self.is_mixture = sources is not None
        # A single dataset's directory; a mixture's first source's (whose tokenizer every source shares).
        self.dataset_dir = self.sources[0].dataset_dir
        self.prepare_config = self.sources[0].prepare_config
        self.seq_len, self.batch_size, self.num_workers, self.seed = seq_len, batch_size, num_workers, seed
        self.global_batch_size = global_batch_size
        if tokens_per_parameter is not None and not tokens_per_parameter > 0:
            raise ConfigError(f"data.tokens_per_parameter {tokens_per_parameter} must be positive, e.g. 20")
        self.tokens_per_parameter = tokens_per_parameter
        self.manifests: list[dict] | None = None  # one per source, read in setup
        self._train_loader: ResumableDataLoader | MixtureDataLoader | None = None
        # Known now (not in setup) so LightningCLI can link them to the model at instantiation.
        self._check_tokenizers_agree()
        self.vocab_size = self._planned_vocab_size()
        self.token_ids = self._planned_token_ids()
        self.description = DataDescription(
            self.vocab_size,
            self.token_ids,
            str(self.dataset_dir),
            [source.name for source in self.sources] if self.is_mixture else [],
        )

    @staticmethod
    def _parse_sources(
        dataset_dir: str | None, prepare_config: str | None, sources: list | None, phases: list | None
    ) -> tuple[list[Source], list[Phase] | None]:
        """The datasets this module reads: one :class:`Source` for ``dataset_dir``, or the mixture's."""
        if sources is None:
            if phases:
                raise ConfigError("data.phases needs data.sources (a mixture); a single dataset has no phases")
            directory = Path(dataset_dir if dataset_dir is not None else DEFAULT_DATASET_DIR)
            return [Source("", directory, prepare_config, 1.0)], None
        if dataset_dir is not None:
            raise ConfigError(
                f"data.sources and data.dataset_dir '{dataset_dir}' are both given; give one of them (for a mixture: "
                "--data.dataset_dir null, and each source's dataset_dir in data.sources)"
            )
        if prepare_config not in (None, DEFAULT_PREPARE_CONFIG):
            raise ConfigError(
                f"data.prepare_config '{prepare_config}' is given with data.sources; a mixture's sources each have "
                "their own (data.sources[i].prepare_config): set data.prepare_config null"
            )
        parsed = parse_sources(sources)
        return parsed, parse_phases(phases, parsed)

    # -- preparation ---------------------------------------------------------------------------------------
    def _where(self, source: Source) -> str:
        """How an error names a source: its key in a mixture, nothing for a single dataset."""
        if not self.is_mixture:
            return ""
        return f"data.sources[{self.sources.index(source)}] ('{source.name}'): "

    def _prep_config(self, source: Source | None = None) -> DataPrepConfig:
        source = source or self.sources[0]
        key = (
            "data.prepare_config"
            if not self.is_mixture
            else f"data.sources[{self.sources.index(source)}].prepare_config"
        )
        manifest = source.dataset_dir / MANIFEST_FILE
        if source.prepare_config is None:
            raise ConfigError(
                f"'{manifest}' does not exist and {key} is null; prepare the dataset first with python -m data_prep, "
                f"or give {key}"
            )
        path = Path(source.prepare_config)
        if not path.is_file():
            raise ConfigError(
                f"{key} '{path}' not found and '{manifest}' does not exist; pass --{key} or prepare the dataset first "
                "with python -m data_prep"
            )
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{key} '{path}' is not valid YAML ({yaml_problem(error)}); fix the file") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{key} '{path}' holds a {type(values).__name__}, not a mapping of data_prep keys")
        values["output_dir"] = str(source.dataset_dir)
        return DataPrepConfig.from_dict(values)

    def _prepared(self, source: Source) -> bool:
        return (source.dataset_dir / MANIFEST_FILE).is_file()

    @property
    def prepared(self) -> bool:
        """Whether every dataset has its manifest (else ``prepare_data`` builds the missing ones)."""
        return all(self._prepared(source) for source in self.sources)

    def _planned_vocab_size(self) -> int:
        first = self.sources[0]
        if self._prepared(first):
            return int(read_manifest(first.dataset_dir)["vocab_size"])
        try:
            return planned_vocab_size(self._prep_config(first).tokenizer)
        except DataPrepError as error:
            raise ConfigError(str(error)) from error

    def _planned_token_ids(self) -> dict[str, int]:
        """The tokenizer's special ids (``end_of_text_id``, ``<role>_id``), from the prepared dataset or, before
        it exists, from the data_prep config (fixed by the tokenizer kind, or read from a pretrained one)."""
        first = self.sources[0]
        try:
            if self._prepared(first):
                return manifest_token_ids(first.dataset_dir, read_manifest(first.dataset_dir))
            return planned_token_ids(self._prep_config(first).tokenizer)
        except DataPrepError as error:
            raise ConfigError(str(error)) from error

    def _tokenizer_identity(self, source: Source) -> tuple[str, str | None]:
        """What tokenizer a source is (or will be) tokenized with: ``("sha256", digest)`` of an existing
        ``tokenizer.json``, ``("path", file)`` of a pretrained one not there yet (another source's, prepared
        first), ``("trained", None)`` for one data_prep will train."""
        if self._prepared(source):
            return "sha256", read_manifest(source.dataset_dir)["tokenizer"]["sha256"]
        pretrained = self._prep_config(source).tokenizer.pretrained
        if pretrained is None:
            return "trained", None
        path = Path(pretrained).expanduser()
        file = path / TOKENIZER_FILE if path.is_dir() or not path.suffix else path
        return ("sha256", sha256_file(file)) if file.is_file() else ("path", str(file.resolve()))

    def _check_tokenizers_agree(self) -> None:
        """Every source of a mixture is tokenized with the first's tokenizer (checked again on the manifests in
        ``setup``): one line naming both sources and how to prepare the other one with the first's tokenizer."""
        if not self.is_mixture:
            return
        first = self.sources[0]
        first_kind, first_id = self._tokenizer_identity(first)
        first_file = (first.dataset_dir / TOKENIZER_FILE).resolve()
        for source in self.sources[1:]:
            kind, identity = self._tokenizer_identity(source)
            if first_kind == "sha256":
                same = kind == "sha256" and identity == first_id
            else:  # the first source is not prepared yet: the others must name its tokenizer file
                same = kind == "path" and Path(identity) == first_file
            if not same:
                self._refuse_tokenizer(source, "is tokenized with another tokenizer than")

    def _refuse_tokenizer(self, source: Source, what: str) -> None:
        first = self.sources[0]
        raise ConfigError(
            f"{self._where(source)}'{source.dataset_dir}' {what} data.sources[0] ('{first.name}'); every source "
            f"must share one tokenizer: prepare '{source.name}' with tokenizer.pretrained: "
            f"{first.dataset_dir / TOKENIZER_FILE} in its data_prep config"
        )

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
        the other processes wait at a barrier): build the datasets that are not there yet, in order (a mixture's
        later sources may use the first's tokenizer)."""
        if self.trainer is not None:  # a Trainer driven from Python: still refuse a bad batch size before any work
            self.apply_global_batch_size(self.trainer)
        for source in self.sources:
            if self._prepared(source) or source.prepare_config is None:
                continue
            manifest = prepare(self._prep_config(source))
            # Its shards were hashed as they were written: that is this dataset's verification.
            record(source.dataset_dir, manifest)

    @property
    def manifest(self) -> dict | None:
        """The single dataset's manifest (a mixture's first source's), once ``setup`` has read it."""
        return None if self.manifests is None else self.manifests[0]

    def _read_manifests(self) -> list[dict]:
        manifests = []
        for source in self.sources:
            try:
                manifests.append(read_manifest(source.dataset_dir))
            except DataPrepError as error:
                node = self.trainer.node_rank if self.trainer is not None else 0
                if node > 0 and not self.prepare_data_per_node and source.prepare_config is not None:
                    raise ConfigError(
                        f"node {node} does not see '{source.dataset_dir / MANIFEST_FILE}' that node 0 prepared; put "
                        "the datasets on storage every node sees, or pass --data.prepare_data_per_node true"
                    ) from error
                raise ConfigError(f"{self._where(source)}{error}") from error
        return manifests

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None:
            self.apply_global_batch_size(self.trainer)
        if self.manifests is not None:
            return
        manifests = self._read_manifests()
        for source, manifest in zip(self.sources, manifests):
            directory = source.dataset_dir
            # A mixture's other sources share the first's tokenizer file (checked below); the first decides the
            # embedding rows (a trained tokenizer's configured size may exceed what the file holds).
            if manifest["vocab_size"] != self.vocab_size and (
                source is self.sources[0] or manifest["vocab_size"] > self.vocab_size
            ):
                raise ConfigError(
                    f"'{directory / MANIFEST_FILE}' was prepared with vocab_size {manifest['vocab_size']} but "
                    f"this run was configured for {self.vocab_size}; restart so both agree"
                )
            prepared_ids = manifest_token_ids(directory, manifest)
            if prepared_ids != self.token_ids:
                raise ConfigError(
                    f"'{directory / MANIFEST_FILE}' was prepared with special token ids {prepared_ids} but this "
                    f"run was configured for {self.token_ids}; restart so both agree"
                )
            if manifest["tokenizer"]["sha256"] != manifests[0]["tokenizer"]["sha256"]:
                self._refuse_tokenizer(source, "was tokenized with another tokenizer than")
        self.manifests = manifests
        self.verify_dataset(collective=True)
        test = "test" if all("test" in manifest["splits"] for manifest in manifests) else "val"
        self.windows = {
            split: [self._windows(i, split) for i in range(len(manifests))] for split in {"train", "val", test}
        }
        self.train_dataset = self._combined(self.windows["train"])
        self.val_dataset = self._combined(self.windows["val"])
        self.test_dataset = self._combined(self.windows[test])
        self._describe(test)

    def _combined(self, datasets: list[WindowDataset]) -> WindowDataset | MixtureDataset:
        return MixtureDataset(datasets) if self.is_mixture else datasets[0]

    def _describe(self, test_split: str) -> None:
        """Complete the description with what only the manifests tell: bytes per token of each split, per source
        and over all of them (a split's raw UTF-8 bytes per token: converts a loss per token into bits per byte)."""
        description = self.description
        description.test_split = test_split
        description.tokenizer_vocab_size = int(self.manifests[0]["tokenizer"]["vocab_size"])
        for split in {"train", "val", test_split}:
            infos = [manifest["splits"][split] for manifest in self.manifests]
            figures = {ALL: sum(info["bytes"] for info in infos) / sum(info["tokens"] for info in infos)}
            if self.is_mixture:
                figures.update({s.name: info["bytes"] / info["tokens"] for s, info in zip(self.sources, infos)})
            description.bytes_per_token[split] = figures

    # -- verification of the files, and of what a resumed run continues --------------------------------------
    def verify_dataset(self, collective: bool = False, rank: int | None = None) -> None:
        """Check the shards against the manifest (``verify``; see the class doc) and stop with one line naming the
        file on a mismatch. Hashing is the job of one process (global rank 0, or local rank 0 of each node with
        ``prepare_data_per_node``): ``rank`` is this process's rank in that sense (by default the attached
        Trainer's); with ``collective`` every rank then learns its verdict, so all stop together. The CLI calls
        this before the run directory is touched (passing the rank: LightningCLI attaches the data module to the
        Trainer only in ``fit``), ``setup`` again with ``collective`` (each check runs once per process)."""
        manifests = self.manifests if self.manifests is not None else self._read_manifests()
        if self.verify == "off":
            return
        trainer = self.trainer
        if self._hash_result is False:
            if rank is None:
                rank = 0 if trainer is None else self.hashing_rank(trainer)
            self._hash_result = None
            for source, manifest in zip(self.sources, manifests):
                try:
                    hashed = verify(source.dataset_dir, manifest, hashes=self.verify == "hash" and rank == 0)
                except DataPrepError as error:
                    self._hash_result = f"{self._where(source)}{error}"
                    break
                if hashed is not None:
                    read, seconds, recorded = hashed
                    note = (
                        "recorded in verified.json: later runs skip it"
                        if recorded
                        else "not recorded: read-only or full"
                    )
                    sys.stderr.write(
                        f"lit_pretrain: verified the SHA-256 of {source.dataset_dir}'s {read / 1e6:,.1f} MB of shards "
                        f"in {seconds:.2f} s ({note})\n"
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
        the seed of the permutation; for a mixture each source's dataset and weight, and the phases."""
        manifests = self.manifests if self.manifests is not None else self._read_manifests()
        order: dict = {"seq_len": self.seq_len, "seed": self.seed}
        if not self.is_mixture:
            order.update(dataset_fingerprint=content_fingerprint(manifests[0]), dataset_dir=str(self.dataset_dir))
            return order
        order["sources"] = [
            {
                "name": source.name,
                "dataset_dir": str(source.dataset_dir),
                "dataset_fingerprint": content_fingerprint(manifest),
                "weight": source.weight,
            }
            for source, manifest in zip(self.sources, manifests)
        ]
        order["phases"] = [[phase.start_step, list(phase.weights)] for phase in self.phases]
        return order

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
        if ("sources" in saved) != self.is_mixture and ("sources" in saved or "dataset_fingerprint" in saved):
            theirs = (
                "a mixture of data.sources" if "sources" in saved else f"data.dataset_dir '{saved.get('dataset_dir')}'"
            )
            ours = "a mixture of data.sources" if self.is_mixture else f"data.dataset_dir '{self.dataset_dir}'"
            raise ConfigError(
                f"{source} was trained on {theirs} and this run reads {ours}; resume with the data config the run was "
                f"started with (its config.yaml), {NEW_RUN}"
            )
        if self.is_mixture:
            self._check_mixture_order(saved, now, source)
            return
        theirs = saved.get("dataset_fingerprint")
        if theirs is not None and now["dataset_fingerprint"] is not None and theirs != now["dataset_fingerprint"]:
            raise ConfigError(
                f"{source} was trained on the dataset in '{saved.get('dataset_dir')}' (fingerprint {theirs}) and "
                f"data.dataset_dir '{self.dataset_dir}' holds another (fingerprint {now['dataset_fingerprint']}); "
                f"resume with --data.dataset_dir {saved.get('dataset_dir')} (or that dataset prepared again), {NEW_RUN}"
            )

    def _check_mixture_order(self, saved: dict, now: dict, where: str) -> None:
        names = [entry["name"] for entry in saved["sources"]]
        if names != [entry["name"] for entry in now["sources"]]:
            raise ConfigError(
                f"{where} was trained on the sources {names} and this run has {[s.name for s in self.sources]} "
                f"(the saved position counts each source's windows); resume with data.sources {names}, {NEW_RUN}"
            )
        for index, (theirs, ours) in enumerate(zip(saved["sources"], now["sources"])):
            key = f"data.sources[{index}]"
            if theirs["dataset_fingerprint"] != ours["dataset_fingerprint"]:
                raise ConfigError(
                    f"{where} was trained on '{theirs['dataset_dir']}' as source '{theirs['name']}' (fingerprint "
                    f"{theirs['dataset_fingerprint']}) and {key}.dataset_dir '{ours['dataset_dir']}' holds another "
                    f"(fingerprint {ours['dataset_fingerprint']}); resume with {key}.dataset_dir "
                    f"{theirs['dataset_dir']} (or that dataset prepared again), {NEW_RUN}"
                )
            if theirs["weight"] != ours["weight"]:
                raise ConfigError(
                    f"{where} was trained with {key}.weight {theirs['weight']:g} ('{theirs['name']}') and this run "
                    f"has {ours['weight']:g} (the weights decide every draw); resume with {key}.weight "
                    f"{theirs['weight']:g} (to change the mix during a run, use data.phases from the start), {NEW_RUN}"
                )
        if saved.get("phases") != now["phases"]:
            raise ConfigError(
                f"{where} was trained with data.phases {saved.get('phases')} and this run has {now['phases']} (as "
                f"[start_step, weights]); resume with the phases the run was started with, {NEW_RUN}"
            )

    def layout(self, trainer: L.Trainer) -> dict[str, int]:
        """How this run takes its windows (what the saved position counts in): see ``windows.check_layout``."""
        return {
            "batch_size": self.batch_size,
            "processes": data_parallel(trainer)[1],
            "accumulation": trainer.accumulate_grad_batches,
        }

    def state_dict(self) -> dict:
        return {"data_order": self.data_order()} if self.manifests is not None else {}

    def load_state_dict(self, state: dict) -> None:
        """A run driven from Python resumes through Lightning's restore: the same check as the CLI's (which runs it
        earlier, before anything in the run directory is written)."""
        if state.get("data_order"):
            self.check_data_order(state["data_order"], "the checkpoint")

    def _windows(self, index: int, split: str) -> WindowDataset:
        source, manifest = self.sources[index], self.manifests[index]
        info = manifest["splits"][split]
        dataset = WindowDataset(source.dataset_dir, info["files"], manifest["dtype"], self.seq_len)
        if self.verify != "hash":  # ids are not vouched for by a hash check: check each batch's largest one
            dataset.id_check = (int(manifest["vocab_size"]), self._out_of_range)
        if len(dataset) == 0:
            raise ConfigError(
                f"{self._where(source)}the {split} split of '{source.dataset_dir}' has {info['tokens']} tokens, "
                f"fewer than one window of data.seq_len={self.seq_len}; lower --data.seq_len or add data"
            )
        return dataset

    def _out_of_range(self, dataset: WindowDataset, window: int) -> ConfigError:
        """The error for window ``window`` holding an id >= the vocabulary, naming the shard and the token."""
        vocab = int(self.manifests[0]["vocab_size"])
        path, start = dataset.locate(window)
        tokens = read_tokens(path, dataset.dtype, start, dataset.seq_len)
        position = int(np.flatnonzero(tokens >= vocab)[0])
        return ConfigError(
            f"'{path}' holds token id {int(tokens[position]):,} at token {start + position:,}, beyond the vocabulary "
            f"of {vocab:,} ids in '{path.parent / MANIFEST_FILE}': the shard is damaged; prepare the dataset "
            "again (data.verify hash finds such a file before the first step)"
        )

    # -- facts the module and callbacks use (through self.description) ------------------------------------
    @property
    def test_split(self) -> str:
        """The ``test`` split when the dataset (every source) has one, else ``val`` (``test`` re-measures it)."""
        assert self.manifests is not None, "call setup() first"
        return self.description.test_split

    @property
    def tokenizer_path(self) -> Path:
        assert self.manifests is not None, "call setup() first"
        return self.dataset_dir / self.manifests[0]["tokenizer"]["file"]

    @property
    def tokenizer_vocab_size(self) -> int:
        assert self.manifests is not None, "call setup() first"
        return int(self.manifests[0]["tokenizer"]["vocab_size"])

    def bytes_per_token(self, split: str) -> float:
        """Raw UTF-8 bytes per token of a split (over all sources): converts a loss per token into bits per byte."""
        assert self.manifests is not None, "call setup() first"
        return self.description.bytes_per_token[split][ALL]

    # -- loaders -------------------------------------------------------------------------------------------
    def _rank_and_world(self) -> tuple[int, int]:
        """This process's data-parallel rank and the number of data-parallel ranks (what splits the windows)."""
        return data_parallel(self.trainer)

    @property
    def pinned(self) -> bool:
        """Whether the loaders pin their batches: ``pin_memory``, or by default whether training is on CUDA."""
        if self.pin_memory is not None:
            return self.pin_memory
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self) -> ResumableDataLoader | MixtureDataLoader:
        rank, world_size = self._rank_and_world()
        accumulation = self.trainer.accumulate_grad_batches if self.trainer is not None else 1
        options = dict(
            accumulation=accumulation,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pinned,
        )
        if not self.is_mixture:
            sampler = ResumableWindowSampler(len(self.train_dataset), self.seed, num_replicas=world_size, rank=rank)
            self._train_loader = ResumableDataLoader(self.train_dataset, sampler, **options)
            return self._train_loader
        global_batch = self.batch_size * world_size
        stream = MixtureStream(
            [len(d) for d in self.windows["train"]], self.seed, self.phases, global_batch * accumulation
        )
        # An epoch (for Lightning's count of batches only): the sources' windows together, in whole global batches.
        epoch_length = len(self.train_dataset) // global_batch * global_batch
        if epoch_length == 0:
            raise ConfigError(
                f"the sources hold {len(self.train_dataset)} training windows together, fewer than one global batch "
                f"of {global_batch}; lower --data.batch_size or add data"
            )
        sampler = MixtureSampler(stream, self.train_dataset.offsets, epoch_length, num_replicas=world_size, rank=rank)
        self._train_loader = MixtureDataLoader(self.train_dataset, sampler, [s.name for s in self.sources], **options)
        self.description.progress = self._train_loader.progress
        return self._train_loader

    def _eval_loader(self, dataset: WindowDataset) -> EvalDataLoader:
        rank, world_size = self._rank_and_world()
        sampler = EvalWindowSampler(len(dataset), num_replicas=world_size, rank=rank)
        return EvalDataLoader(
            dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers, pin_memory=self.pinned
        )

    def val_dataloader(self) -> EvalDataLoader | list[EvalDataLoader]:
        """One loader, or one per source of a mixture (in source order: the module's ``dataloader_idx``)."""
        if self.is_mixture:
            return [self._eval_loader(dataset) for dataset in self.windows["val"]]
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> EvalDataLoader | list[EvalDataLoader]:
        if self.is_mixture:
            return [self._eval_loader(dataset) for dataset in self.windows[self.test_split]]
        return self._eval_loader(self.test_dataset)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Called once per batch the training loop actually takes: count it towards the resume position.

        (``on_before_batch_transfer`` is the module's: its objective transforms the batch there.)"""
        trainer = self.trainer
        if trainer is not None and trainer.training and self._train_loader is not None:
            self._train_loader.mark_consumed(batch["input_ids"].shape[0] * self._rank_and_world()[1])
        return batch


def manifest_token_ids(directory: Path, manifest: dict) -> dict[str, int]:
    """The special ids of a prepared dataset's tokenizer (see ``data_prep.tokens.tokenizer.role_token_ids``)."""
    info = manifest["tokenizer"]
    tokenizer = load_tokenizer(Path(directory) / info["file"])
    return role_token_ids(tokenizer, info.get("roles", {}), manifest["end_of_text_id"])
