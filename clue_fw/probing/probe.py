"""Probe a finished run's frozen user vectors: ``clue probe`` as a library call.

>>> report = probe_run("runs/gender_clue", "ml-1m/users.dat", "age")   # doctest: +SKIP
>>> print(report.markdown())                                           # doctest: +SKIP

:func:`probe_run` loads the run (:func:`clue_fw.inference.load_run`), embeds every user
of its data with the chosen stage's encoder, frozen (the window its evaluation reads:
the ``max_len`` most recent items of the history its test split reads), and reads the
labels with the ``profile`` head's reader. Labelled users are split 80/5/15 exactly as
the ``profile`` head splits them (:func:`~clue_fw.heads.user_level.split_rows` with the
run's ``finetune.head.split_seed``), so the numbers sit next to fine-tuning's.

For each set of features, on that split (:func:`probe_features`):

* **logistic regression**: features standardised on the training users; multinomial
  logistic regression fitted to convergence by L-BFGS (:mod:`clue_fw.probing.linear`),
  its L2 strength chosen on the validation users from a grid (from the strongest
  penalty down, until weaker ones only raise the validation loss), then refitted at that
  strength on training and validation users (standardised on them) and scored on the
  test users; the report says whether every fit converged (gradient norm);
* **kNN**: cosine similarity of the standardised features, majority vote
  (:mod:`clue_fw.probing.knn`), ``k`` chosen on the validation users, then the training
  and validation users vote for the test users.

Feature sets, all on the same users and split: the run's encoder; the **random
encoder** (a freshly built, untrained encoder of the run's recipe, seeded); the **bag
of items** of the same window, as tf-idf; and its truncated SVD to the encoder's width
(:mod:`clue_fw.probing.features`). The **majority class** of the training users is the
floor. A label-free check (:mod:`clue_fw.probing.next_item`) ranks every user's next
item with the frozen vectors, next to popularity and the random encoder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.data.labels import LabelColumn, LabelFormat, align_labels, read_label_file
from clue_fw.errors import ClueError, DataError, quote
from clue_fw.heads.profile import class_order
from clue_fw.heads.user_level import UserLevelHeadSpec, split_rows
from clue_fw.inference import LoadedRun, load_run
from clue_fw.inference.run_files import Stage, check_stage
from clue_fw.metrics.representation import effective_rank
from clue_fw.probing.features import svd_rank, tfidf_bag, truncated_svd
from clue_fw.probing.knn import DEFAULT_K_GRID, knn_predict, select_k
from clue_fw.probing.linear import DEFAULT_L2_GRID, Standardizer, fit_logistic, select_l2
from clue_fw.probing.metrics import classification_metrics
from clue_fw.probing.next_item import (
    DEFAULT_KS,
    PROTOCOL,
    NextItemSplits,
    encoder_metrics,
    popularity_metrics,
)
from clue_fw.probing.report import METRIC_KEYS as METRIC_KEYS
from clue_fw.probing.report import ProbeReport as ProbeReport
from clue_fw.probing.report import ProbeRow as ProbeRow
from clue_fw.probing.report import RankerRow as RankerRow

LABEL_COLUMNS: tuple[str, ...] = ("gender", "age", "occupation")
Missing = Literal["error", "skip"]
Log = Callable[[str], None]
BAG_ENTRIES = 50_000_000
"""The bag-of-items baselines are dense ``users x items`` float64 matrices (ML-1M: 22
million entries); above this many entries they are left out, and the report says so."""


@dataclass(frozen=True)
class UserSplit:
    """Class indices (``[U]``, -1 where unlabelled) and the train/valid/test user rows."""

    labels: torch.Tensor
    classes: tuple[str, ...]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------- labels


def check_column(column: str) -> LabelColumn:
    """``column`` if it names a label column; a ClueError listing them otherwise."""
    if column not in LABEL_COLUMNS:
        raise ClueError(
            f"Unknown label column {quote(column)}: use gender, age or occupation (the columns "
            "of ML-1M users.dat and ML-100K u.user; a user,label CSV has one label column, "
            "read whatever --column says)."
        )
    return column  # type: ignore[return-value]


def check_missing(missing: str, flag: str = "missing") -> Missing:
    """``missing`` if it is ``error`` or ``skip``; a ClueError naming ``flag`` otherwise."""
    if missing not in ("error", "skip"):
        raise ClueError(
            f"{flag} must be error (every user of the run needs a label) or skip (probe the "
            f"labelled users only), not {quote(missing)}."
        )
    return missing  # type: ignore[return-value]


def user_split(
    user_ids: Sequence[int],
    labels: Mapping[int, str],
    split_seed: int,
    *,
    missing: Missing = "error",
    source: str = "the label file",
) -> UserSplit:
    """The users' classes and the ``profile`` head's 80/5/15 split of the labelled ones.

    Classes are ordered as the ``profile`` head orders them (numerically when every label
    is an integer). ``missing="error"``: every user needs a label; ``"skip"``: users
    without one are left out, as ``labels.missing: skip`` leaves them out of the head.
    """
    check_missing(missing)
    if missing == "error":
        try:
            per_user: list[str | None] = list(align_labels(labels, user_ids, source=source))
        except DataError as exc:
            raise DataError(
                f"{exc} To probe only the users that have a label, pass --missing skip "
                "(missing='skip')."
            ) from None
    else:
        per_user = [labels.get(int(user)) for user in user_ids]
    present = [label for label in per_user if label is not None]
    if not present:
        raise DataError(
            f"None of the run's {len(per_user):,} users has a label in {source}; is it the "
            "label file of the run's dataset (same user ids)?"
        )
    classes = class_order(set(present))
    if len(classes) < 2:
        raise DataError(
            f"{source} gives the run's users a single class ({classes[0]!r}); a probe needs "
            "at least two."
        )
    if len(present) < 3:
        raise DataError(
            f"Only {len(present)} of the run's users have a label in {source}; a probe needs "
            "at least 3 (train, valid, test)."
        )
    index = {label: i for i, label in enumerate(classes)}
    encoded = torch.tensor([index[x] if x is not None else -1 for x in per_user])
    labelled = torch.nonzero(encoded >= 0).reshape(-1)
    train, valid, test = split_rows(labelled, split_seed)
    return UserSplit(encoded, tuple(classes), train, valid, test)


# --------------------------------------------------------------------------- probes


def probe_features(
    name: str,
    features: torch.Tensor,
    split: UserSplit,
    *,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    k_grid: Sequence[int] = DEFAULT_K_GRID,
    knn: bool = True,
) -> list[ProbeRow]:
    """The logistic-regression and kNN rows of ``features`` (``[U, d]``, row ``u`` of
    user ``u``) on ``split`` (see the module docstring for the protocol)."""
    y = split.labels
    classes = split.num_classes
    x = features.double()
    train, valid, test = split.train, split.valid, split.test
    refit = torch.cat([train, valid])
    scale = Standardizer.fit(x[train])
    x_train, x_valid = scale(x[train]), scale(x[valid])
    chosen, grid = select_l2(x_train, y[train], x_valid, y[valid], classes, l2_grid)
    refit_scale = Standardizer.fit(x[refit])
    fit = fit_logistic(refit_scale(x[refit]), y[refit], classes, chosen)
    x_test = refit_scale(x[test])
    probabilities = fit.probabilities(x_test)
    rows = [
        ProbeRow(
            name,
            "logistic (L-BFGS)",
            f"l2={chosen:g}",
            classification_metrics(
                y[test], probabilities.argmax(dim=1), _positive_score(probabilities, classes)
            ),
            {
                "l2": chosen,
                "converged": fit.converged,
                "grad_norm": fit.grad_norm,
                "iterations": fit.iterations,
                "dim": int(x.shape[1]),
                "grid": [
                    {
                        "l2": p.l2,
                        "valid_acc": p.valid_acc,
                        "valid_log_loss": p.valid_log_loss,
                        "converged": p.converged,
                    }
                    for p in grid
                ],
            },
        )
    ]
    if knn:
        k, scores = select_k(x_train, y[train], x_valid, y[valid], classes, k_grid)
        predicted, shares = knn_predict(refit_scale(x[refit]), y[refit], x_test, k, classes)
        rows.append(
            ProbeRow(
                name,
                "kNN (cosine)",
                f"k={k}",
                classification_metrics(y[test], predicted, _positive_score(shares, classes)),
                {"k": k, "grid": [{"k": kk, "valid_acc": a} for kk, a in scores.items()]},
            )
        )
    return rows


def _positive_score(probabilities: torch.Tensor, classes: int) -> torch.Tensor | None:
    """The score of class 1 that ROC-AUC ranks (two classes only)."""
    return probabilities[:, 1] if classes == 2 else None


def majority_row(split: UserSplit) -> ProbeRow:
    """Always the most frequent class of the training users (the ``profile`` head's
    ``majority_acc``); its score is constant, so its ROC-AUC is 0.5."""
    y = split.labels
    majority = int(torch.bincount(y[split.train], minlength=split.num_classes).argmax())
    truth = y[split.test]
    predicted = torch.full_like(truth, majority)
    score = torch.zeros(truth.numel(), dtype=torch.float64)
    metrics = classification_metrics(truth, predicted, score if split.num_classes == 2 else None)
    return ProbeRow("majority class", "majority", split.classes[majority], metrics)


# --------------------------------------------------------------------------- the run


def probe_run(
    run_dir: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    column: str = "gender",
    *,
    stage: str = "finetune",
    label_format: LabelFormat = "auto",
    missing: Missing = "error",
    data_root: str | os.PathLike[str] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    seed: int = 0,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    k_grid: Sequence[int] = DEFAULT_K_GRID,
    baselines: bool = True,
    next_item: bool = True,
    log: Log | None = None,
) -> ProbeReport:
    """Probe the frozen user vectors of the run in ``run_dir`` at ``stage`` with the labels
    of ``labels`` (ML-1M ``users.dat``, ML-100K ``u.user`` or a ``user,label`` CSV;
    ``column`` picks gender, age or occupation). ``seed`` seeds the random encoder and the
    SVD; ``baselines=False`` leaves out the random encoder and the bag of items;
    ``next_item=False`` the label-free next-item check. ``log`` receives progress lines.

    Bad input (not a run, a stage the run does not have, an unreadable label file, users
    without a label, a bad grid) raises a :class:`~clue_fw.errors.ClueError` that says
    what to change.
    """
    started = time.perf_counter()
    say = log or (lambda message: None)
    chosen_stage: Stage = check_stage(stage)
    chosen_column = check_column(column)
    check_missing(missing)
    l2_values = _check_grid("l2_grid", l2_grid, float)
    k_values = _check_grid("k_grid", k_grid, int)
    if type(seed) is not int:
        raise ClueError(f"seed must be a whole number, not {quote(seed)}.")
    label_path = Path(labels)
    label_map = read_label_file(label_path, chosen_column, label_format)
    loaded = load_run(run_dir, chosen_stage, device=device, data_root=data_root)
    task_data = loaded.task_data()  # checked against the run's data fingerprint
    user_ids, histories = loaded.run_user_histories()
    split_seed = _split_seed(loaded)
    split = user_split(user_ids, label_map, split_seed, missing=missing, source=str(label_path))
    say(_split_line(split, len(user_ids)))
    say(f"embedding the users with the {chosen_stage} encoder")
    features = {
        f"encoder ({chosen_stage})": loaded.embed_histories(histories, batch_size=batch_size)
    }
    random_run: LoadedRun | None = None
    skipped: list[str] = []
    if baselines:
        random_run, baseline, skipped = _baseline_features(loaded, histories, seed, batch_size, say)
        features.update(baseline)
    rows, ranks = _probe_rows(features, split, l2_values, k_values, say)
    rankers: list[RankerRow] = []
    next_info: dict[str, Any] = {}
    if next_item:
        say("next-item check: ranking every item with the frozen vectors")
        rankers, next_info = _next_item_rows(loaded, random_run, task_data.sequences)
    info = {
        "run": str(loaded.run_dir),
        "run_id": loaded.identity.run_id,
        "stage": chosen_stage,
        "user_vector": loaded.user_vector,
        "max_len": loaded.max_len,
        "labels": {
            "file": str(label_path),
            "column": chosen_column,
            "format": label_format,
            "missing": missing,
        },
        "classes": {
            label: int((split.labels == index).sum()) for index, label in enumerate(split.classes)
        },
        "users": _user_counts(split, len(user_ids)),
        "split_seed": split_seed,
        "seed": seed,
        "effective_rank": ranks,
        "left_out": skipped,
        "protocol": _protocol(l2_values, k_values),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return ProbeReport(info, rows, rankers, next_info)


def _split_seed(loaded: LoadedRun) -> int:
    """The seed of the run's user split: its user-level head's (0 for other heads)."""
    head = loaded.recipe.finetune.head
    return int(head.split_seed) if isinstance(head, UserLevelHeadSpec) else 0


def _split_line(split: UserSplit, run_users: int) -> str:
    """The progress line that sizes the split."""
    return (
        f"{run_users:,} users, {int((split.labels >= 0).sum()):,} labelled: "
        f"{split.train.numel():,} train / {split.valid.numel():,} valid / "
        f"{split.test.numel():,} test"
    )


def _baseline_features(
    loaded: LoadedRun, histories: Csr, seed: int, batch_size: int | None, say: Log
) -> tuple[LoadedRun, dict[str, torch.Tensor], list[str]]:
    """The random encoder (with its users' vectors) and the bag-of-items features, by
    name; the bag is left out above :data:`BAG_ENTRIES` dense entries, with the reason."""
    say("embedding the users with a random encoder of the recipe")
    random_run = loaded.untrained(seed)
    features = {"random encoder": random_run.embed_histories(histories, batch_size=batch_size)}
    entries = histories.num_rows * len(loaded.catalogue)
    if entries > BAG_ENTRIES:
        reason = (
            f"bag of items: {histories.num_rows:,} users x {len(loaded.catalogue):,} "
            f"items is more than {BAG_ENTRIES:,} dense entries"
        )
        say(f"left out the {reason}")
        return random_run, features, [reason]
    return random_run, features | _bag_of_items(loaded, histories, seed), []


def _bag_of_items(loaded: LoadedRun, histories: Csr, seed: int) -> dict[str, torch.Tensor]:
    """The users' windows as a tf-idf bag of items, and its truncated SVD to the width of
    the run's encoder."""
    windows = histories.recent_windows(loaded.max_len)
    bag = tfidf_bag(windows, len(loaded.catalogue))
    rank = svd_rank(loaded.encoder.dim, (bag.shape[0], bag.shape[1]))
    return {
        "bag of items, tf-idf": bag,
        f"bag of items, SVD-{rank}": truncated_svd(bag, rank, seed),
    }


def _probe_rows(
    features: dict[str, torch.Tensor],
    split: UserSplit,
    l2_values: list[float],
    k_values: list[int],
    say: Log,
) -> tuple[list[ProbeRow], dict[str, float | None]]:
    """The majority row and every feature set's probe rows; each set's effective rank
    (``None`` for the tf-idf bag)."""
    rows = [majority_row(split)]
    ranks: dict[str, float | None] = {}
    for name, values in features.items():
        say(f"probing {name} ({values.shape[1]} features)")
        rows += probe_features(name, values, split, l2_grid=l2_values, k_grid=k_values)
        ranks[name] = None if name.endswith("tf-idf") else effective_rank(values.double())
    return rows, ranks


def _user_counts(split: UserSplit, run_users: int) -> dict[str, int]:
    """The run's users, the labelled ones and the sizes of the split."""
    return {
        "run": run_users,
        "labelled": int((split.labels >= 0).sum()),
        "train": split.train.numel(),
        "valid": split.valid.numel(),
        "test": split.test.numel(),
    }


def _protocol(l2_values: list[float], k_values: list[int]) -> dict[str, Any]:
    """How the probes were fitted and scored, in words, with the grids they searched."""
    return {
        "split": "the profile head's 80/5/15 user split (finetune.head.split_seed)",
        "logistic": "standardised on the training users; multinomial, L2 on the weights, "
        "L-BFGS (strong Wolfe, float64) to a gradient max-norm <= 1e-6; l2 chosen on "
        "validation accuracy (ties: log-loss) along the path from the strongest "
        "penalty, which stops after 2 strengths in a row raise the validation "
        "log-loss; then refitted on train + valid",
        "knn": "cosine similarity of the standardised features, majority vote (ties: "
        "summed similarity); k chosen on validation accuracy, then train + valid vote",
        "l2_grid": list(l2_values),
        "k_grid": list(k_values),
        "majority": "the most frequent class of the training users",
    }


def _next_item_rows(
    loaded: LoadedRun, random_run: LoadedRun | None, data: SequenceData
) -> tuple[list[RankerRow], dict[str, Any]]:
    """The next-item rows: the encoder's and the random encoder's vectors against their
    own item embeddings (dot and cosine), and popularity, on the same users."""
    splits = NextItemSplits.of(data.sequences)
    if splits.rows.numel() == 0:
        return [], {"users": 0, "note": "no user has 3 items, so there is no held-out item"}
    ks = list(DEFAULT_KS)
    count = len(loaded.catalogue)
    rows = []
    runs = [("encoder", loaded)] + ([("random encoder", random_run)] if random_run else [])
    for name, run in runs:
        items = run.encoder.item_embedding.weight.detach()[1 : count + 1].float().cpu()
        for similarity in ("dot", "cosine"):
            metrics = encoder_metrics(run.embed_histories, items, splits, ks, similarity)
            rows.append(RankerRow(f"{name}, {similarity}", metrics["valid"], metrics["test"]))
    popularity = popularity_metrics(splits, count, ks)
    rows.append(RankerRow("popularity", popularity["valid"], popularity["test"]))
    info = {
        "users": int(splits.rows.numel()),
        "items": count,
        "ks": ks,
        "protocol": dict(PROTOCOL),
        "note": "user vectors read the history before each held-out item; items scored by "
        "their encoder item embedding",
    }
    return rows, info


def _check_grid(name: str, values: Sequence[Any], kind: type) -> list[Any]:
    """A non-empty grid of positive numbers of ``kind``."""
    checked = []
    for value in values:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        if kind is int:
            ok = ok and float(value).is_integer()
        if not ok or value != value or value == float("inf"):
            whole = "whole numbers >= 1" if kind is int else "positive numbers"
            raise ClueError(f"{name} takes {whole}, not {quote(value)}.")
        checked.append(kind(value))
    if not checked:
        raise ClueError(f"{name} is empty; give at least one value.")
    return checked


__all__ = [
    "LABEL_COLUMNS",
    "ProbeReport",
    "ProbeRow",
    "RankerRow",
    "UserSplit",
    "check_column",
    "check_missing",
    "majority_row",
    "probe_features",
    "probe_run",
    "user_split",
]
