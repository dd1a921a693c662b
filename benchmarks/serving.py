"""Serving throughput: ``clue embed``, ``clue recommend`` (every item, and ``--candidates``)
and ``clue neighbours`` on one finished run, as users per second and peak memory.

    CLUE_DATA_DIR=... python benchmarks/serving.py [--recipe recipes/synth_1m.yaml] \
        [--run runs/serving/synth_1m] [--candidates 10000] [--neighbour-users 100000] \
        [--out docs/results/serving]

1. The run: ``clue run RECIPE`` with no pre-training and one fine-tuning epoch (the weights
   do not change how fast a run serves), made once under ``--run`` and reused while it is
   finished, so a later call on the same machine goes straight to the measures. For
   ``recipes/synth_1m.yaml`` the 1M x 1M data file is generated first when missing
   (``clue data synth``, as ``benchmarks/speed.py`` does).
2. Each command in its own process, as a user types it, under ``serving.py --child``: the
   ``clue`` CLI in-process, then one JSON line with the command's own seconds (process
   start-up and imports excluded; they are in ``process seconds``), the peak resident
   host memory and the peak CUDA memory torch allocated.

The JSON and the markdown table are rewritten after every measure, so a call cut short
keeps what it measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARK = "SERVING-RESULT "
SYNTH_1M = "recipes/synth_1m.yaml"


# --------------------------------------------------------------------------- the child


def child(argv: list[str]) -> int:
    """Run ``clue ARGV`` in this process; print its seconds and peak memory as JSON."""
    import torch

    from clue_fw.cli import main as clue

    started = time.perf_counter()
    code = 0
    try:
        clue(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    seconds = time.perf_counter() - started
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    found = {
        "exit": code,
        "seconds": round(seconds, 3),
        "peak_host_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "peak_cuda_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
    }
    print(MARK + json.dumps(found), flush=True)
    return code


# --------------------------------------------------------------------------- the parent


def machine() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "gpu": gpu,
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def measure(argv: list[str], timeout: float) -> dict[str, Any]:
    """``clue ARGV`` under ``--child`` in a fresh process: its JSON line plus the wall time
    of the whole process."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *argv]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode or not lines:
        raise RuntimeError(f"clue {' '.join(argv)} failed: {done.stderr[-2000:]}")
    return {**json.loads(lines[-1][len(MARK) :]), "process_seconds": round(wall, 3)}


def ensure_run(recipe: str, run_dir: Path, timeout: float) -> None:
    """A finished run of ``recipe`` under ``run_dir``: made now unless one is there."""
    if (run_dir / "metrics.json").is_file():
        print(f"reusing the finished run {run_dir}", file=sys.stderr)
        return
    if run_dir.exists():  # an unfinished run of this script's own: start it again
        shutil.rmtree(run_dir)
    if recipe == SYNTH_1M:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from speed import synth_file

        synth_file()
    command = [
        sys.executable, "-m", "clue_fw.cli", "run", recipe, "--out", str(run_dir),
        "--set", "pretrain=null", "--set", "finetune.train.epochs=1",
    ]  # fmt: skip
    print(f"making the run: {' '.join(command[2:])}", file=sys.stderr, flush=True)
    subprocess.run(command, cwd=ROOT, check=True, timeout=timeout)


def vector_user_ids(path: Path) -> list[str]:
    """The user ids of a ``clue embed`` ``.npy`` file (a structured array, no pickle)."""
    from clue_fw.inference.export import read_vectors

    return [str(user) for user in read_vectors(path).ids]


def sample_items(run: Path, count: int, seed: int) -> list[str]:
    """``count`` distinct item ids of the run's catalogue, drawn at random."""
    from clue_fw.inference import load_run

    items = [str(item) for item in load_run(run, device="cpu").catalogue.raw_ids]
    return random.Random(seed).sample(items, min(count, len(items)))


def write(out: Path, record: dict[str, Any]) -> None:
    """The JSON and the markdown table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    where = record["machine"]
    lines = [
        "# Serving throughput",
        "",
        f"Run: `{record['recipe']}` ({record['users']:,} users, {record['items']:,} items), "
        "one fine-tuning epoch, no pre-training (throughput does not depend on the weights).",
        f"Machine: {where['gpu'] or 'no GPU'}, {where['cpu_cores']} CPU cores, torch "
        f"{where['torch']}; {where['date']}.",
        f"Command: `{record['command']}`",
        "",
        "Users/s divides the users served by the command's own seconds (the whole process, "
        "start-up and imports included, is the next column). Peak host memory is the "
        "process's peak resident set; peak GPU memory what torch allocated at most.",
        "",
        "| command | users | seconds | users/s | process s | peak host GiB | peak GPU GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in record["results"]:
        gpu = "-" if row["peak_cuda_gib"] is None else f"{row['peak_cuda_gib']:.2f}"
        lines.append(
            f"| `{row['command']}` | {row['users']:,} | {row['seconds']:.1f} | "
            f"{row['users'] / row['seconds']:,.0f} | {row['process_seconds']:.1f} | "
            f"{row['peak_host_gib']:.2f} | {gpu} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def plan(run: Path, work: Path, k: int) -> list[tuple[str, list[str]]]:
    """(shown command, clue argv) of each measure, in order."""
    return [
        ("clue embed RUN --out users.npy", ["embed", str(run), "--out", str(work / "users.npy")]),
        (
            f"clue recommend RUN -k {k} --out recs.csv",
            ["recommend", str(run), "-k", str(k), "--out", str(work / "recs.csv")],
        ),
        (
            f"clue recommend RUN -k {k} --candidates items.txt --out recs.csv",
            [
                "recommend",
                str(run),
                "-k",
                str(k),
                "--candidates",
                str(work / "items.txt"),
                "--out",
                str(work / "recs_candidates.csv"),
            ],
        ),  # fmt: skip
        (
            f"clue neighbours users.npy --users ids.txt -k {k} --out similar.csv",
            [
                "neighbours",
                str(work / "users.npy"),
                "--users",
                str(work / "ids.txt"),
                "-k",
                str(k),
                "--out",
                str(work / "similar.csv"),
            ],
        ),  # fmt: skip
    ]


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        raise SystemExit(child(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=SYNTH_1M)
    parser.add_argument("--run", type=Path, default=None, help="Run directory (made once).")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=10_000, help="Allowed items.")
    parser.add_argument("--neighbour-users", type=int, default=100_000, help="Users looked up.")
    parser.add_argument("--timeout", type=float, default=1800.0, help="Per command, seconds.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/serving")
    args = parser.parse_args()
    run = (args.run or ROOT / "runs/serving" / Path(args.recipe).stem).resolve()
    ensure_run(args.recipe, run, args.timeout)
    work = run.parent / f"{run.name}_serving"
    work.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["python", "benchmarks/serving.py", *sys.argv[1:]]),
        "recipe": args.recipe,
        "users": 0,
        "items": 0,
        "results": [],
    }
    for shown, argv in plan(run, work, args.k):
        if argv[0] == "recommend" and "--candidates" in argv:
            (work / "items.txt").write_text("\n".join(sample_items(run, args.candidates, 0)))
        if argv[0] == "neighbours":
            ids = vector_user_ids(work / "users.npy")
            record["users"] = len(ids)
            random.Random(0).shuffle(ids)
            (work / "ids.txt").write_text("\n".join(ids[: args.neighbour_users]))
        print(f"{shown} ...", file=sys.stderr, flush=True)
        found = measure(argv, args.timeout)
        users = served_users(argv, work, args.k)
        record["results"].append({"command": shown, "users": users, **found})
        record["items"] = record["items"] or run_items(run)
        record["users"] = record["users"] or users
        print(f"{shown}: {found}", file=sys.stderr, flush=True)
        write(args.out, record)


def served_users(argv: list[str], work: Path, k: int) -> int:
    """How many users a finished command served: rows of its output over ``k``."""
    if argv[0] == "embed":
        return len(vector_user_ids(work / "users.npy"))
    out = Path(argv[argv.index("--out") + 1])
    with out.open("rb") as rows:
        lines = sum(1 for _ in rows) - 1  # the header
    return lines // k


def run_items(run: Path) -> int:
    """The number of items the run's model scores."""
    from clue_fw.inference import load_run

    return len(load_run(run, device="cpu").catalogue)


if __name__ == "__main__":
    main()
