"""The pre-training driver: train the encoder with the recipe's objective and views.

It writes ``pretrain/last.safetensors`` after every epoch and, once the last epoch
has finished, ``pretrain/encoder.safetensors``: the encoder's weights plus the item
catalogue they index (:data:`ITEM_IDS_KEY`), which fine-tuning (here, or in another
run through ``finetune.init_from``) starts from.

Data-parallel (:mod:`clue_fw.distributed`): every process trains on its part of each
global batch, with BatchNorm over the global batch and views drawn for the whole of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.components import BuildContext, SequenceEncoder, TaskData
from clue_fw.data.csr import Csr
from clue_fw.data.examples import ExampleSet
from clue_fw.data.windows import training_windows
from clue_fw.distributed import SINGLE, Distributed, GlobalView
from clue_fw.provenance import plugin_call
from clue_fw.running.layout import ENCODER_FILE
from clue_fw.running.os_errors import exists
from clue_fw.running.run_directory import RunDirectory
from clue_fw.running.stage import Stage
from clue_fw.training.checkpoint import module_tensors
from clue_fw.training.monitor import RepresentationMonitor, collapse_warning
from clue_fw.training.report import Reporter

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import RecipeLike

ITEM_IDS_KEY = "vocabulary.item_ids"
"""The tensor of an encoder checkpoint that lists the catalogue its embeddings index."""


def pretrain_examples(train: Csr, max_len: int, history: str) -> ExampleSet:
    """Pre-training sequences from ``train``: the part of each user's sequence that the
    downstream task allows (:meth:`HeadSpec.pretrain_sequences`), cut into windows of
    ``max_len`` by :func:`~clue_fw.data.windows.training_windows` (``all``: windows that
    hold every interaction once)."""
    windows = training_windows(train, max_len, history, stride=max_len, min_items=1)
    return ExampleSet({"items": windows})


def run_pretrain(
    recipe: RecipeLike,
    task_data: TaskData,
    context: BuildContext,
    encoder: SequenceEncoder,
    device: torch.device,
    directory: RunDirectory,
    reporter: Reporter,
    distributed: Distributed = SINGLE,
) -> None:
    """Pre-train ``encoder`` in place (or resume it) and write ``encoder.safetensors``."""
    spec = recipe.pretrain
    objective = spec.objective.build(context, encoder).to(device)
    views = ViewPipeline.from_specs(spec.views, context).to(device)
    module = nn.ModuleDict({"encoder": encoder, "objective": objective, "views": views})
    stage = _pretrain_stage(recipe, module, directory, reporter, device, distributed)
    stage.try_resume()
    if distributed.on_main(lambda: stage.finished and exists(stage.path(ENCODER_FILE))):
        return
    sequences = recipe.finetune.head.pretrain_sequences(task_data)
    examples = pretrain_examples(sequences, context.max_len, spec.train.history).to(device)
    reporter.log(
        f"pretrain: {spec.objective.kind} with views "
        f"{'+'.join(v.kind for v in spec.views)} on {len(examples):,} sequences"
    )
    # The encoder's own user vectors, measured after every epoch (history.csv rep_*): the
    # objective's loss and z_std cannot see dimensional collapse.
    monitor = RepresentationMonitor.from_sequences(
        sequences.to(device),
        context.max_len,
        views,
        how=recipe.finetune.head.reads_user_vector,
        seed=recipe.seed,
    )
    # A last batch of a single sequence is skipped (BatchNorm needs two rows, and one
    # row is a noisy step for any objective), or of fewer than the objective needs.
    smallest = max(2, spec.objective.min_batch_size)
    shard = distributed.shard
    module.train()
    while stage.epoch < spec.train.epochs:
        epoch = stage.epoch + 1
        order, view_generator = stage.begin_epoch(epoch)
        batches = examples.batches(spec.train.batch_size, order, min_size=smallest, shard=shard)
        # Data-parallel: each row's view is drawn as in one process (GlobalView).
        view: Any = views if shard is None else GlobalView(views, batches, "items")

        def step(
            batch: dict[str, torch.Tensor], generator: Any = view_generator, view: Any = view
        ) -> Any:
            with plugin_call(objective, "forward"):
                return objective(encoder, batch["items"], view, generator)

        stats = stage.train_epoch(
            epoch,
            spec.train,
            f"{spec.objective.kind} objective",
            step=step,
            batches=batches,
            num_batches=examples.num_batches(spec.train.batch_size, smallest, shard),
        )
        with plugin_call(encoder, "forward"):  # a plugin backbone's error names it
            representation = monitor.measure(encoder)
        row = {
            "epoch": epoch,
            "loss": stats.loss,
            **stats.terms,
            **representation,
            "lr": stage.lr,
            "seq/s": round(stats.examples_per_second),
            "seconds": round(stats.seconds, 2),
        }
        stage.history.append(row)
        stage.epoch = epoch
        stage.finished = epoch >= spec.train.epochs
        warning = collapse_warning(row, encoder.dim)

        def report(row: dict[str, Any] = row, warning: str | None = warning) -> None:
            reporter.epoch_line("pretrain", row)
            if warning:
                reporter.log(warning, style="yellow")

        stage.save(report=report)
    reporter.epoch_table("pretrain", stage.history)
    _save_encoder(stage, encoder, task_data)


def _pretrain_stage(
    recipe: RecipeLike,
    module: nn.Module,
    directory: RunDirectory,
    reporter: Reporter,
    device: torch.device,
    distributed: Distributed,
) -> Stage:
    """The pre-training stage of ``module`` (encoder, objective, views), its BatchNorm
    statistics global or per process as the objective says."""
    return Stage.training(
        "pretrain",
        module,
        recipe.pretrain.train,
        directory,
        reporter,
        recipe.seed,
        device,
        distributed,
        global_batchnorm=recipe.pretrain.objective.global_batchnorm(),
    )


def _save_encoder(stage: Stage, encoder: SequenceEncoder, task_data: TaskData) -> None:
    """Write what pre-training hands to fine-tuning: the encoder's weights and the item
    catalogue its embeddings index (checked by runs that start from this encoder)."""
    tensors = module_tensors(encoder, "encoder.")
    tensors[ITEM_IDS_KEY] = torch.from_numpy(task_data.sequences.item_ids.astype("int64"))
    stage.save_file(
        ENCODER_FILE, tensors, {"kind": "encoder", "role": "encoder", "epoch": stage.epoch}
    )
