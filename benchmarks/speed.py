"""Measure clue_fw's speed targets and write docs/results/speed.md plus a JSON beside it.

    CLUE_DATA_DIR=../shared/data python benchmarks/speed.py [--only NAME[@LEVERS],...] \
        [--with-recbole] [--budget-s 540] [--keep EARLIER.json ...] [--out docs/results/speed]

Each measure runs the real code path (``clue run`` in a subprocess where the whole
process counts; the library in this process where a single step or evaluation is
timed) and is written to the JSON as soon as it ends, so a call cut short keeps what it
measured. Measures that need a GPU are skipped on a CPU-only machine and the other way
round; ``--only`` picks some. The table compares each figure with the target of the
speed issue; a target not met is reported as measured.

Measures:

* ``eval_ml1m``: full-ranking evaluation of all 6,040 ML-1M users (valid split, the
  ``ml50_fast_zero`` model), median wall time of 20 repeats after 3 warm-ups.
* ``pretrain_epoch_ml1m``: one CLUE pre-training epoch (ML-1M, length 50, two dropout
  views) as shipped (``ml50_dropout``) and in ``ml50_fast_zero``'s settings (bf16, batch 1024).
* ``time_to_quality_ml1m``: ``clue run recipes/ml50_fast_zero.yaml``: training plus evaluation
  seconds until validation NDCG@10 first reaches 0.0915, and the whole process's wall time.
* ``cpu_ml30_dropout``: ``clue run recipes/ml30_dropout.yaml`` end to end on the CPU.
* ``synth_*``: the 1M users x 1M items synthetic catalogue (``clue data synth``):
  ``synth_eval`` exact full ranking of 100,000 users, ``synth_eval_all`` of all 1M users,
  ``synth_epochs`` a pre-training and a fine-tuning epoch.
* ``recbole`` (``--with-recbole`` or ``--only recbole``): RecBole 1.2.1 SASRec on ML-1M
  on the same machine (``recbole_run.py`` from ``CLUE_PEERS_DIR``, default
  ``../shared/peers``), for side-by-side ratios.

Levers (``benchmarks/speed_levers.py``): a measure named ``NAME@LEVER+LEVER`` runs with
those optimisations on, e.g. ``synth_eval_all@blocks=65536+bf16`` or
``synth_epochs@compile``; the table's levers column says which were on, and an evaluation
with levers is compared with the same measure without them (``blocks`` and ``batch``
must give the same metrics). Which measure takes which levers: :data:`LEVERS_OF`.

Each result records the machine that measured it. ``--keep`` takes the results of earlier
JSONs (for example a CPU row, or a GPU call cut short) into this one, except the measures
run again now, so a table can be completed over several calls of at most 600 s each.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from speed_levers import Levers, agreement, parse

ROOT = Path(__file__).resolve().parents[1]
TARGET_NDCG = 0.0915
Result = dict[str, Any]


def machine() -> dict[str, Any]:
    """What ran the measures: GPU or CPU model, cores, torch version, date."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "gpu": gpu,
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def clue_run(recipe: str, out: Path, overrides: list[str], timeout: float) -> tuple[float, int]:
    """``clue run RECIPE --out OUT --set ...`` in a fresh process: (wall seconds, exit code)."""
    command = [sys.executable, "-m", "clue_fw.cli", "run", recipe, "--out", str(out)]
    for override in overrides:
        command += ["--set", override]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, timeout=timeout, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.stderr.write(done.stderr[-3000:])
    return wall, done.returncode


def stage_history(run_dir: Path, stage: str) -> list[dict[str, Any]]:
    """The per-epoch rows a stage recorded in its last checkpoint's metadata."""
    from clue_fw.training.checkpoint import load_checkpoint

    _, metadata = load_checkpoint(run_dir / stage / "last.safetensors")
    return list(metadata.get("history", []))


def time_to_quality(history: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Seconds of training and evaluation (the initial evaluation included) until the
    first epoch whose validation NDCG@10 reaches ``threshold``."""
    spent = 0.0
    for row in history:
        spent += float(row.get("seconds", 0.0)) + float(row.get("eval seconds", 0.0))
        if row.get("valid ndcg@10", 0.0) >= threshold:
            return {"epoch": row["epoch"], "seconds": round(spent, 3), "reached": True}
    return {"epoch": None, "seconds": round(spent, 3), "reached": False}


# --------------------------------------------------------------------------- measures


_LOADED: dict[str, Any] = {}
"""The data of the last recipe an evaluation measure read, by its ``data`` section."""


def untrained_model(recipe_file: str, overrides: list[str]) -> tuple[Any, Any, Any, Any]:
    """``(recipe, encoder, head, valid examples)`` of a recipe (with ``overrides``), built
    on the best device with initial weights drawn from the recipe's seed (evaluation time
    does not depend on the weights; the seed makes measures with and without levers score
    the same model, so their metrics can be compared)."""
    from clue_fw.components import BuildContext
    from clue_fw.data.loading import load_data
    from clue_fw.recipe import load_recipe

    recipe = load_recipe(ROOT / recipe_file, overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    key = recipe.data.model_dump_json()
    if key not in _LOADED:  # read once per call: measures with levers share the data
        _LOADED.clear()
        _LOADED[key] = load_data(recipe.data, None)
    task_data = recipe.finetune.head.prepare(_LOADED[key], None)
    context = BuildContext(task_data.sequences.num_items, recipe.data.max_len)
    torch.manual_seed(recipe.seed)
    encoder = recipe.backbone.build(context).to(device)
    head = recipe.finetune.head.build(context, encoder, task_data).to(device)
    valid = recipe.finetune.head.make_task(task_data, context, "recent").valid
    return recipe, encoder, head, valid


def measure_eval_ml1m(work: Path, levers: Levers) -> Result:
    """Median wall time of one full-ranking evaluation of every ML-1M user (one batch of
    them all, unless the ``batch`` lever says otherwise)."""
    from clue_fw.training.loop import evaluate

    overrides = ["finetune.eval.batch_size=6040", *levers.overrides]
    recipe, encoder, head, valid = untrained_model("recipes/ml50_fast_zero.yaml", overrides)
    valid = valid.to(next(encoder.parameters()).device)
    users, batch = len(valid), recipe.finetune.eval.batch_size
    times = []
    for repeat in range(23):
        synchronize()
        started = time.perf_counter()
        metrics = evaluate(head, encoder, valid, batch, split="valid")  # ends with a host read
        synchronize()
        if repeat >= 3:
            times.append(time.perf_counter() - started)
    times.sort()
    return {
        "value": round(times[len(times) // 2] * 1000, 2),
        "unit": "ms",
        "metrics": metrics,
        "detail": f"{users:,} users, batch {batch:,}, min {times[0] * 1000:.2f} ms; "
        f"{_scoring(head)}",
    }


def _scoring(head: Any) -> str:
    """How the head ranked: item blocks and score precision."""
    block = getattr(head, "item_block", None)
    blocks = f"item blocks of {block:,}" if block else "one score matrix per batch"
    return f"{blocks}, {getattr(head, 'score_precision', 'float32')} scores"


def measure_pretrain_epoch_ml1m(work: Path, levers: Levers) -> Result:
    """Seconds of the second CLUE pre-training epoch, shipped and fast settings."""
    found = {}
    for label, recipe, extra in (
        ("ml50_dropout (fp32, batch 256)", "recipes/ml50_dropout.yaml", []),
        (
            "ml50_fast_zero settings (bf16, batch 1024)",
            "recipes/ml50_dropout.yaml",
            [
                "pretrain.train.precision=bf16",
                "pretrain.train.batch_size=1024",
                "pretrain.train.lr=0.002",
            ],
        ),
    ):
        out = work / f"pretrain_{len(found)}"
        overrides = ["pretrain.train.epochs=3", "finetune.train.epochs=1", *extra]
        overrides += levers.overrides
        wall, code = clue_run(recipe, out, overrides, timeout=600)
        if code:
            found[label] = f"failed (exit {code})"
            continue
        seconds = [row["seconds"] for row in stage_history(out, "pretrain")][1:]
        found[label] = min(seconds)
    fast = found.get("ml50_fast_zero settings (bf16, batch 1024)")
    return {
        "value": fast if isinstance(fast, float) else None,
        "unit": "s",
        "detail": "; ".join(f"{k}: {v} s" for k, v in found.items()),
    }


def run_dir(work: Path, name: str, levers: Levers) -> Path:
    """The run directory of one measure with its levers: ``name`` alone without levers,
    ``name_amp_seed2`` with ``@amp+seed=2``, so that variants in one call never share one."""
    suffix = levers.suffix().lstrip("@").replace("+", "_").replace("=", "")
    return work / (f"{name}_{suffix}" if suffix else name)


def measure_time_to_quality_ml1m(work: Path, levers: Levers) -> Result:
    out = run_dir(work, "ml50_fast_zero", levers)
    wall, code = clue_run("recipes/ml50_fast_zero.yaml", out, levers.overrides, timeout=600)
    if code:
        return {"value": None, "unit": "s", "detail": f"clue run failed (exit {code})"}
    reached = time_to_quality(stage_history(out, "finetune"), TARGET_NDCG)
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "value": reached["seconds"] if reached["reached"] else None,
        "unit": "s",
        "process_seconds": round(wall, 2),
        "detail": (
            f"valid NDCG@10 >= {TARGET_NDCG} at epoch {reached['epoch']}; whole process "
            f"{wall:.1f} s; test NDCG@10 of the best epoch "
            f"{metrics['test']['ndcg@10']:.4f}"
            if reached["reached"]
            else f"not reached; {reached['seconds']} s spent; whole process {wall:.1f} s"
        ),
    }


#: ml30_dropout's test NDCG@10 in the README (3 seeds, full softmax, history: all).
ML30_DROPOUT_NDCG = (0.1219, 0.0044)


def within_reference(test: dict[str, float]) -> bool:
    """Test NDCG@10 within one standard deviation of ml30_dropout's published mean."""
    mean, std = ML30_DROPOUT_NDCG
    return abs(test["ndcg@10"] - mean) <= std


def measure_cpu_ml30_dropout(work: Path, levers: Levers) -> Result:
    """``ml30_dropout_cpu`` (the ml30_dropout model trained on recent windows with a
    sampled softmax) end to end on the CPU: the whole process's wall time."""
    out = run_dir(work, "ml30_dropout_cpu", levers)
    overrides = ["device=cpu", *levers.overrides]
    wall, code = clue_run("recipes/ml30_dropout_cpu.yaml", out, overrides, timeout=3600)
    if code:
        return {"value": None, "unit": "s", "detail": f"clue run failed (exit {code})"}
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    return {
        "value": round(wall, 1),
        "unit": "s",
        "test": test,
        "quality_ok": within_reference(test),
        "detail": (
            f"ml30_dropout_cpu: test NDCG@10 {test['ndcg@10']:.4f}, Recall@10 "
            f"{test['recall@10']:.4f}, MRR@10 {test['mrr@10']:.4f}, best epoch "
            f"{metrics['best_epoch']}; "
            f"{'within' if within_reference(test) else 'NOT within'} one std of ml30_dropout's "
            f"test NDCG@10 {ML30_DROPOUT_NDCG[0]} +- {ML30_DROPOUT_NDCG[1]} (3 seeds, README)"
        ),
    }


def synth_file() -> Path:
    """The 1M x 1M synthetic file under the data root, made once (``clue data synth``)."""
    root = Path(os.environ.get("CLUE_DATA_DIR", ROOT.parent / "shared" / "data"))
    path = root / "synth" / "synth_1m.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "clue_fw.cli", "data", "synth", "--users", "1000000",
             "--items", "1000000", "--seed", "0", "--out", str(path)],
            check=True,
        )  # fmt: skip
    return path


def measure_synth_epochs(work: Path, levers: Levers) -> Result:
    """One run of ``synth_1m``: 2 pre-training epochs and 2 fine-tuning epochs; the
    second epoch of each is the figure (the first pays for warm-up)."""
    synth_file()
    out = run_dir(work, "synth_1m", levers)
    overrides = ["pretrain.train.epochs=2", "finetune.train.epochs=2", *levers.overrides]
    wall, code = clue_run("recipes/synth_1m.yaml", out, overrides, timeout=1800)
    if code:
        return {"value": None, "unit": "s", "detail": f"clue run failed (exit {code})"}
    pretrain = [row["seconds"] for row in stage_history(out, "pretrain")]
    finetune = [row for row in stage_history(out, "finetune") if row.get("epoch", 0) > 0]
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "value": pretrain[-1],
        "unit": "s",
        "finetune_epoch_seconds": finetune[-1]["seconds"],
        "valid_eval_seconds": finetune[-1].get("eval seconds"),
        "test": metrics["test"],
        "detail": (
            f"pre-training epochs {pretrain} s; fine-tuning epochs "
            f"{[row['seconds'] for row in finetune]} s; whole run {wall:.0f} s; test NDCG@10 "
            f"{metrics['test']['ndcg@10']:.4f} after 2 epochs (popularity: `clue baseline "
            "recipes/synth_1m.yaml`)"
        ),
    }


def synth_eval(work: Path, levers: Levers, users: int | None) -> Result:
    """Exact full-ranking evaluation of the first ``users`` users (None: all of them) of
    the 1M x 1M catalogue's valid split: one warm-up, then one timed pass."""
    from clue_fw.data.examples import ExampleSet
    from clue_fw.training.loop import evaluate

    synth_file()
    recipe, encoder, head, valid = untrained_model("recipes/synth_1m.yaml", levers.overrides)
    device = next(encoder.parameters()).device
    count = len(valid) if users is None else min(users, len(valid))
    rows = torch.arange(count)
    part = ExampleSet({k: v[rows] for k, v in valid.tensors.items()}, valid.ragged).to(device)
    batch = recipe.finetune.eval.batch_size
    evaluate(head, encoder, part, batch, split="valid")  # warm-up
    synchronize()
    started = time.perf_counter()
    metrics = evaluate(head, encoder, part, batch, split="valid")
    synchronize()
    seconds = time.perf_counter() - started
    return {
        "value": round(seconds, 3),
        "unit": "s",
        "metrics": metrics,
        "detail": f"{count:,} users x {head.num_items:,} items, batch {batch:,}; "
        f"{_scoring(head)}; untrained weights (seed {recipe.seed})",
    }


def measure_synth_eval(work: Path, levers: Levers) -> Result:
    """Exact full-ranking evaluation of 100,000 users over the 1M-item catalogue."""
    return synth_eval(work, levers, 100_000)


def measure_synth_eval_all(work: Path, levers: Levers) -> Result:
    """Exact full-ranking evaluation of all 1M users over the 1M-item catalogue."""
    return synth_eval(work, levers, None)


def peers_dir() -> Path:
    """Where ``recbole_run.py`` and ``to_atomic.py`` are (``CLUE_PEERS_DIR``)."""
    return Path(os.environ.get("CLUE_PEERS_DIR", ROOT.parent / "shared" / "peers"))


def measure_recbole(work: Path, levers: Levers) -> Result:
    """RecBole 1.2.1 SASRec on ML-1M, 12 epochs, in its own process."""
    peers = peers_dir()
    data = Path(os.environ.get("CLUE_DATA_DIR", ROOT.parent / "shared" / "data"))
    atomic = work / "atomic"
    subprocess.run(
        [
            sys.executable,
            str(peers / "to_atomic.py"),
            str(data / "ml-1m/ml-1m_sequences.txt"),
            str(atomic),
            "ml1m",
        ],
        check=True,
    )
    done = subprocess.run(
        [
            sys.executable,
            str(peers / "recbole_run.py"),
            "--dataset",
            "ml1m",
            "--data-path",
            str(atomic),
            "--epochs",
            "12",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"value": None, "unit": "s", "detail": f"RecBole failed: {done.stderr[-500:]}"}
    found = json.loads(lines[-1])
    return {"value": found.get("train_seconds"), "unit": "s", "detail": json.dumps(found)}


#: name -> (measure, needs a GPU (True), the CPU (False) or either (None), target text)
MEASURES: dict[str, tuple[Callable[[Path, Levers], Result], bool | None, str, float | None]] = {
    "eval_ml1m": (measure_eval_ml1m, True, "full-ranking evaluation, 6,040 ML-1M users", 5.0),
    "pretrain_epoch_ml1m": (
        measure_pretrain_epoch_ml1m,
        True,
        "CLUE pre-training epoch, ML-1M, length 50",
        0.3,
    ),
    "time_to_quality_ml1m": (
        measure_time_to_quality_ml1m,
        True,
        "training + evaluation until valid NDCG@10 >= 0.0915 (ml50_fast_zero)",
        2.5,
    ),
    "synth_epochs": (
        measure_synth_epochs,
        True,
        "1M users x 1M items: CLUE pre-training epoch (fine-tuning epoch in detail)",
        15.0,
    ),
    "synth_eval": (measure_synth_eval, True, "1M items: exact full ranking of 100,000 users", 3.0),
    "synth_eval_all": (
        measure_synth_eval_all,
        True,
        "1M items: exact full ranking of all 1M users",
        10.0,
    ),
    "cpu_ml30_dropout": (
        measure_cpu_ml30_dropout,
        False,
        "ml30_dropout end to end on the CPU",
        600.0,
    ),
    "recbole": (measure_recbole, None, "RecBole 1.2.1 SASRec, ML-1M, 12 epochs", None),
}
OPT_IN = frozenset({"recbole"})
"""Measures that run only when named (``--only``) or asked for (``--with-recbole``)."""

_EVAL = frozenset({"blocks", "bf16", "batch"})
_RUN = frozenset({"blocks", "bf16", "batch", "compile", "amp"})
#: The levers (benchmarks/speed_levers.py) each measure takes.
LEVERS_OF: dict[str, frozenset[str]] = {
    "eval_ml1m": _EVAL,
    "pretrain_epoch_ml1m": frozenset({"compile"}),
    "time_to_quality_ml1m": _RUN,
    "synth_epochs": _RUN,
    "synth_eval": _EVAL,
    "synth_eval_all": _EVAL,
    "cpu_ml30_dropout": _RUN | {"seed"},
    "recbole": frozenset(),
}


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


HEADER = "| measure | levers | target | measured | met | detail |"


def write(out: Path, record: dict[str, Any]) -> None:
    """The JSON and the markdown table, rewritten after every measure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    where = record["machine"]
    lines = [
        "# Speed measurements",
        "",
        *([record["note"], ""] if record.get("note") else []),
        f"Machine: {where['gpu'] or 'no GPU'}; CPU {where['cpu']} with {where['cpu_cores']} "
        f"cores; torch {where['torch']}; {where['date']}.",
        f"Command: `{record['command']}`",
        "",
        HEADER,
        "|---|---|---|---|---|---|",
    ]
    results = dict(record["results"])
    for name, (_, _, what, target) in MEASURES.items():
        results.setdefault(
            name,
            {
                "what": what,
                "target": target,
                "value": None,
                "unit": "ms" if name == "eval_ml1m" else "s",
                "detail": "not run",
            },
        )
    machines = sorted({r["machine"] for r in results.values() if r.get("machine")})
    if len(machines) > 1:
        lines[lines.index(HEADER) - 1 :] = [
            "",
            "Rows measured on more than one machine (each row's detail names its own): "
            + "; ".join(machines)
            + ".",
            "",
            HEADER,
            "|---|---|---|---|---|---|",
        ]
    checked = agreement(results)
    for name, result in results.items():
        target = result.get("target")
        value = result.get("value")
        met = "-" if value is None or target is None else ("yes" if value <= target else "no")
        if met == "yes" and result.get("quality_ok") is False:
            met = "time yes, quality no"
        unit = result.get("unit", "")
        shown = "not measured" if value is None else f"{value} {unit}"
        target_text = "-" if target is None else f"<= {target} {unit}"
        detail = result.get("detail", "")
        if name in checked:
            detail = f"{detail}; {checked[name]}" if detail else checked[name]
        if len(machines) > 1 and result.get("machine"):
            detail = f"{result['machine']}: {detail}"
        levers = result.get("levers", "none")
        lines.append(
            f"| {result['what']} | {levers} | {target_text} | {shown} | {met} | {detail} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def machine_line(where: dict[str, Any]) -> str:
    """One machine in a few words: the GPU, or the CPU and its cores; torch; the date."""
    device = where["gpu"] or f"no GPU, {where['cpu_cores']} CPU cores"
    return f"{device}, torch {where['torch']}, {where['date']}"


def kept_results(files: list[Path]) -> dict[str, Result]:
    """The results of earlier JSONs, later files winning, each labelled with its machine."""
    kept: dict[str, Result] = {}
    for file in files:
        try:
            earlier = json.loads(file.read_text())
            results, where = earlier["results"], earlier["machine"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"--keep {file}: not a speed.py JSON ({error})") from None
        for name, result in results.items():
            kept[name] = {"machine": machine_line(where), **result}
    return kept


def chosen_measures(only: str, with_recbole: bool, gpu: bool) -> list[str]:
    """The measures to run, by canonical name (``NAME`` or ``NAME@LEVERS``): those named,
    or every one this machine can run, without levers (RecBole only when asked for)."""
    named = [canonical(n) for n in only.split(",") if n]
    if named:
        return named + (["recbole"] if with_recbole and "recbole" not in named else [])
    runnable = [
        name
        for name, (_, needs_gpu, _, _) in MEASURES.items()
        if name not in OPT_IN and (needs_gpu is None or needs_gpu == gpu)
    ]
    return runnable + (["recbole"] if with_recbole else [])


def canonical(name: str) -> str:
    """``NAME@LEVERS`` with the levers in their fixed order and values (a SystemExit
    saying what is wrong for an unknown measure or lever)."""
    measure, levers = parse(name, LEVERS_OF)
    return measure + levers.suffix()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default="",
        help="Comma-separated measures, each NAME or NAME@LEVER+LEVER (e.g. "
        "synth_eval_all@blocks=65536+bf16; see speed_levers.py). Default: all, no levers.",
    )
    parser.add_argument("--with-recbole", action="store_true", help="Also run RecBole.")
    parser.add_argument(
        "--budget-s", type=float, default=540.0, help="Stop starting measures after this."
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/speed")
    parser.add_argument(
        "--keep",
        type=Path,
        nargs="+",
        default=[],
        help="Earlier speed JSONs whose results this one keeps (unless measured again now).",
    )
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        help="Only rewrite the table of an earlier JSON (with --note, and the results of "
        "--keep merged under its own), measuring nothing.",
    )
    parser.add_argument("--note", default="", help="A paragraph above the table.")
    args = parser.parse_args()
    if args.render is not None:
        record = json.loads(args.render.read_text())
        record["results"] = kept_results([*args.keep, args.render])
        for result in record["results"].values():
            if "test" in result and "quality_ok" not in result:
                result["quality_ok"] = within_reference(result["test"])
        record["note"] = args.note or record.get("note", "")
        write(args.out, record)
        return
    gpu = torch.cuda.is_available()
    chosen = chosen_measures(args.only, args.with_recbole, gpu)
    here = machine()
    record: dict[str, Any] = {
        "machine": here,
        "command": " ".join(["python", "benchmarks/speed.py", *sys.argv[1:]]),
        "results": kept_results(args.keep),
        "note": args.note,
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for name in chosen:
            base, levers = parse(name, LEVERS_OF)
            measure, _, what, target = MEASURES[base]
            if time.perf_counter() - started > args.budget_s:
                print(f"{name}: skipped, budget spent", file=sys.stderr)
                continue
            print(f"{name} ...", file=sys.stderr, flush=True)
            result = {"what": what, "target": target, "levers": levers.label}
            result.update(measure(work, levers))
            record["results"][name] = {"machine": machine_line(here), **result}
            print(f"{name}: {result}", file=sys.stderr, flush=True)
            write(args.out, record)
    write(args.out, record)


if __name__ == "__main__":
    main()
