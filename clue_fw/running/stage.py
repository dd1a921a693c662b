"""One training stage of a run: its checkpoints, history, re-seeding and resumption.

A stage (``pretrain`` or ``finetune``) keeps its files in ``<run_dir>/<stage>/``.
Every epoch ends with ``last.safetensors``: the module's weights, the optimiser state and
the metadata (epoch, finished, history, stage-specific ``extra``), stamped with the run
identity by :class:`~clue_fw.running.run_directory.RunDirectory`, then ``history.csv``
(the history, one row per epoch: :mod:`clue_fw.running.history_csv`). Randomness is
re-seeded from (seed, stage, epoch) at the start of every epoch
(:meth:`Stage.begin_epoch`), so a resumed stage follows the uninterrupted one exactly.

In a data-parallel run (:mod:`clue_fw.distributed`) every process keeps a Stage; rank 0
alone reads and writes its files and hands what it read to the others.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clue_fw.data.examples import Batches
from clue_fw.distributed import SINGLE, Distributed, ShardedStep, convert_batchnorm
from clue_fw.errors import CheckpointError, NonFiniteError
from clue_fw.running.history_csv import write_history
from clue_fw.running.layout import HISTORY_FILE, LAST_FILE
from clue_fw.running.os_errors import exists
from clue_fw.running.run_directory import RunDirectory
from clue_fw.training.checkpoint import (
    load_module_tensors,
    module_tensors,
    optimizer_tensors,
    restore_optimizer,
)
from clue_fw.training.compile import StepCompiler
from clue_fw.training.loop import EpochStats, derive_seed, train_epoch
from clue_fw.training.optim import ParameterGroup, build_optimizer, lr_schedule
from clue_fw.training.precision import slow_bf16_warning
from clue_fw.training.report import Reporter


class Stage:
    """Shared bookkeeping of one training stage: checkpoints, history and seeds.

    ``extra_fields`` names the entries of ``extra`` (stage-specific state such as the
    best validation metric) with their types; a resumed checkpoint must have them.
    """

    def __init__(
        self,
        name: str,
        directory: RunDirectory,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        reporter: Reporter,
        seed: int,
        device: torch.device,
        extra_fields: dict[str, type] | None = None,
        epochs: int | None = None,
        patience: int | None = None,
        distributed: Distributed = SINGLE,
    ) -> None:
        self.name = name
        self.directory = directory
        self.dir = directory.stage_dir(name)
        self.module = module
        self.optimizer = optimizer
        self.reporter = reporter
        self.seed = seed
        self.device = device
        self.extra_fields = dict(extra_fields or {})
        self.epochs = epochs  # the recipe's: a resumed epoch beyond it is refused
        self.patience = patience
        self.epoch = 0
        self.finished = False
        self.history: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.distributed = distributed
        self.saved = False  # this process knows a last.safetensors of the stage exists
        self.lr: float | None = None  # the learning rate of the last epoch's last step
        self.compiler: StepCompiler | None = None  # train.compile: made on first use
        self.precision_checked = False  # train.precision=bf16 on a slow CPU: said once

    @classmethod
    def training(
        cls,
        name: str,
        module: nn.Module,
        train: Any,
        directory: RunDirectory,
        reporter: Reporter,
        seed: int,
        device: torch.device,
        distributed: Distributed = SINGLE,
        extra_fields: dict[str, type] | None = None,
        patience: int | None = None,
        parameters: list[nn.Parameter] | list[ParameterGroup] | None = None,
        global_batchnorm: bool = True,
    ) -> Stage:
        """The stage that trains ``module`` with ``train`` (a stage's ``TrainSpec``): its
        optimiser over ``parameters`` (default: the parameters of ``module`` that require
        a gradient; freeze a part before), or over parameter groups with their own
        learning-rate factors, for ``train.epochs`` epochs. Data-parallel, every BatchNorm
        of ``module`` computes global-batch statistics
        (:func:`~clue_fw.distributed.convert_batchnorm`, which keeps its parameters) unless
        ``global_batchnorm`` is False (each process's own rows, no communication)."""
        if distributed.parallel and global_batchnorm:
            convert_batchnorm(module)  # shares the parameters: the optimiser trains them
        if parameters is None:
            parameters = [p for p in module.parameters() if p.requires_grad]
        return cls(
            name,
            directory,
            module,
            build_optimizer(parameters, train),
            reporter,
            seed,
            device,
            extra_fields=extra_fields,
            epochs=train.epochs,
            patience=patience,
            distributed=distributed,
        )

    @property
    def last_path(self) -> Path:
        return self.dir / LAST_FILE

    def path(self, file: str) -> Path:
        return self.dir / file

    def begin_epoch(self, epoch: int) -> tuple[torch.Generator, torch.Generator]:
        """Re-seed the global RNG (dropout) for ``epoch``; return the (order, views)
        generators. Everything random in an epoch derives from (seed, stage, epoch)."""
        seed, name, device = self.seed, self.name, self.device
        # Each process of a data-parallel run draws its own dropout masks; the order and
        # the views are drawn for the global batch, identically on every process.
        torch.manual_seed(derive_seed(seed, name, epoch, "global", *self.distributed.seed_label()))
        order = torch.Generator(device=device).manual_seed(derive_seed(seed, name, epoch, "order"))
        views = torch.Generator(device=device).manual_seed(derive_seed(seed, name, epoch, "views"))
        return order, views

    def metadata(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "role": "last",
            "epoch": self.epoch,
            "finished": self.finished,
            "history": self.history,
            "extra": self.extra,
        }

    def save(self, report: Callable[[], None] | None = None) -> None:
        """Write ``last.safetensors``: weights, optimiser state and metadata. ``report``
        (the epoch's log line) runs first, on the same process (rank 0)."""

        def write() -> None:
            if report is not None:
                report()
            tensors = module_tensors(self.module, "model.")
            optim, structure = optimizer_tensors(self.optimizer)
            tensors.update(optim)
            self._write(LAST_FILE, tensors, {**self.metadata(), "optimizer": structure})
            self._write_history()  # after the checkpoint: never an epoch it lacks

        self.distributed.on_main(write)
        self.saved = True

    def save_file(
        self,
        file: str,
        tensors: dict[str, torch.Tensor] | Callable[[], dict[str, torch.Tensor]],
        metadata: dict[str, Any],
    ) -> None:
        """Write another checkpoint of this stage (``best``, ``encoder``); ``metadata``
        names its ``role``, which loading checks. Rank 0 writes (``tensors`` may be a
        function that makes them, called there only); its error stops every process."""

        def write() -> None:
            self._write(file, tensors() if callable(tensors) else tensors, metadata)

        self.distributed.on_main(write)

    def _write(self, file: str, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        self.directory.save_checkpoint(self.path(file), tensors, {"stage": self.name, **metadata})

    def _write_history(self) -> None:
        """Rewrite ``history.csv`` from :attr:`history` (rank 0, atomically)."""
        write_history(self.directory, self.path(HISTORY_FILE), self.history)

    def train_epoch(
        self,
        epoch: int,
        train: Any,
        loss_name: str,
        step: Callable[[dict[str, torch.Tensor]], Any],
        batches: Iterable[dict[str, torch.Tensor]],
        num_batches: int,
    ) -> EpochStats:
        """One epoch of :func:`train_epoch`; a numerical failure says which checkpoint is kept.

        Every step's learning rate follows ``train``'s schedule
        (:func:`~clue_fw.training.optim.lr_schedule`, a function of the global step);
        :attr:`lr` is then the rate of the epoch's last step, for the epoch's history row.
        ``train.compile``: ``step`` runs through :class:`~clue_fw.training.compile.
        StepCompiler` (compiled, or eager after one logged line).

        Data-parallel: ``batches`` are this process's parts of the global batches; the
        loss is weighted by each part's share, the gradients are averaged across the
        processes during every backward pass (:meth:`GradientSync.overlap`, which checks
        at the epoch's end that the processes' steps used the same parameters), and the
        epoch's loss and terms are the means over every process's rows.
        """
        # The lr schedule: a function of the global step, planned over train.epochs.
        schedule = lr_schedule(train, num_batches)
        self.lr = schedule(epoch * num_batches - 1)
        if not self.precision_checked:
            self.precision_checked = True
            first = next(self.module.parameters(), None)
            device_type = first.device.type if first is not None else "cpu"
            warning = slow_bf16_warning(self.name, device_type, train.precision)
            if warning is not None:
                self.reporter.log(warning)
        if train.compile:
            if self.compiler is None:
                self.compiler = StepCompiler(self.name, self.reporter.log)
            step = self.compiler.wrap(step)
        named = [(name, p) for name, p in self.module.named_parameters() if p.requires_grad]
        parameters = [p for _, p in named]
        sharded = None
        sync = self.distributed.sync_gradients
        overlap: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if self.distributed.parallel:
            if not isinstance(batches, Batches):
                raise TypeError("data-parallel training needs the Batches of ExampleSet.batches")
            sharded = ShardedStep(step, batches, self.distributed)
            if sync is not None:
                overlap = sync.overlap(parameters, [name for name, _ in named])
        try:
            with overlap:
                stats = train_epoch(
                    sharded if sharded is not None else step,
                    parameters,
                    self.optimizer,
                    batches,
                    num_batches,
                    train.grad_clip,
                    self.reporter,
                    f"{self.name} epoch {epoch}/{train.epochs}",
                    first_step=(epoch - 1) * num_batches,
                    loss_name=loss_name,
                    autocast=torch.bfloat16 if train.precision == "bf16" else None,
                    learning_rate=schedule if schedule.varies else None,
                    **({"sync_gradients": sync} if sharded is not None else {}),
                )
        except NonFiniteError as exc:
            if not self.distributed.is_main:  # only rank 0 looks at the files
                kept = (
                    f"rank 0 keeps the last good {self.name} checkpoint (epoch {self.epoch})."
                    if self.saved
                    else f"no {self.name} epoch had finished, so no {self.name} checkpoint exists."
                )
            elif exists(self.last_path):
                kept = f"the last good checkpoint, {self.last_path} (epoch {self.epoch}), is kept."
            else:
                kept = f"no {self.name} epoch had finished, so no {self.name} checkpoint exists."
            raise NonFiniteError(
                f"{exc} The run stopped; {kept} Lower {self.name}.train.lr or set "
                f"{self.name}.train.grad_clip and start a new run: training is seeded, so "
                "--resume with the same recipe would repeat the same steps."
            ) from None
        if sharded is None:
            return stats
        loss, terms, rows = sharded.epoch_means()
        return EpochStats(loss=loss, terms=terms, examples=rows, seconds=stats.seconds)

    def try_resume(self) -> bool:
        """Continue from ``last.safetensors`` if this run wrote one; False if there is none.

        Data-parallel: rank 0 reads the file and every process then holds its weights,
        optimiser state and bookkeeping (or, when there is none, rank 0's initial weights).
        """
        if not self.distributed.parallel:
            return self._resume_here()

        def resume() -> dict[str, Any]:
            resumed = self._resume_here()
            state = [self.epoch, self.finished, self.history, self.extra]
            return {"resumed": resumed, "state": state}

        found = self.distributed.on_main(resume)
        self.epoch, self.finished, self.history, self.extra = found["state"]
        self.distributed.broadcast_module(self.module)
        self.distributed.broadcast_optimizer(self.optimizer)
        self.saved = self.saved or bool(found["resumed"])
        return bool(found["resumed"])

    def _resume_here(self) -> bool:
        if not exists(self.last_path):
            return False
        tensors, metadata = self.directory.load_checkpoint(self.last_path, role="last")
        epoch, finished, history, extra = self._training_state(metadata)
        load_module_tensors(self.module, tensors, "model.", self.last_path)
        restore_optimizer(self.optimizer, tensors, metadata.get("optimizer", {}), self.last_path)
        self.epoch, self.finished, self.history, self.extra = epoch, finished, history, extra
        self.saved = True
        self._write_history()  # drop rows of epochs after the checkpoint
        self.reporter.log(
            f"{self.name}: resumed after epoch {self.epoch}"
            + (" (finished)" if self.finished else "")
        )
        return True

    def _training_state(
        self, metadata: dict[str, Any]
    ) -> tuple[int, bool, list[dict[str, Any]], dict[str, Any]]:
        """(epoch, finished, history, extra) of a checkpoint, every type checked."""

        def bad(what: str) -> CheckpointError:
            return CheckpointError(
                f"{self.last_path} has malformed training metadata: {what}. It was not written "
                "by this version of clue_fw, or it was edited. Start a new run (--out) instead."
            )

        stage = metadata.get("stage")
        if stage != self.name:
            raise bad(f"it holds {stage!r} state, not {self.name!r} state")
        epoch, finished = metadata.get("epoch"), metadata.get("finished")
        history, extra = metadata.get("history"), metadata.get("extra", {})
        top = self.epochs if self.epochs is not None else float("inf")
        if type(epoch) is not int or not 0 <= epoch <= top:
            limit = f"in [0, {self.epochs}] (the recipe's epochs)" if self.epochs else ">= 0"
            raise bad(f"'epoch' must be a whole number {limit}, not {_show(epoch)}")
        if type(finished) is not bool:
            raise bad(f"'finished' must be true or false, not {_show(finished)}")
        if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
            raise bad(f"'history' must be a list of mappings, not {_show(history)}")
        if not isinstance(extra, dict):
            raise bad(f"'extra' must be a mapping, not {_show(extra)}")
        for key, kind in self.extra_fields.items():
            value = extra.get(key)
            fits = isinstance(value, kind) and not isinstance(value, bool)
            if kind is float:
                fits = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not fits:
                raise bad(f"'extra.{key}' must be {kind.__name__}, not {_show(value)}")
        best, best_epoch, bad_epochs = (
            extra.get("best"),
            extra.get("best_epoch"),
            extra.get("bad_epochs"),
        )
        if "best" in self.extra_fields and not math.isfinite(best):
            raise bad(f"'extra.best' must be a finite number, not {_show(best)}")
        if "best_epoch" in self.extra_fields and not 0 <= best_epoch <= epoch:
            raise bad(f"'extra.best_epoch' must be in [0, {epoch}] (its epoch), not {best_epoch}")
        if "bad_epochs" in self.extra_fields:
            top_bad = self.patience if self.patience is not None else epoch
            if not 0 <= bad_epochs <= top_bad:
                raise bad(f"'extra.bad_epochs' must be in [0, {top_bad}], not {bad_epochs}")
        return epoch, finished, list(history), dict(extra)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
