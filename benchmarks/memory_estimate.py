"""Compare clue_fw's memory estimate (clue_fw.resources) with the measured CUDA peak.

Usage (from the repository root, on a CUDA machine)::

    CLUE_DATA_DIR=../shared/data python benchmarks/memory_estimate.py \
        recipes/ml30_dropout.yaml recipes/table2/gender_masked_item.yaml --set ...

For each recipe it builds the run's modules on the GPU and measures, with
``torch.cuda.max_memory_allocated``, the peak of one pre-training step, one
fine-tuning step (forward, backward and Adam step, on a full batch) and one
evaluation batch, each from a clean peak counter with the model already resident.
Resident tensors (weights, Adam state, the task's example tensors) count, as they do in
a run. It prints them beside the estimate of the same phase, as a markdown table. The
estimate is meant to be a lower bound of the largest tensors (it is used to refuse
recipes that plainly cannot fit), so a ratio a little below 1 is what it aims for.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.components import BuildContext, TaskData
from clue_fw.data.loading import load_data
from clue_fw.recipe import load_recipe, pretrains
from clue_fw.resources import estimate_phases, size
from clue_fw.running.pretrain import pretrain_examples


def measure(step: Any, device: torch.device) -> int:
    """Peak bytes allocated on ``device`` while ``step`` runs, resident tensors included."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def train_step(module: nn.Module, loss: Any) -> Any:
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss().loss.backward()
        optimizer.step()

    step()  # Adam state exists from here on, as in a running training
    return step


def measured_phases(
    recipe: Any, task_data: TaskData, context: BuildContext, device: torch.device
) -> dict[str, int]:
    head_spec = recipe.finetune.head
    generator = torch.Generator(device=device).manual_seed(0)
    found: dict[str, int] = {}
    encoder = recipe.backbone.build(context).to(device)
    if pretrains(recipe):
        spec = recipe.pretrain
        objective = spec.objective.build(context, encoder).to(device)
        views = ViewPipeline.from_specs(spec.views, context).to(device)
        examples = pretrain_examples(
            head_spec.pretrain_sequences(task_data), context.max_len, spec.train.history
        ).to(device)
        batch = next(examples.batches(spec.train.batch_size, generator, min_size=2))
        module = nn.ModuleDict({"encoder": encoder, "objective": objective})
        step = train_step(module, lambda: objective(encoder, batch["items"], views, generator))
        found["a pre-training step"] = measure(step, device)
        del module, objective, step
    head = head_spec.build(context, encoder, task_data).to(device)
    task = head_spec.make_task(task_data, context, recipe.finetune.train.history).to(device)
    batch = next(task.train.batches(recipe.finetune.train.batch_size, generator))
    module = nn.ModuleDict({"encoder": encoder, "head": head})
    step = train_step(module, lambda: head.loss(encoder, batch))
    found["a fine-tuning step"] = measure(step, device)
    encoder.eval()
    eval_batch = next(task.test.batches(recipe.finetune.eval.batch_size))
    with torch.no_grad():
        found["an evaluation batch"] = measure(
            lambda: head.metric_sums(encoder, eval_batch), device
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipes", nargs="+", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/memory_estimate.py measures CUDA memory: run it on a GPU.")
    device = torch.device("cuda")
    print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}\n")
    print("| recipe | phase | estimate | measured peak | estimate / measured |")
    print("|---|---|---|---|---|")
    for path in args.recipes:
        recipe = load_recipe(path)
        task_data = recipe.finetune.head.prepare(load_data(recipe.data), None)
        data = task_data.sequences
        context = BuildContext(num_items=data.num_items, max_len=recipe.data.max_len)
        estimate = {
            phase.name: phase.total
            for phase in estimate_phases(
                recipe, context, data.num_users, data.num_interactions, device, task_data
            )
        }
        for name, peak in measured_phases(recipe, task_data, context, device).items():
            ratio = estimate[name] / peak if peak else float("nan")
            print(f"| {path.stem} | {name} | {size(estimate[name])} | {size(peak)} | {ratio:.2f} |")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
