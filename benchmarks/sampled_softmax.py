"""Full against sampled softmax on ML-1M: validation NDCG@10 per epoch and seconds.

    CLUE_DATA_DIR=../shared/data python benchmarks/sampled_softmax.py --epochs 10 \
        --markdown docs/results/sampled_softmax.md

Trains the ``ml30_zero`` model (CLUEZero, max length 30, each user's 30 most recent
items) with each softmax setting from the same seed, on the same machine and in the
same process, one after the other, and evaluates the validation split (full ranking,
seen items excluded) after every epoch. Selection is on validation only; the test
split is not touched. The loop is the library's own (``train_epoch``, ``evaluate``)
without checkpoints, so the seconds are the steps and the evaluation only.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from clue_fw.components import BuildContext
from clue_fw.data.loading import load_data
from clue_fw.recipe import load_recipe
from clue_fw.running.assembly import training_item_counts
from clue_fw.training.loop import evaluate, train_epoch
from clue_fw.training.report import Reporter

ROOT = Path(__file__).resolve().parents[1]
SAMPLED = ["finetune.head.loss=sampled"]
SETTINGS: dict[str, list[str]] = {
    "full softmax": [],
    "sampled, 512 uniform": [
        *SAMPLED,
        "finetune.head.negatives=512",
        "finetune.head.in_batch=false",
    ],
    "sampled, 512 by popularity": [
        *SAMPLED,
        "finetune.head.negatives=512",
        "finetune.head.in_batch=false",
        "finetune.head.sampler=popularity",
    ],
    "sampled, 2048 by popularity": [
        *SAMPLED,
        "finetune.head.negatives=2048",
        "finetune.head.in_batch=false",
        "finetune.head.sampler=popularity",
    ],
    "sampled, in-batch + 256 uniform": [*SAMPLED, "finetune.head.negatives=256"],
}


def train(overrides: list[str], epochs: int, seed: int) -> dict[str, Any]:
    recipe = load_recipe(ROOT / "recipes/ml30_zero.yaml", [f"seed={seed}", *overrides])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task_data = recipe.finetune.head.prepare(load_data(recipe.data, None), None)
    context = BuildContext(
        task_data.sequences.num_items,
        recipe.data.max_len,
        item_counts=training_item_counts(recipe, task_data),
    )
    torch.manual_seed(seed)
    encoder = recipe.backbone.build(context).to(device)
    head = recipe.finetune.head.build(context, encoder, task_data).to(device)
    task = recipe.finetune.head.make_task(task_data, context, "recent").to(device)
    parameters = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=recipe.finetune.train.lr)
    order = torch.Generator(device=device).manual_seed(seed)
    batch = recipe.finetune.train.batch_size
    reporter = Reporter()
    curve, seconds = [], 0.0
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        encoder.train()
        head.train()
        train_epoch(
            lambda b: head.loss(encoder, b),
            parameters,
            optimizer,
            task.train.batches(batch, order),
            task.train.num_batches(batch),
            None,
            reporter,
            f"epoch {epoch}",
        )
        valid = evaluate(head, encoder, task.valid, 2048, split="valid")
        seconds += time.perf_counter() - started
        curve.append(round(valid["ndcg@10"], 4))
    return {"valid ndcg@10": curve, "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="Setting names to run.")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    for name, overrides in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        results[name] = train(overrides, args.epochs, args.seed)
        print(name, json.dumps(results[name]), flush=True)
    if args.markdown:
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
        lines = [
            f"ml30_zero model, each user's 30 most recent items, seed {args.seed}; {device}, "
            f"{platform.processor() or platform.machine()}, torch {torch.__version__}. "
            f"Validation NDCG@10 after each epoch; seconds of training and evaluation.",
            "",
            "| softmax | valid NDCG@10 by epoch | best | seconds |",
            "|---|---|---|---|",
        ]
        for name, found in results.items():
            curve = found["valid ndcg@10"]
            lines.append(
                f"| {name} | {', '.join(f'{v:.4f}' for v in curve)} | {max(curve):.4f} | "
                f"{found['seconds']} |"
            )
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
