"""The fine-tuning driver: train the head, and the encoder in the epochs that
``finetune.mode`` lets it train (:mod:`clue_fw.running.finetune_phases`: ``full``, a
``probe`` of the frozen encoder, or LP-FT's probe then full phases), early-stop on a
validation metric, and score the best weights on the validation and test splits.

It writes ``finetune/last.safetensors`` after every epoch and
``finetune/best.safetensors`` whenever the monitored validation metric improves (and
once before the first epoch). The encoder it starts from is this run's pre-trained
encoder, the one ``finetune.init_from`` names (another run's, checked by
:func:`check_encoder_checkpoint`), or the backbone's initialisation (CLUEZero).

Data-parallel (:mod:`clue_fw.distributed`): every process trains on its part of each
global batch and scores its part of the users; the metric sums are added up across
processes, so every process reaches the same metrics and early-stopping decisions.
Rank 0 reads and writes the checkpoints and hands the weights it loads to the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from clue_fw.components import BuildContext, DownstreamHead, SequenceEncoder, TaskData
from clue_fw.data.dataset import SequenceData
from clue_fw.data.examples import Batches, ExampleSet, Task
from clue_fw.distributed import SINGLE, Distributed, GlobalView
from clue_fw.errors import CheckpointError, RecipeError, short_repr
from clue_fw.provenance import plugin_call
from clue_fw.recipe import pretrains
from clue_fw.running.finetune_phases import EncoderFreeze, Phases, optimiser_parameters
from clue_fw.running.identity import diff_keys, directory_identity, file_identity
from clue_fw.running.layout import BEST_FILE, PRETRAIN, stage_file
from clue_fw.running.os_errors import exists, is_dir
from clue_fw.running.pretrain import ENCODER_FILE, ITEM_IDS_KEY
from clue_fw.running.run_directory import RunDirectory
from clue_fw.running.stage import Stage
from clue_fw.training.auxiliary import AuxiliaryTerms, auxiliary_inputs, smallest_batch
from clue_fw.training.checkpoint import load_checkpoint, load_module_tensors, module_tensors
from clue_fw.training.loop import EpochStats, derive_seed
from clue_fw.training.report import Reporter

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import FinetuneStageLike, RecipeLike

# What fine-tuning keeps in its checkpoints' ``extra`` (a resumed one must have them).
EXTRA_FIELDS: dict[str, type] = {"best": float, "best_epoch": int, "bad_epochs": int}


def validation_status(
    epoch: int,
    spec: Any,
    monitor: str,
    valid: dict[str, float],
    extra: dict[str, Any],
    phases: Phases | None = None,
) -> str:
    """``finetune epoch 3/100: valid ndcg@10 0.1234, best 0.1301 (epoch 2); stops after
    9 more epochs without a gain``: what a terminal shows after each validation. In the
    probe phase of LP-FT (``phases``) it says when the encoder unfreezes instead."""
    others = ", ".join(f"{k} {v:.4f}" for k, v in valid.items() if k != monitor)
    left = spec.patience - extra["bad_epochs"]
    probing = phases.status(epoch) if phases is not None else None
    if epoch >= spec.train.epochs:
        ending = "the last epoch"
    elif probing:
        ending = probing
    elif left <= 0:
        ending = f"early stopping: no gain in {spec.patience} epochs"
    else:
        ending = f"stops after {left} more epoch{'s' if left != 1 else ''} without a gain"
    return (
        f"finetune epoch {epoch}/{spec.train.epochs}: valid {monitor} {valid[monitor]:.4f}"
        f"{f' ({others})' if others else ''}, best {extra['best']:.4f} (epoch "
        f"{extra['best_epoch']}); {ending}"
    )


def encoder_checkpoint_path(init_from: str) -> Path:
    """``finetune.init_from`` as a file: a run directory means its pre-trained encoder."""
    path = Path(init_from)
    if _is_dir(path):
        path = stage_file(path, PRETRAIN, ENCODER_FILE)
        if not exists(path, error=RecipeError):
            raise RecipeError(
                f"finetune.init_from: {init_from} is a directory without "
                "pretrain/encoder.safetensors; point it at a run that pre-trained (and "
                "finished pre-training), or at an encoder checkpoint file."
            )
    return path


def check_encoder_checkpoint(
    init_from: str, recipe: RecipeLike, data: SequenceData
) -> tuple[Path, dict[str, torch.Tensor]]:
    """Read ``finetune.init_from`` and check that it fits this run; return its tensors.

    The file must be an encoder whose metadata is consistent (its recipe hashes to its
    run identity's recipe sha256); when ``init_from`` names a run directory, the encoder
    must carry that directory's run id. Its backbone and item catalogue must be this
    recipe's.
    """
    path = encoder_checkpoint_path(init_from)
    tensors, metadata = load_checkpoint(path)
    if metadata.get("kind") != "encoder" or metadata.get("role", "encoder") != "encoder":
        raise CheckpointError(
            f"finetune.init_from: {path} is not a pre-trained encoder (it holds "
            f"{metadata.get('stage', 'unknown')} state); use a run's "
            "pretrain/encoder.safetensors."
        )
    try:
        identity = file_identity(path, metadata)
    except CheckpointError as exc:
        raise CheckpointError(f"finetune.init_from: {exc}") from None
    source = Path(init_from)
    if _is_dir(source):
        theirs = directory_identity(source)
        if theirs is None or theirs.run_id != identity.run_id:
            has = "has no recipe.yaml with a run identity" if theirs is None else f"is {theirs}"
            raise CheckpointError(
                f"finetune.init_from: {path} was not written by the run in {source} (the "
                f"encoder carries {identity}; the directory {has}): it was copied in from "
                "another run. Point init_from at the run that wrote it, or at the file itself."
            )
    theirs_backbone = (metadata.get("recipe") or {}).get("backbone")
    ours = recipe.backbone.model_dump(mode="json")
    if theirs_backbone != ours:
        changed = (
            sorted(diff_keys(theirs_backbone, ours)) if isinstance(theirs_backbone, dict) else []
        )
        raise CheckpointError(
            f"finetune.init_from: {path} was pre-trained with another backbone "
            f"(differs in: {', '.join('backbone.' + k for k in changed) or 'backbone'}). "
            "Use the same backbone section as the run that pre-trained it."
        )
    item_ids = tensors.get(ITEM_IDS_KEY)
    ours_ids = torch.from_numpy(data.item_ids.astype("int64"))
    if item_ids is None or item_ids.shape != ours_ids.shape or not torch.equal(item_ids, ours_ids):
        have = "an unknown" if item_ids is None else f"a {item_ids.numel():,}-item"
        raise CheckpointError(
            f"finetune.init_from: {path} was pre-trained on {have} catalogue, but this "
            f"recipe's data has {ours_ids.numel():,} items (after filtering and, for "
            "cold-start, the source-domain cut). Its item embeddings would index the wrong "
            "items; pre-train on the same data and data settings."
        )
    return path, tensors


def run_finetune(
    recipe: RecipeLike,
    task_data: TaskData,
    context: BuildContext,
    encoder: SequenceEncoder,
    device: torch.device,
    directory: RunDirectory,
    reporter: Reporter,
    distributed: Distributed = SINGLE,
) -> dict[str, Any]:
    """Fine-tune (or resume), then return the best weights' valid and test metrics."""
    spec = recipe.finetune
    parts = build_parts(recipe, context, encoder, task_data, device)
    phases = Phases.of(spec)
    freeze = EncoderFreeze(parts.module, encoder)
    stage = Stage.training(
        "finetune",
        parts.module,
        spec.train,
        directory,
        reporter,
        recipe.seed,
        device,
        distributed,
        extra_fields=EXTRA_FIELDS,
        patience=spec.patience,
        parameters=optimiser_parameters(parts.module, encoder, phases, spec.encoder_lr_scale),
    )
    finetuning = Finetuning(
        spec=spec,
        parts=parts,
        stage=stage,
        task=spec.head.make_task(task_data, context, spec.train.history).to(device),
        monitor=spec.monitor or spec.head.monitor_default,
        phases=phases,
        freeze=freeze,
        reporter=reporter,
        distributed=distributed,
    )
    if not stage.try_resume():
        finetuning.start(recipe, directory)
    reporter.log(finetuning.summary())
    while not stage.finished:
        finetuning.train_epoch()
    reporter.epoch_table("finetune", stage.history)
    distributed.on_main(lambda: finetuning.load_best(directory))
    distributed.broadcast_module(parts.module)  # the best weights rank 0 loaded
    return finetuning.results()


@dataclass
class FinetuneParts:
    """The modules of fine-tuning: the encoder, the head and the auxiliary terms (if
    any), trained, saved and resumed together as ``module``."""

    encoder: SequenceEncoder
    head: DownstreamHead
    auxiliary: AuxiliaryTerms | None
    module: nn.ModuleDict


def build_parts(
    recipe: RecipeLike,
    context: BuildContext,
    encoder: SequenceEncoder,
    task_data: TaskData,
    device: torch.device,
) -> FinetuneParts:
    """Build the head and the auxiliary terms on ``encoder``, each from its own seed."""
    spec = recipe.finetune
    # Seed the head's initialisation on its own: how much randomness pre-training used
    # up depends on whether it ran in this process or was resumed as already finished.
    torch.manual_seed(derive_seed(recipe.seed, "finetune", "init"))
    head = spec.head.build(context, encoder, task_data).to(device)
    modules: dict[str, nn.Module] = {"encoder": encoder, "head": head}
    auxiliary = None
    if spec.auxiliary:  # contrastive terms added to the head's loss (docs/protocol.md)
        torch.manual_seed(derive_seed(recipe.seed, "finetune", "auxiliary"))
        auxiliary = AuxiliaryTerms.from_specs(spec.auxiliary, context, encoder).to(device)
        modules["auxiliary"] = auxiliary  # trained, saved and resumed with the rest
    return FinetuneParts(encoder, head, auxiliary, nn.ModuleDict(modules))


@dataclass
class Finetuning:
    """A fine-tuning stage under way: its epochs, validation, early stopping and best
    checkpoint (:func:`run_finetune` drives it)."""

    spec: FinetuneStageLike
    parts: FinetuneParts
    stage: Stage
    task: Task
    monitor: str
    phases: Phases
    freeze: EncoderFreeze
    reporter: Reporter
    distributed: Distributed

    def score(self, examples: ExampleSet, split: str) -> dict[str, float]:
        """Exact metrics of ``examples``; data-parallel: each process scores its whole
        batches, and the metrics equal one process's to the bit."""
        size = self.spec.eval.batch_size
        return self.distributed.evaluate(self.parts.head, self.parts.encoder, examples, size, split)

    def start(self, recipe: RecipeLike, directory: RunDirectory) -> None:
        """A fresh stage: the starting encoder, then epoch 0 (the untrained head scored on
        validation), the first best checkpoint and the first ``last.safetensors``."""
        self.distributed.on_main(lambda: self._load_start(recipe, directory))
        self.distributed.broadcast_module(self.parts.module)  # the encoder rank 0 loaded
        started = time.perf_counter()
        initial = self.score(self.task.valid, "valid")
        seconds = round(time.perf_counter() - started, 3)
        if self.monitor not in initial:
            raise RecipeError(
                f"finetune.monitor: {self.monitor!r} is not a metric of head "
                f"{self.spec.head.kind!r}; available: {', '.join(initial)}."
            )
        row = {"epoch": 0, **{f"valid {k}": v for k, v in initial.items()}, "eval seconds": seconds}
        self.stage.history.append(row)
        self.stage.extra = {"best": initial[self.monitor], "best_epoch": 0, "bad_epochs": 0}
        self._save_best(0)
        self.stage.save()

    def _load_start(self, recipe: RecipeLike, directory: RunDirectory) -> None:
        """Load the encoder fine-tuning starts from (rank 0), and say which it is."""
        log = self.reporter.log
        if pretrains(recipe):
            pretrained = directory.stage_dir(PRETRAIN) / ENCODER_FILE
            tensors, _ = directory.load_checkpoint(pretrained, role="encoder")
            load_module_tensors(self.parts.encoder, tensors, "encoder.", pretrained)
            log("finetune: starting from the pre-trained encoder")
        elif self.spec.init_from:  # run() loaded it into the encoder when it built it
            source = encoder_checkpoint_path(self.spec.init_from)
            log(f"finetune: starting from the encoder pre-trained in {source}")
        else:
            log("finetune: no pre-training (CLUEZero), encoder starts from its initialisation")

    def summary(self) -> str:
        """The log line that says what fine-tuning trains, how, and when it stops."""
        spec, auxiliary = self.spec, self.parts.auxiliary
        terms = "".join(
            f" + {term.weight:g} x {name} ({'+'.join(v.kind for v in term.views)} views)"
            for term, name in zip(spec.auxiliary, auxiliary.names if auxiliary else [], strict=True)
        )
        return (
            f"finetune: {spec.head.kind}{terms} on {len(self.task.train):,} training examples "
            f"({self.phases.describe()}); early stopping on valid {self.monitor} "
            f"(patience {spec.patience})"
        )

    def train_epoch(self) -> None:
        """The next epoch, in its phase: train, score on validation, keep the best weights,
        count towards early stopping, save."""
        stage, spec, distributed = self.stage, self.spec, self.distributed
        epoch = stage.epoch + 1
        phase = self.phases.phase(epoch)
        if self.phases.unfreezes and epoch == self.phases.frozen_epochs + 1:
            self.reporter.log(f"finetune: epoch {epoch} unfreezes the encoder (full fine-tuning)")
        self.freeze.enter(phase)
        order, view_generator = stage.begin_epoch(epoch)
        # With auxiliary terms, a last batch smaller than their objectives need is skipped.
        smallest, size = smallest_batch(spec.auxiliary), spec.train.batch_size
        batches = self.task.train.batches(size, order, min_size=smallest, shard=distributed.shard)
        parts = self.parts
        stats = stage.train_epoch(
            epoch,
            spec.train,
            f"{spec.head.kind} head",
            step=training_step(
                parts.head,
                parts.encoder,
                spec.head,
                parts.auxiliary,
                batches,
                view_generator,
                distributed.shard is not None,
            ),
            batches=batches,
            num_batches=self.task.train.num_batches(size, smallest, distributed.shard),
        )
        started = time.perf_counter()
        valid = self.score(self.task.valid, "valid")
        eval_seconds = time.perf_counter() - started
        improved = self._note_validation(epoch, valid[self.monitor])
        row = epoch_row(epoch, stats, valid, stage.lr, eval_seconds, improved)
        if self.phases.shows_phase:
            row["phase"] = phase
        stage.history.append(row)
        stage.epoch = epoch
        stage.finished = epoch >= spec.train.epochs or stage.extra["bad_epochs"] >= spec.patience
        self.reporter.status(
            validation_status(epoch, spec, self.monitor, valid, stage.extra, self.phases)
        )
        stage.save(report=lambda row=row: self.reporter.epoch_line("finetune", row))

    def _note_validation(self, epoch: int, value: float) -> bool:
        """Keep the weights of a new best ``value``, or count an epoch without a gain
        (only where it counts: :meth:`Phases.counts_towards_patience`); True if best."""
        extra = self.stage.extra
        if value > extra["best"]:
            extra.update(best=value, best_epoch=epoch, bad_epochs=0)
            self._save_best(epoch)
            return True
        if self.phases.counts_towards_patience(epoch):
            extra["bad_epochs"] += 1
        return False

    def _save_best(self, epoch: int) -> None:
        module = self.parts.module
        meta = {"role": "best", "epoch": epoch}
        self.stage.save_file(BEST_FILE, lambda: module_tensors(module, "model."), meta)

    def load_best(self, directory: RunDirectory) -> None:
        """Load ``best.safetensors`` (rank 0), checked to be the epoch the stage recorded."""
        stage = self.stage
        best_path = stage.path(BEST_FILE)
        tensors, best_meta = directory.load_checkpoint(best_path, role="best")
        best_epoch = best_meta.get("epoch")
        if type(best_epoch) is not int or best_epoch != stage.extra["best_epoch"]:
            raise CheckpointError(
                f"{best_path} holds the weights of epoch {short_repr(best_epoch)}, but "
                f"{stage.last_path} records epoch {stage.extra['best_epoch']} as the best: it "
                "was replaced by another file of the run. Put the run's own best.safetensors "
                "back, or start a new run (--out)."
            )
        load_module_tensors(self.parts.module, tensors, "model.", best_path)

    def results(self) -> dict[str, Any]:
        """The loaded (best) weights' metrics, and the stage's bookkeeping."""
        return {
            "valid": self.score(self.task.valid, "valid"),
            "test": self.score(self.task.test, "test"),
            "best_epoch": self.stage.extra["best_epoch"],
            "epochs": self.stage.epoch,
            "monitor": self.monitor,
        }


def epoch_row(
    epoch: int,
    stats: EpochStats,
    valid: dict[str, float],
    lr: float | None,
    eval_seconds: float,
    improved: bool,
) -> dict[str, Any]:
    """An epoch's row of the history (``history.csv``, the log)."""
    return {
        "epoch": epoch,
        "loss": stats.loss,
        **stats.terms,
        **{f"valid {k}": v for k, v in valid.items()},
        "lr": lr,
        "seq/s": round(stats.examples_per_second),
        "seconds": round(stats.seconds, 2),
        "eval seconds": round(eval_seconds, 3),
        "best": "*" if improved else "",
    }


def training_step(
    head: Any,
    encoder: SequenceEncoder,
    head_spec: Any,
    auxiliary: AuxiliaryTerms | None,
    batches: Batches,
    generator: torch.Generator,
    parallel: bool = False,
) -> Callable[[dict[str, torch.Tensor]], Any]:
    """One fine-tuning step's loss: the head's, plus the weighted auxiliary terms on the
    sequences the batch feeds the encoder (their views drawn from ``generator``, the
    epoch's view generator). ``parallel`` (``batches`` sharded): each view is drawn for
    the global batch (:class:`~clue_fw.distributed.GlobalView`)."""

    def head_loss(batch: dict[str, torch.Tensor]) -> Any:
        with plugin_call(head, "loss"):
            return head.loss(encoder, batch)

    if auxiliary is None:
        return head_loss

    def global_view(view: Any) -> Any:
        return GlobalView(view, batches, head_spec.training_inputs)

    wrap = global_view if parallel else None

    def step(batch: dict[str, torch.Tensor]) -> Any:
        output = head_loss(batch)
        inputs = auxiliary_inputs(head_spec, batch)
        return auxiliary.add_to(output, encoder, inputs, generator, wrap)

    return step


def _is_dir(path: Path) -> bool:
    """``path`` is a directory; an unusable path (too long, unreadable) is a RecipeError
    naming finetune.init_from."""
    try:
        return is_dir(path, error=RecipeError)
    except RecipeError as exc:
        raise RecipeError(f"finetune.init_from: {exc}") from None
