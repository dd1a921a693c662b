"""The fine-tuning driver: train the head (and the encoder, unless probing), early-stop on
a validation metric, and score the best weights on the validation and test splits.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from clue_fw.components import BuildContext, SequenceEncoder, TaskData
from clue_fw.data.dataset import SequenceData
from clue_fw.data.examples import Batches, ExampleSet
from clue_fw.distributed import SINGLE, Distributed, GlobalView
from clue_fw.errors import CheckpointError, RecipeError, short_repr
from clue_fw.provenance import plugin_call
from clue_fw.recipe import pretrains
from clue_fw.running.identity import diff_keys, directory_identity, file_identity
from clue_fw.running.layout import BEST_FILE, PRETRAIN, stage_file
from clue_fw.running.os_errors import exists, is_dir
from clue_fw.running.pretrain import ENCODER_FILE, ITEM_IDS_KEY
from clue_fw.running.run_directory import RunDirectory
from clue_fw.running.stage import Stage
from clue_fw.training.auxiliary import AuxiliaryTerms, auxiliary_inputs, smallest_batch
from clue_fw.training.checkpoint import load_checkpoint, load_module_tensors, module_tensors
from clue_fw.training.loop import derive_seed
from clue_fw.training.report import Reporter

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import RecipeLike

# What fine-tuning keeps in its checkpoints' ``extra`` (a resumed one must have them).
EXTRA_FIELDS: dict[str, type] = {"best": float, "best_epoch": int, "bad_epochs": int}


def validation_status(
    epoch: int, spec: Any, monitor: str, valid: dict[str, float], extra: dict[str, Any]
) -> str:
    """``finetune epoch 3/100: valid ndcg@10 0.1234, best 0.1301 (epoch 2); stops after
    9 more epochs without a gain``: what a terminal shows after each validation."""
    others = ", ".join(f"{k} {v:.4f}" for k, v in valid.items() if k != monitor)
    left = spec.patience - extra["bad_epochs"]
    if epoch >= spec.train.epochs:
        ending = "the last epoch"
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
    head_spec = spec.head
    # Seed the head's initialisation on its own: how much randomness pre-training used
    # up depends on whether it ran in this process or was resumed as already finished.
    torch.manual_seed(derive_seed(recipe.seed, "finetune", "init"))
    head = head_spec.build(context, encoder, task_data).to(device)
    parts: dict[str, nn.Module] = {"encoder": encoder, "head": head}
    auxiliary = None
    if spec.auxiliary:  # contrastive terms added to the head's loss (docs/protocol.md)
        torch.manual_seed(derive_seed(recipe.seed, "finetune", "auxiliary"))
        auxiliary = AuxiliaryTerms.from_specs(spec.auxiliary, context, encoder).to(device)
        parts["auxiliary"] = auxiliary  # trained, saved and resumed with the rest
    module = nn.ModuleDict(parts)
    probe = spec.mode == "probe"
    if probe:
        encoder.requires_grad_(False)
    stage = Stage.training(
        "finetune",
        module,
        spec.train,
        directory,
        reporter,
        recipe.seed,
        device,
        distributed,
        extra_fields=EXTRA_FIELDS,
        patience=spec.patience,
    )
    task = head_spec.make_task(task_data, context, spec.train.history).to(device)
    monitor = spec.monitor or head_spec.monitor_default
    eval_size = spec.eval.batch_size

    def score(examples: ExampleSet, split: str) -> dict[str, float]:
        """Exact metrics of ``examples``; data-parallel: each process scores its whole
        batches, and the metrics equal one process's to the bit."""
        return distributed.evaluate(head, encoder, examples, eval_size, split)

    if not stage.try_resume():

        def start() -> None:
            if pretrains(recipe):
                pretrained = directory.stage_dir(PRETRAIN) / ENCODER_FILE
                tensors, _ = directory.load_checkpoint(pretrained, role="encoder")
                load_module_tensors(encoder, tensors, "encoder.", pretrained)
                reporter.log("finetune: starting from the pre-trained encoder")
            elif spec.init_from:  # run() loaded it into the encoder when it built it
                source = encoder_checkpoint_path(spec.init_from)
                reporter.log(f"finetune: starting from the encoder pre-trained in {source}")
            else:
                reporter.log(
                    "finetune: no pre-training (CLUEZero), encoder starts from its initialisation"
                )

        distributed.on_main(start)
        distributed.broadcast_module(module)  # the encoder rank 0 loaded
        eval_started = time.perf_counter()
        initial = score(task.valid, "valid")
        initial_seconds = round(time.perf_counter() - eval_started, 3)
        if monitor not in initial:
            raise RecipeError(
                f"finetune.monitor: {monitor!r} is not a metric of head {head_spec.kind!r}; "
                f"available: {', '.join(initial)}."
            )
        stage.history.append(
            {
                "epoch": 0,
                **{f"valid {k}": v for k, v in initial.items()},
                "eval seconds": initial_seconds,
            }
        )
        stage.extra = {"best": initial[monitor], "best_epoch": 0, "bad_epochs": 0}
        stage.save_file(
            BEST_FILE, lambda: module_tensors(module, "model."), {"role": "best", "epoch": 0}
        )
        stage.save()
    terms = "".join(
        f" + {term.weight:g} x {name} ({'+'.join(v.kind for v in term.views)} views)"
        for term, name in zip(spec.auxiliary, auxiliary.names if auxiliary else [], strict=True)
    )
    reporter.log(
        f"finetune: {head_spec.kind}{terms} on {len(task.train):,} training examples "
        f"({'linear probe of a frozen encoder' if probe else 'full fine-tuning'}); "
        f"early stopping on valid {monitor} (patience {spec.patience})"
    )
    # With auxiliary terms, a last batch smaller than their objectives need is skipped.
    smallest = smallest_batch(spec.auxiliary)
    module.train()
    if probe:
        encoder.eval()  # a frozen encoder: no dropout, representation as evaluated
    shard = distributed.shard
    while not stage.finished:
        epoch = stage.epoch + 1
        order, view_generator = stage.begin_epoch(epoch)
        batches = task.train.batches(spec.train.batch_size, order, min_size=smallest, shard=shard)
        stats = stage.train_epoch(
            epoch,
            spec.train,
            f"{head_spec.kind} head",
            step=training_step(
                head, encoder, head_spec, auxiliary, batches, view_generator, shard is not None
            ),
            batches=batches,
            num_batches=task.train.num_batches(spec.train.batch_size, smallest, shard),
        )
        eval_started = time.perf_counter()
        valid = score(task.valid, "valid")
        eval_seconds = time.perf_counter() - eval_started
        improved = valid[monitor] > stage.extra["best"]
        if improved:
            stage.extra.update(best=valid[monitor], best_epoch=epoch, bad_epochs=0)
            best_meta = {"role": "best", "epoch": epoch}
            stage.save_file(BEST_FILE, lambda: module_tensors(module, "model."), best_meta)
        else:
            stage.extra["bad_epochs"] += 1
        row = {
            "epoch": epoch,
            "loss": stats.loss,
            **stats.terms,
            **{f"valid {k}": v for k, v in valid.items()},
            "lr": stage.lr,
            "seq/s": round(stats.examples_per_second),
            "seconds": round(stats.seconds, 2),
            "eval seconds": round(eval_seconds, 3),
            "best": "*" if improved else "",
        }
        stage.history.append(row)
        stage.epoch = epoch
        stage.finished = epoch >= spec.train.epochs or stage.extra["bad_epochs"] >= spec.patience
        reporter.status(validation_status(epoch, spec, monitor, valid, stage.extra))
        stage.save(report=lambda row=row: reporter.epoch_line("finetune", row))
    reporter.epoch_table("finetune", stage.history)

    def load_best() -> None:
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
        load_module_tensors(module, tensors, "model.", best_path)

    distributed.on_main(load_best)
    distributed.broadcast_module(module)  # the best weights rank 0 loaded
    return {
        "valid": score(task.valid, "valid"),
        "test": score(task.test, "test"),
        "best_epoch": stage.extra["best_epoch"],
        "epochs": stage.epoch,
        "monitor": monitor,
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
