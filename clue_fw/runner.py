"""Run a recipe end to end: data, optional pre-training, fine-tuning, metrics.

Layout of a run directory::

    recipe.yaml                 the resolved, validated recipe
    run.log                     everything the run printed, time-stamped
    pretrain/last.safetensors   pre-training state after the last finished epoch
    pretrain/encoder.safetensors  the pre-trained encoder handed to fine-tuning
    finetune/last.safetensors   fine-tuning state after the last finished epoch
    finetune/best.safetensors   weights with the best validation metric
    metrics.json                final validation and test metrics (written last)

Every epoch ends with a checkpoint, so ``--resume`` continues from the last
finished epoch. Randomness is re-seeded from (seed, stage, epoch) at the start
of every epoch, which makes a resumed run follow the uninterrupted one exactly.
"""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel
from rich.console import Console
from torch import nn

import clue_fw
from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.components import BuildContext, SequenceEncoder, TaskData
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.data.examples import ExampleSet
from clue_fw.data.loading import load_data
from clue_fw.errors import CheckpointError, RecipeError, RunDirectoryError, TrainingError
from clue_fw.recipe import recipe_to_yaml, validate_recipe
from clue_fw.resources import check_memory
from clue_fw.training.checkpoint import (
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    load_module_tensors,
    module_tensors,
    optimizer_tensors,
    restore_optimizer,
    save_checkpoint,
)
from clue_fw.training.loop import EpochStats, derive_seed, evaluate, train_epoch
from clue_fw.training.report import Reporter


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(
            f"device {name!r} was requested but CUDA is not available; use auto or cpu."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RecipeError(
            f"device {name!r} was requested but MPS is not available; use auto or cpu."
        )
    return device


def versions() -> dict[str, str]:
    return {
        "clue_fw": clue_fw.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def default_run_dir(recipe: Any) -> Path:
    return Path("runs") / (recipe.name or "recipe") / time.strftime("%Y%m%d-%H%M%S")


def _seed_epoch(
    seed: int, stage: str, epoch: int, device: torch.device
) -> tuple[torch.Generator, torch.Generator]:
    """Re-seed global RNGs (dropout) and return (order, augmentation) generators."""
    torch.manual_seed(derive_seed(seed, stage, epoch, "global"))
    order = torch.Generator(device=device).manual_seed(derive_seed(seed, stage, epoch, "order"))
    views = torch.Generator(device=device).manual_seed(derive_seed(seed, stage, epoch, "views"))
    return order, views


class _Stage:
    """Shared bookkeeping of one training stage: checkpoints and history."""

    def __init__(
        self,
        name: str,
        run_dir: Path,
        recipe_json: dict[str, Any],
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        reporter: Reporter,
    ) -> None:
        self.name = name
        self.dir = run_dir / name
        self.recipe_json = recipe_json
        self.module = module
        self.optimizer = optimizer
        self.reporter = reporter
        self.epoch = 0
        self.finished = False
        self.history: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}

    @property
    def last_path(self) -> Path:
        return self.dir / "last.safetensors"

    def metadata(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe_json,
            "stage": self.name,
            "epoch": self.epoch,
            "finished": self.finished,
            "history": self.history,
            "extra": self.extra,
            "versions": versions(),
        }

    def save(self) -> None:
        tensors = module_tensors(self.module, "model.")
        optim, structure = optimizer_tensors(self.optimizer)
        tensors.update(optim)
        save_checkpoint(self.last_path, tensors, {**self.metadata(), "optimizer": structure})

    def train_epoch(
        self,
        epoch: int,
        train: Any,
        loss_name: str,
        step: Callable[[dict[str, torch.Tensor]], Any],
        batches: Iterable[dict[str, torch.Tensor]],
        num_batches: int,
    ) -> EpochStats:
        """One epoch of :func:`train_epoch`; a numerical failure says which checkpoint is kept."""
        try:
            return train_epoch(
                step,
                [p for p in self.module.parameters() if p.requires_grad],
                self.optimizer,
                batches,
                num_batches,
                train.grad_clip,
                self.reporter,
                f"{self.name} epoch {epoch}/{train.epochs}",
                first_step=(epoch - 1) * num_batches,
                loss_name=loss_name,
            )
        except TrainingError as exc:
            if self.last_path.is_file():
                kept = f"the last good checkpoint, {self.last_path} (epoch {self.epoch}), is kept."
            else:
                kept = f"no {self.name} epoch had finished, so no {self.name} checkpoint exists."
            raise TrainingError(
                f"{exc} The run stopped; {kept} Lower {self.name}.train.lr or set "
                f"{self.name}.train.grad_clip and start a new run: training is seeded, so "
                "--resume with the same recipe would repeat the same steps."
            ) from None

    def try_resume(self) -> bool:
        if not self.last_path.exists():
            return False
        tensors, metadata = load_checkpoint(self.last_path)
        if metadata.get("recipe") != self.recipe_json:
            raise RunDirectoryError(
                f"{self.last_path} was written by a different recipe; refusing to resume. "
                "Start a new run (--out) instead."
            )
        load_module_tensors(self.module, tensors, "model.", self.last_path)
        restore_optimizer(self.optimizer, tensors, metadata.get("optimizer", {}))
        try:
            self.epoch = int(metadata["epoch"])
            self.finished = bool(metadata["finished"])
            self.history = list(metadata["history"])
            self.extra = dict(metadata.get("extra", {}))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{self.last_path} has incomplete training metadata ({error!r}); it was not "
                "written by this version of clue_fw. Start a new run (--out) instead."
            ) from error
        self.reporter.log(
            f"{self.name}: resumed after epoch {self.epoch}"
            + (" (finished)" if self.finished else "")
        )
        return True


def _adam(parameters: list[nn.Parameter], train: Any) -> torch.optim.Adam:
    return torch.optim.Adam(parameters, lr=train.lr, weight_decay=train.weight_decay)


def pretrain_examples(train: Csr, max_len: int, history: str) -> ExampleSet:
    """Pre-training sequences from ``train``: the part of each user's sequence that the
    downstream task allows (:meth:`HeadSpec.pretrain_sequences`)."""
    if history == "recent":
        windows = train.recent_windows(max_len)
    else:
        windows = train.covering_windows(max_len, stride=max_len, min_end=1)
    return ExampleSet({"items": windows[(windows != 0).any(dim=1)]})


def run_pretrain(
    recipe: Any,
    task_data: TaskData,
    context: BuildContext,
    encoder: SequenceEncoder,
    device: torch.device,
    run_dir: Path,
    recipe_json: dict[str, Any],
    reporter: Reporter,
) -> None:
    spec = recipe.pretrain
    objective = spec.objective.build(context, encoder).to(device)
    views = ViewPipeline.from_specs(spec.views, context).to(device)
    module = nn.ModuleDict({"encoder": encoder, "objective": objective, "views": views})
    parameters = [p for p in module.parameters() if p.requires_grad]
    stage = _Stage(
        "pretrain", run_dir, recipe_json, module, _adam(parameters, spec.train), reporter
    )
    encoder_path = stage.dir / "encoder.safetensors"
    stage.try_resume()
    if stage.finished and encoder_path.exists():
        return
    sequences = recipe.finetune.head.pretrain_sequences(task_data)
    examples = pretrain_examples(sequences, context.max_len, spec.train.history).to(device)
    reporter.log(
        f"pretrain: {spec.objective.kind} with views "
        f"{'+'.join(v.kind for v in spec.views)} on {len(examples):,} sequences"
    )
    module.train()
    while stage.epoch < spec.train.epochs:
        epoch = stage.epoch + 1
        order, view_generator = _seed_epoch(recipe.seed, "pretrain", epoch, device)

        def step(batch: dict[str, torch.Tensor], generator: Any = view_generator) -> Any:
            return objective(encoder, batch["items"], views, generator)

        stats = stage.train_epoch(
            epoch,
            spec.train,
            f"{spec.objective.kind} objective",
            step=step,
            batches=examples.batches(spec.train.batch_size, order, min_size=2),
            num_batches=examples.num_batches(spec.train.batch_size, min_size=2),
        )
        row = {
            "epoch": epoch,
            "loss": stats.loss,
            **stats.terms,
            "seq/s": round(stats.examples_per_second),
            "seconds": round(stats.seconds, 2),
        }
        stage.history.append(row)
        stage.epoch = epoch
        stage.finished = epoch >= spec.train.epochs
        reporter.epoch_line("pretrain", row)
        stage.save()
    reporter.epoch_table("pretrain", stage.history)
    tensors = module_tensors(encoder, "encoder.")
    # The catalogue the item embeddings index: checked by runs that start from this encoder.
    tensors[ITEM_IDS_KEY] = torch.from_numpy(task_data.sequences.item_ids.astype("int64"))
    save_checkpoint(
        encoder_path,
        tensors,
        {
            "recipe": recipe_json,
            "stage": "pretrain",
            "kind": "encoder",
            "epoch": stage.epoch,
            "versions": versions(),
        },
    )


ITEM_IDS_KEY = "vocabulary.item_ids"


def encoder_checkpoint_path(init_from: str) -> Path:
    """``finetune.init_from`` as a file: a run directory means its pre-trained encoder."""
    path = Path(init_from)
    if path.is_dir():
        path = path / "pretrain" / "encoder.safetensors"
        if not path.is_file():
            raise RecipeError(
                f"finetune.init_from: {init_from} is a directory without "
                "pretrain/encoder.safetensors; point it at a run that pre-trained (and "
                "finished pre-training), or at an encoder checkpoint file."
            )
    return path


def check_encoder_checkpoint(
    init_from: str, recipe: Any, data: SequenceData
) -> tuple[Path, dict[str, torch.Tensor]]:
    """Read ``finetune.init_from`` and check that it fits this run; return its tensors."""
    path = encoder_checkpoint_path(init_from)
    tensors, metadata = load_checkpoint(path)
    if metadata.get("kind") != "encoder":
        raise CheckpointError(
            f"finetune.init_from: {path} is not a pre-trained encoder (it holds "
            f"{metadata.get('stage', 'unknown')} state); use a run's "
            "pretrain/encoder.safetensors."
        )
    theirs = (metadata.get("recipe") or {}).get("backbone")
    ours = recipe.backbone.model_dump(mode="json")
    if theirs != ours:
        changed = sorted(_diff_keys(theirs, ours)) if isinstance(theirs, dict) else []
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
    recipe: Any,
    task_data: TaskData,
    context: BuildContext,
    encoder: SequenceEncoder,
    device: torch.device,
    run_dir: Path,
    recipe_json: dict[str, Any],
    reporter: Reporter,
) -> dict[str, Any]:
    spec = recipe.finetune
    head_spec = spec.head
    # Seed the head's initialisation on its own: how much randomness pre-training used
    # up depends on whether it ran in this process or was resumed as already finished.
    torch.manual_seed(derive_seed(recipe.seed, "finetune", "init"))
    head = head_spec.build(context, encoder, task_data).to(device)
    module = nn.ModuleDict({"encoder": encoder, "head": head})
    probe = spec.mode == "probe"
    if probe:
        encoder.requires_grad_(False)
    parameters = [p for p in module.parameters() if p.requires_grad]
    stage = _Stage(
        "finetune", run_dir, recipe_json, module, _adam(parameters, spec.train), reporter
    )
    best_path = stage.dir / "best.safetensors"
    task = head_spec.make_task(task_data, context, spec.train.history).to(device)
    monitor = spec.monitor or head_spec.monitor_default
    eval_size = spec.eval.batch_size

    if not stage.try_resume():
        pretrained = run_dir / "pretrain" / "encoder.safetensors"
        if recipe.pretrain is not None and recipe.pretrain.objective.trains:
            tensors, _ = load_checkpoint(pretrained)
            load_module_tensors(encoder, tensors, "encoder.", pretrained)
            reporter.log("finetune: starting from the pre-trained encoder")
        elif spec.init_from:  # run() loaded it into the encoder when it built it
            source = encoder_checkpoint_path(spec.init_from)
            reporter.log(f"finetune: starting from the encoder pre-trained in {source}")
        else:
            reporter.log(
                "finetune: no pre-training (CLUEZero), encoder starts from its initialisation"
            )
        initial = evaluate(head, encoder, task.valid, eval_size)
        if monitor not in initial:
            raise RecipeError(
                f"finetune.monitor: {monitor!r} is not a metric of head {head_spec.kind!r}; "
                f"available: {', '.join(initial)}."
            )
        stage.history.append({"epoch": 0, **{f"valid {k}": v for k, v in initial.items()}})
        stage.extra = {"best": initial[monitor], "best_epoch": 0, "bad_epochs": 0}
        save_checkpoint(
            best_path,
            module_tensors(module, "model."),
            {"recipe": recipe_json, "stage": "finetune", "epoch": 0},
        )
        stage.save()
    reporter.log(
        f"finetune: {head_spec.kind} on {len(task.train):,} training examples "
        f"({'linear probe of a frozen encoder' if probe else 'full fine-tuning'}); "
        f"early stopping on valid {monitor} (patience {spec.patience})"
    )
    module.train()
    if probe:
        encoder.eval()  # a frozen encoder: no dropout, representation as evaluated
    while not stage.finished:
        epoch = stage.epoch + 1
        order, _ = _seed_epoch(recipe.seed, "finetune", epoch, device)
        stats = stage.train_epoch(
            epoch,
            spec.train,
            f"{head_spec.kind} head",
            step=lambda batch: head.loss(encoder, batch),
            batches=task.train.batches(spec.train.batch_size, order),
            num_batches=task.train.num_batches(spec.train.batch_size),
        )
        valid = evaluate(head, encoder, task.valid, eval_size)
        improved = valid[monitor] > stage.extra["best"]
        if improved:
            stage.extra.update(best=valid[monitor], best_epoch=epoch, bad_epochs=0)
            save_checkpoint(
                best_path,
                module_tensors(module, "model."),
                {"recipe": recipe_json, "stage": "finetune", "epoch": epoch},
            )
        else:
            stage.extra["bad_epochs"] += 1
        row = {
            "epoch": epoch,
            "loss": stats.loss,
            **{f"valid {k}": v for k, v in valid.items()},
            "seq/s": round(stats.examples_per_second),
            "seconds": round(stats.seconds, 2),
            "best": "*" if improved else "",
        }
        stage.history.append(row)
        stage.epoch = epoch
        stage.finished = epoch >= spec.train.epochs or stage.extra["bad_epochs"] >= spec.patience
        reporter.epoch_line("finetune", row)
        stage.save()
    reporter.epoch_table("finetune", stage.history)

    tensors, _ = load_checkpoint(best_path)
    load_module_tensors(module, tensors, "model.", best_path)
    metrics = {
        "valid": evaluate(head, encoder, task.valid, eval_size),
        "test": evaluate(head, encoder, task.test, eval_size),
        "best_epoch": stage.extra["best_epoch"],
        "epochs": stage.epoch,
        "monitor": monitor,
    }
    return metrics


# Names of the temporary files clue_fw's atomic writers create next to their targets
# (``.<name>.<random>.tmp``); a writer killed before its rename leaves one behind.
_TEMP_FILE = re.compile(
    r"^\.(recipe\.yaml|metrics\.json|(last|best|encoder)\.safetensors)\..+\.tmp$"
)


def stale_temp_files(run_dir: Path) -> list[Path]:
    """Temp files of interrupted atomic writes in a run directory and its stage folders."""
    found = []
    for folder in (run_dir, run_dir / "pretrain", run_dir / "finetune"):
        if folder.is_dir():
            found += [p for p in folder.iterdir() if p.is_file() and _TEMP_FILE.match(p.name)]
    return sorted(found)


def prepare_run_dir(
    recipe: Any, out: Path | None, resume: Path | None, overwrite: bool
) -> tuple[Path, bool]:
    """Create, replace or check the run directory.

    Returns ``(run_dir, fresh)``; ``fresh`` means the run starts from scratch and
    ``recipe.yaml`` must be written. On ``--resume``, temp files left by a killed
    writer are removed; a directory that holds nothing but the temp file of its
    ``recipe.yaml`` (a run killed while writing its first file) starts from scratch
    in place. An empty directory is not a run directory: start it with ``--out``.
    """
    if resume is not None:
        stored_path = resume / "recipe.yaml"
        temps = stale_temp_files(resume) if resume.is_dir() else []
        if not stored_path.is_file():
            if temps and all(p in temps for p in resume.iterdir()):
                # killed while writing recipe.yaml, its first file: start in place
                for temp in temps:
                    temp.unlink(missing_ok=True)
                return resume, True
            raise RunDirectoryError(
                f"Cannot resume: {resume} holds no recipe.yaml, so it is not a clue_fw run "
                "directory. If a run was killed before it wrote anything, start it again with "
                "--out (an empty directory is accepted)."
            )
        try:
            stored = yaml.safe_load(stored_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            raise RunDirectoryError(
                f"Cannot resume {resume}: its recipe.yaml is unreadable ({type(exc).__name__}). "
                "Start a new run with --out."
            ) from None
        current = recipe.model_dump(mode="json")
        if stored != current:
            changed = sorted(_diff_keys(stored, current))
            raise RunDirectoryError(
                f"Cannot resume {resume}: the recipe differs from the one it was started with "
                f"(changed: {', '.join(changed[:8]) or 'structure'}). Resume with the same "
                "recipe and --set values, or start a new run."
            )
        for temp in temps:
            temp.unlink(missing_ok=True)
        return resume, False
    run_dir = out if out is not None else default_run_dir(recipe)
    if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise RunDirectoryError(
            f"Output directory {run_dir} exists and is not empty. Choose another --out, "
            "pass --overwrite to replace its contents, or --resume it."
        )
    if run_dir.exists() and overwrite:
        import shutil

        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, True


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = []
        for key in set(a) | set(b):
            keys += _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return keys
    return [] if a == b else [prefix.rstrip(".")]


def run(
    recipe: BaseModel | dict[str, Any],
    out: Path | str | None = None,
    resume: Path | str | None = None,
    overwrite: bool = False,
    console: Console | None = None,
    data_root: Path | None = None,
) -> RunResult:
    """Run a validated recipe (or a recipe mapping) and return its run directory and metrics."""
    if isinstance(recipe, dict):
        recipe = validate_recipe(recipe)
    assert isinstance(recipe, BaseModel)
    r: Any = recipe
    device = resolve_device(r.device)
    started = time.perf_counter()
    task_data = r.finetune.head.prepare(load_data(r.data, data_root), data_root)
    data = task_data.sequences
    context = BuildContext(num_items=data.num_items, max_len=r.data.max_len)
    out_path = Path(out) if out is not None else None
    resume_path = Path(resume) if resume is not None else None
    initial_encoder: tuple[Path, dict[str, torch.Tensor]] | None = None
    if resume_path is None or not (resume_path / "metrics.json").is_file():
        # Before the run directory exists: a recipe that cannot fit is refused up front.
        check_memory(r, data, context, device, task_data)
        if r.finetune.init_from:
            initial_encoder = check_encoder_checkpoint(r.finetune.init_from, r, data)
    run_dir, fresh = prepare_run_dir(r, out_path, resume_path, overwrite)
    reporter = Reporter(console, run_dir / "run.log")
    recipe_json = r.model_dump(mode="json")
    if fresh:
        # The first file of a run: from here on --resume can always continue it.
        atomic_write_bytes(run_dir / "recipe.yaml", recipe_to_yaml(r).encode())
        if resume_path is not None:
            reporter.log(
                f"{run_dir} was interrupted before it wrote anything; starting from scratch."
            )
    elif (run_dir / "metrics.json").exists():
        import json

        reporter.log(f"{run_dir} already finished; nothing to resume.")
        return RunResult(run_dir, json.loads((run_dir / "metrics.json").read_text()))
    reporter.log(f"run directory: {run_dir}")
    reporter.log(f"data: {data.summary()}; device: {device}")
    task_stats = task_data.stats()
    if task_stats:
        reporter.log(f"task: {task_stats}")

    torch.manual_seed(derive_seed(r.seed, "init"))
    encoder = r.backbone.build(context).to(device)
    if initial_encoder is not None:  # finetune.init_from, read and checked above
        load_module_tensors(encoder, initial_encoder[1], "encoder.", initial_encoder[0])
    try:
        if r.pretrain is not None and r.pretrain.objective.trains:
            run_pretrain(r, task_data, context, encoder, device, run_dir, recipe_json, reporter)
        metrics = run_finetune(
            r, task_data, context, encoder, device, run_dir, recipe_json, reporter
        )
    except torch.cuda.OutOfMemoryError as exc:
        raise TrainingError(
            f"Out of GPU memory ({exc}); lower the batch sizes in the recipe."
        ) from None
    except CheckpointError:
        raise
    metrics.update(
        recipe=r.name,
        seed=r.seed,
        device=str(device),
        seconds=round(time.perf_counter() - started, 2),
        task=task_stats,
        data={
            "users": data.num_users,
            "items": data.num_items,
            "interactions": data.num_interactions,
        },
        versions=versions(),
    )
    atomic_write_json(run_dir / "metrics.json", metrics)
    reporter.metrics_table({"valid": metrics["valid"], "test": metrics["test"]})
    reporter.log(f"metrics written to {run_dir / 'metrics.json'}")
    return RunResult(run_dir, metrics)
