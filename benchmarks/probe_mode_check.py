"""Why does ``finetune.mode: probe`` sit at the majority class? A check on frozen vectors.

``finetune.mode: probe`` trains the ``profile`` head (``nn.Linear`` on the frozen user
vector) with the fine-tuning loop: Adam at ``finetune.train.lr``, minibatches of
``finetune.train.batch_size``, cross-entropy, early stopping on validation accuracy
with ``finetune.patience``, starting from the untrained head (epoch 0), the best epoch's
weights tested. The encoder is frozen and in eval mode, so its vectors are fixed: this
script computes them once and replays that loop on them (the same algorithm, without
re-running the encoder every epoch), with variants:

* raw vectors (what the head sees) or vectors standardised on the training users;
* learning rate ``lr`` and ``10 lr``;
* early stopping on validation accuracy (the loop's ``monitor: acc``) or on validation
  cross-entropy;

against the converged L-BFGS probe of ``clue probe`` on the same vectors (fitted on the
training users only, as the head is), and the majority class. Run in the project's
environment with ``CLUE_DATA_DIR`` set::

    python benchmarks/probe_mode_check.py RUN ml-1m/users.dat --column gender --stage pretrain
    python benchmarks/probe_mode_check.py RUN ml-1m/users.dat --random   # untrained encoder
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
import torch.nn.functional as F

from clue_fw import load_run
from clue_fw.data.labels import read_label_file
from clue_fw.heads.user_level import UserLevelHeadSpec
from clue_fw.probing import Standardizer, UserSplit, fit_logistic, select_l2, user_split
from clue_fw.probing.metrics import classification_metrics


def adam_probe(
    x: torch.Tensor,
    split: UserSplit,
    *,
    lr: float,
    batch_size: int,
    epochs: int,
    patience: int,
    monitor: str,
    seed: int = 0,
) -> dict[str, Any]:
    """The fine-tuning loop of ``mode: probe`` on fixed vectors ``x`` (``[U, d]``)."""
    y, train, valid, test = split.labels, split.train, split.valid, split.test
    torch.manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], split.num_classes).double()
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)

    def score() -> float:
        with torch.no_grad():
            logits = head(x[valid])
        if monitor == "acc":
            return float((logits.argmax(dim=1) == y[valid]).double().mean())
        return -float(F.cross_entropy(logits, y[valid]))

    best, best_epoch, bad = score(), 0, 0
    best_state = {k: v.clone() for k, v in head.state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    epoch = 0
    for epoch in range(1, epochs + 1):
        order = train[torch.randperm(train.numel(), generator=generator)]
        for start in range(0, order.numel(), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(head(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        value = score()
        if value > best:
            best, best_epoch, bad = value, epoch, 0
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    head.load_state_dict(best_state)
    with torch.no_grad():
        probabilities = torch.softmax(head(x[test]), dim=1)
    predicted = probabilities.argmax(dim=1)
    share = float(torch.bincount(predicted).max()) / predicted.numel()
    positive = probabilities[:, 1] if split.num_classes == 2 else None
    return {
        **classification_metrics(y[test], predicted, positive),
        "best_epoch": best_epoch,
        "epochs": epoch,
        "modal_share": share,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("labels")
    parser.add_argument("--column", default="gender")
    parser.add_argument("--stage", default="pretrain")
    parser.add_argument("--random", action="store_true", help="an untrained encoder instead")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # thousands of tiny steps: one thread is the fastest
    loaded = load_run(args.run, args.stage, device="cpu")
    users, histories = loaded.run_user_histories()
    head = loaded.recipe.finetune.head
    seed = int(head.split_seed) if isinstance(head, UserLevelHeadSpec) else 0
    split = user_split(users, read_label_file(args.labels, args.column), seed)
    source = loaded.untrained(0) if args.random else loaded
    x = source.embed_histories(histories).double()
    train_spec = loaded.recipe.finetune.train
    lr, batch, epochs = float(train_spec.lr), int(train_spec.batch_size), 100
    patience = int(loaded.recipe.finetune.patience)
    y, train, valid, test = split.labels, split.train, split.valid, split.test
    majority = int(torch.bincount(y[train], minlength=split.num_classes).argmax())
    results: dict[str, Any] = {
        "majority": float((y[test] == majority).double().mean()),
        "vectors": {"train_std_mean": float(x[train].std(dim=0).mean())},
        "adam": {},
    }
    scale = Standardizer.fit(x[train])
    for name, features in (("raw", x), ("standardised", scale(x))):
        for rate in (lr, 10 * lr):
            for monitor in ("acc", "loss"):
                key = f"{name} lr={rate:g} monitor={monitor}"
                results["adam"][key] = adam_probe(
                    features, split, lr=rate, batch_size=batch, epochs=epochs,
                    patience=patience, monitor=monitor,
                )  # fmt: skip
                print(key, json.dumps(results["adam"][key]))
    l2, _ = select_l2(scale(x[train]), y[train], scale(x[valid]), y[valid], split.num_classes)
    fit = fit_logistic(scale(x[train]), y[train], split.num_classes, l2)
    probabilities = fit.probabilities(scale(x[test]))
    positive = probabilities[:, 1] if split.num_classes == 2 else None
    results["lbfgs"] = {
        **classification_metrics(y[test], probabilities.argmax(dim=1), positive),
        "l2": l2,
        "converged": fit.converged,
        "grad_norm": fit.grad_norm,
    }
    print("majority", results["majority"])
    print("lbfgs", json.dumps(results["lbfgs"]))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
