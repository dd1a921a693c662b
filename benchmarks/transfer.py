"""Transfer at scale: where does pre-training pay off, on synthetic users with planted truth?

Usage (from the repository root)::

    python benchmarks/transfer.py --users 1000000 --data-root /data --seeds 0 1 2 \
        --jobs 8 --deadline 420 --runs-dir runs/transfer

The paper's gains are measured on about 1.5M users per task; ML-1M has 6,040. This
script simulates the scale with ``clue data synth --attributes --cold-start``
(docs/synthetic.md): ``--users`` users (and as many items) whose sequences carry three
planted attributes (``easy``, ``hard``, the 6-class ``taste``) and a cold-start target
domain. The files go to ``DATA_ROOT/synth/transfer_u<N>.*`` and are reused while their
fingerprint (``transfer_u<N>.json``: the generator's arguments and each file's size)
matches; otherwise they are written again.

Then it runs the label-efficiency study of ``benchmarks/label_efficiency.py`` (the same
machinery, with this study's tables) on the recipes ``recipes/synth_transfer/``:
pre-training once per method (``clue``: CLUE as fixed, InfoNCE over split views with the
mean-of-item-embeddings encoder; ``clue_paper``: the paper's SimSiam form with dropout
views; ``masked_item``; ``infonce``: InfoNCE with dropout views on the Transformer) and seed
on all users' sequences (the four tasks read the same sequence file, so they share it), no
pre-training (``zero``, CLUEZero; ``item_mean``, the fixed CLUE's encoder untrained) and a
bag of items (``bag``, the NFM backbone);
fine-tuning each task's head with 0.01%, 0.1%, 1%, 10% and 100% of the labelled
training users (nested subsets; validation and test users fixed), in full fine-tuning
and ``probe`` mode (``--modes`` also takes ``lpft``, LP-FT: the probe, then full
fine-tuning, and ``full_lr01``, full fine-tuning with the encoder at a tenth of the
learning rate). The smallest fraction keeps ``ceil(fraction x n_train)`` users, at
least one whenever the task has a training user (``labelled_count``): 0.01% of 16,000
training users is 2. Runs are skipped when finished and resumed when interrupted;
``--deadline`` stops starting runs; ``--jobs`` and ``--gpus`` spread them.

Writes ``docs/results/transfer.{md,json}`` and ``docs/results/transfer_<task>.png``
(metric against the number of labelled users, log x, bars: standard error over seeds),
and states per task and mode from how many labelled users on pre-training stops paying
off (:func:`payoff`), computed from the numbers: the best pre-trained method against the
best method without pre-training (CLUEZero, the untrained item-mean encoder, the bag), so
that what an encoder gains untrained is not credited to pre-training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import label_efficiency as le

ROOT = Path(__file__).resolve().parent.parent

TASKS = {  # recipe prefix: (title, main metric, metrics kept per cell)
    "easy": ("Easy attribute (2 classes, best 0.95)", "acc", ("acc", "macro_f1", "majority_acc")),
    "hard": ("Hard attribute (2 classes, best 0.80)", "acc", ("acc", "macro_f1", "majority_acc")),
    "taste": ("Taste (6 classes, best ~0.92)", "acc", ("acc", "macro_f1", "majority_acc")),
    "coldstart": ("Cold-start target domain", "mrr@10", ("mrr@10", "recall@10", "ndcg@10")),
}
METHODS = ("clue", "item_mean", "clue_paper", "masked_item", "infonce", "zero", "bag")
FRACTIONS = (0.0001, 0.01, 1.0, 0.001, 0.1)  # priority order: the ends and middle first
GENERATOR_SEED = 0
STANDARD_ERRORS = 2.0
"""CLUEZero "within" the best pre-trained method: less than this many standard errors of
the difference below it."""


# --------------------------------------------------------------------------- the data


def data_stem(users: int) -> str:
    return f"synth/transfer_u{users}"


def data_files(root: Path, users: int) -> dict[str, Path]:
    """Every file ``clue data synth --attributes --cold-start`` writes for ``users``."""
    stem = root / data_stem(users)
    return {
        "sequences": stem.with_name(stem.name + ".txt"),
        **{name: stem.with_name(f"{stem.name}_{name}.csv") for name in ("easy", "hard", "taste")},
        "target": stem.with_name(stem.name + "_target.txt"),
    }


def generator_arguments(users: int, items: int, seed: int) -> list[str]:
    return [
        *("--users", str(users), "--items", str(items), "--seed", str(seed)),
        "--attributes",
        "--cold-start",
    ]


def fingerprint(users: int, items: int, seed: int, root: Path) -> dict[str, Any]:
    """What the files were made from, and their sizes (a truncated copy does not match)."""
    files = data_files(root, users)
    return {
        "generator": ["clue", "data", "synth", *generator_arguments(users, items, seed)],
        "sizes": {name: path.stat().st_size for name, path in files.items() if path.exists()},
    }


def ensure_data(root: Path, users: int, items: int, seed: int) -> bool:
    """Write the synthetic files under ``root`` unless a matching set is there already.

    Returns whether they were (re)written. The fingerprint file is written last, so a
    generation cut short is redone by the next call.
    """
    files = data_files(root, users)
    record = files["sequences"].with_suffix(".json")
    if record.exists() and all(path.exists() for path in files.values()):
        if json.loads(record.read_text()) == fingerprint(users, items, seed, root):
            print(f"reusing the synthetic data {files['sequences']} (fingerprint matches)")
            return False
        print(f"{record} does not match --users/--items/--seed or the files: writing them again")
    files["sequences"].parent.mkdir(parents=True, exist_ok=True)
    record.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "clue_fw",
        "data",
        "synth",
        *generator_arguments(users, items, seed),
        *("--out", str(files["sequences"]), "--overwrite"),
    ]
    print("generating:", " ".join(command[1:]), flush=True)
    code = subprocess.call(command)
    if code != 0:
        raise SystemExit(
            f"clue data synth failed (exit {code}) writing {files['sequences']}: see its "
            "message above; lower --users, or choose a --data-root with more free space."
        )
    record.write_text(json.dumps(fingerprint(users, items, seed, root), indent=1) + "\n")
    return True


def task_overrides(users: int) -> dict[str, tuple[str, ...]]:
    """The recipes read ``synth/synth_1m*``; point each task at the files of ``users``."""
    stem = data_stem(users)
    data = (f"data.path={stem}.txt",)
    labels = {task: (*data, f"finetune.head.labels.path={stem}_{task}.csv") for task in TASKS}
    labels["coldstart"] = (*data, f"finetune.head.target.path={stem}_target.txt")
    return labels


# --------------------------------------------------------------------------- the payoff rule


@dataclasses.dataclass(frozen=True)
class Point:
    """One cell: mean and standard error of the main metric over ``n`` seeds."""

    users: int
    mean: float
    sem: float
    n: int


def payoff(
    baseline: list[Point], best: list[Point], errors: float = STANDARD_ERRORS
) -> tuple[str, int | None]:
    """Where pre-training stops paying off, from the best method without pre-training's
    and the best pre-trained method's points (matched by labelled-user count).

    Pre-training *pays off* at a count when the best pre-trained mean exceeds the
    baseline's by more than ``errors`` standard errors of the difference (with one seed the
    standard error is 0, so any positive gap counts). Returns ``("stops", n)``: from ``n``
    labelled users on it never pays off again; ``("never stops", None)``: it still pays
    off at the largest count; ``("never pays off", None)``: at no count; ``("no data",
    None)``.

    >>> payoff([Point(10, 0.5, 0.01, 3), Point(100, 0.8, 0.01, 3)],
    ...        [Point(10, 0.7, 0.01, 3), Point(100, 0.8, 0.01, 3)])
    ('stops', 100)
    """
    base_at = {point.users: point for point in baseline}
    pairs = sorted(
        ((point.users, base_at[point.users], point) for point in best if point.users in base_at),
        key=lambda pair: pair[0],
    )
    if not pairs:
        return "no data", None
    pays = [
        ours.mean - base.mean > errors * math.hypot(ours.sem, base.sem) for _, base, ours in pairs
    ]
    if not any(pays):
        return "never pays off", None
    if pays[-1]:
        return "never stops", None
    last = max(index for index, value in enumerate(pays) if value)
    return "stops", pairs[last + 1][0]


def points(summary: dict[str, Any], task: str, row: str) -> list[Point]:
    """The main metric of ``row`` (``method/mode``) per labelled-user count."""
    metric = summary["metric"][task]
    users = summary["train_users"].get(task, {})
    found = []
    for fraction, cell in summary["cells"].get(task, {}).get(row, {}).items():
        if metric in cell and fraction in users:
            stats, n = cell[metric], cell["n"]
            found.append(Point(users[fraction], stats["mean"], stats["std"] / math.sqrt(n), n))
    return sorted(found, key=lambda point: point.users)


def best_method(
    summary: dict[str, Any], task: str, mode: str, pretrained: bool
) -> tuple[list[Point], dict[int, str]]:
    """Per labelled-user count, the method with the best mean among those that pre-train
    (``pretrained``) or among those that do not (CLUEZero, the untrained item-mean encoder,
    the bag of items), and its name."""
    best: dict[int, tuple[Point, str]] = {}
    for method, spec in le.ALL_METHODS.items():
        if spec.pretrains != pretrained:
            continue
        for point in points(summary, task, f"{method}/{mode}"):
            if point.users not in best or point.mean > best[point.users][0].mean:
                best[point.users] = (point, method)
    ordered = sorted(best.values(), key=lambda pair: pair[0].users)
    return [point for point, _ in ordered], {point.users: name for point, name in ordered}


def _significant(ours: Point, base: Point) -> bool:
    """|difference| beyond STANDARD_ERRORS standard errors (any gap with one seed)."""
    return abs(ours.mean - base.mean) > STANDARD_ERRORS * math.hypot(ours.sem, base.sem)


def payoff_lines(summary: dict[str, Any], task: str) -> list[str]:
    """The markdown verdict of :func:`payoff` for each mode of ``task``: the best
    pre-trained method against the best method without pre-training, so that an encoder's
    own gain (the untrained item-mean encoder over CLUEZero's Transformer) is not credited
    to pre-training."""
    lines = []
    for mode in le.MODES:
        baseline, base_names = best_method(summary, task, mode, pretrained=False)
        best, names = best_method(summary, task, mode, pretrained=True)
        verdict, users = payoff(baseline, best)
        if verdict == "no data":
            continue
        seeds = min((point.n for point in baseline + best), default=0)
        caveat = " (one seed: no standard error, so the rule compares means)" if seeds < 2 else ""
        counts = sorted({point.users for point in best} & {point.users for point in baseline})
        span = (
            f"{counts[0]:,} to {counts[-1]:,} labelled users"
            if len(counts) > 1
            else f"the one count measured on both sides ({counts[0]:,} labelled users)"
        )
        sure = seeds >= 2
        within = f"within {STANDARD_ERRORS:g} standard errors of" if sure else "level with"
        above = f"more than {STANDARD_ERRORS:g} standard errors above" if sure else "above"
        base_at = {point.users: point for point in baseline}
        best_at = {point.users: point for point in best}
        gains = "; ".join(
            f"{count:,}: {names[count]} − {base_names[count]} "
            f"{best_at[count].mean - base_at[count].mean:+.4f}"
            + ("*" if _significant(best_at[count], base_at[count]) else "")
            for count in counts
        )
        if verdict == "stops":
            text = (
                f"pre-training stops paying off from **{users:,} labelled users** on: from "
                f"there the best method without pre-training is {within} the best pre-trained "
                f"method (or above it); at {counts[0]:,}, {names[counts[0]]} leads"
            )
        elif verdict == "never stops" and len(counts) == 1:
            text = (
                f"pre-training **pays off at {counts[0]:,} labelled users**, the only count "
                f"measured on both sides: the best pre-trained method ({names[counts[0]]}) is "
                f"{above} the best method without pre-training; no larger count is measured, "
                "so where it stops paying off is open"
            )
        elif verdict == "never stops":
            text = (
                f"pre-training **never stops paying off** over {span}: at the largest count "
                f"the best pre-trained method ({names[counts[-1]]}) is still {above} the best "
                "method without pre-training"
            )
        else:
            text = (
                f"pre-training **never pays off** over {span}: the best method without "
                f"pre-training is {within} the best pre-trained method, or above it, at every "
                "count"
            )
        lines.append(
            f"- {le.MODES[mode].label}: {text}{caveat}. Per count, best pre-trained − best "
            f"without: {gains}."
        )
    if not lines:
        return []
    return [
        "",
        "Where pre-training pays off (computed by `benchmarks/transfer.py`, `payoff`, from "
        "the numbers above; the baseline at each count is the best method without "
        f"pre-training; * : more than {STANDARD_ERRORS:g} standard errors of the difference):",
        "",
        *lines,
    ]


# --------------------------------------------------------------------------- the study


def study(users: int) -> le.Study:
    return le.Study(
        name="transfer",
        title=f"Transfer at scale: label efficiency on {users:,} synthetic users",
        dataset=f"{users:,} synthetic users",
        tasks=TASKS,
        methods=METHODS,
        fractions=FRACTIONS,
        recipes_dir=ROOT / "recipes" / "synth_transfer",
        intro="Test metric against the number of labelled training users (columns: share "
        "and count), mean ± std over seeds ({seeds}); bold: the best mean of each column. "
        f"Data: `clue data synth --attributes --cold-start` with {users:,} users and as "
        "many items (docs/synthetic.md). Validation and test users are the same in every "
        "column. Pre-training (`recipes/synth_transfer/<task>_<method>.yaml`) on all users' "
        "sequences, shared by the four tasks; fine-tuning starts from it with "
        "`finetune.init_from`. `probe` trains a linear layer on the frozen encoder; the "
        "probe of CLUEZero probes a random encoder. The plots show the standard error.",
        finetune_recipes={
            "bag": "{task}_bag.yaml",
            "clue": "{task}_item_mean.yaml",
            "item_mean": "{task}_item_mean.yaml",
        },
        x_axis="users",
        error="sem",
        task_overrides=task_overrides(users),
        notes=payoff_lines,
    )


def heading(data: dict[str, Any]) -> str:
    """What the markdown opens with: the scale, the machine, the command."""
    settings = data["settings"]
    machine = data.get("machine", {})
    where = le.machine_name(machine)
    sweeps = [sweep["command"] for sweep in data.get("sweeps", [])]
    command = sweeps[-1] if sweeps else data["command"]  # the sweep, not a --summarize-only
    lines = [
        f"> **Scale: {settings['users']:,} users** ({settings['items']:,} items), seeds "
        f"{', '.join(map(str, settings['seeds']))}; machine: {where}, torch "
        f"{machine.get('torch', '?')}. Command: `{command}`",
    ]
    if settings.get("note"):
        lines += [">", f"> {settings['note']}"]
    return "\n".join([*lines, "", ""])


def markdown(data: dict[str, Any]) -> str:
    text = le.markdown(data, study(data["settings"]["users"]))
    title, rest = text.split("\n", 1)
    return f"{title}\n\n{heading(data)}{rest.lstrip()}"


def write_outputs(data: dict[str, Any], out_dir: Path) -> None:
    spec = study(data["settings"]["users"])
    le.write_outputs(data, out_dir, study=spec)
    (out_dir / f"{spec.name}.md").write_text(markdown(data))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1_000_000, help="Synthetic users.")
    parser.add_argument("--items", type=int, help="Synthetic items (default: --users).")
    parser.add_argument("--data-seed", type=int, default=GENERATOR_SEED)
    parser.add_argument(
        "--note", default="", help="A line for the head of the markdown (e.g. what is pending)."
    )
    le.add_arguments(parser, study(1_000_000))
    args = parser.parse_args()
    le.check_arguments(parser, args)
    if args.users < 100:
        parser.error(f"--users: {args.users} is too few for an 80/5/15 split; use 100 or more")
    args.items = args.items or args.users
    if args.runs_dir == Path("runs/transfer"):  # scales never share a runs directory
        args.runs_dir = Path(f"runs/transfer/u{args.users}")
    spec = study(args.users)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        write_outputs(data, args.out_dir)
        return
    root = (args.data_root or Path(os.environ.get("CLUE_DATA_DIR", "data"))).resolve()
    args.data_root = root
    if not args.summarize_only:
        ensure_data(root, args.users, args.items, args.data_seed)
        os.environ["CLUE_DATA_DIR"] = str(root)
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
        le.run_study(args, spec)
    data = le.build_data(args, spec)
    data["settings"].update(users=args.users, items=args.items, note=args.note)
    print(markdown(data))
    write_outputs(data, args.out_dir)


if __name__ == "__main__":
    main()
