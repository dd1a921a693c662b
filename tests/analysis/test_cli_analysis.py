"""``clue plot``, ``clue analyze`` and ``clue compare`` (:mod:`clue_fw.cli_analysis`).

Three tiny runs are made once per module (seeds 0 and 1 of one recipe, and seed 0 of a
variant); the commands run in-process through :func:`clue_fw.cli.main`.
"""

from __future__ import annotations

import io
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_main import main_exit
from rich.console import Console

from clue_fw import load_run, run

pytest.importorskip("matplotlib")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, make_tiny_recipe: Callable[[], dict[str, Any]]
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analysis")
    made = {}
    for key, seed, dropout in [("a0", 0, 0.1), ("a1", 1, 0.1), ("b0", 0, 0.3)]:
        recipe = make_tiny_recipe()
        recipe.update(name="tiny", seed=seed)
        recipe["backbone"]["dropout"] = dropout
        recipe["finetune"]["train"]["epochs"] = 1
        out = root / key / f"seed{seed}"
        made[key] = run(recipe, out=out, console=Console(file=io.StringIO())).run_dir
    return made


# --------------------------------------------------------------------------- plot


def test_plot_draws_every_panel_of_many_runs(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "curves.png"
    argv = ["plot", str(runs["a0"]), str(runs["a1"]), str(runs["b0"]), "--out", str(out)]
    code, stdout, stderr = main_exit(argv, capsys)
    assert code == 0, stderr
    assert stdout.strip() == str(out)
    # pre-training loss, z_std, rep_erank and rep_std, fine-tuning loss, three validation
    # metrics: 3 x 3 panels, one empty
    assert "wrote 8 panels of 3 run(s)" in stderr
    assert png_size(out) == (1380, 1080) and out.stat().st_size > 10_000


def test_plot_labels_runs_apart_when_their_folders_share_a_name(runs: dict[str, Path]) -> None:
    from clue_fw.cli_analysis import run_labels

    # a0/seed0 and b0/seed0: same folder name, same recipe name and seed
    assert run_labels([runs["a0"], runs["a1"]]) == ["seed0", "seed1"]
    assert run_labels([runs["a0"], runs["b0"]]) == ["a0/seed0", "b0/seed0"]


def test_plot_refuses_a_directory_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, stderr = main_exit(["plot", str(tmp_path), "--out", str(tmp_path / "c.png")], capsys)
    assert code == 2 and "not a clue_fw run directory" in stderr


def test_plot_says_the_history_is_out_of_range_not_the_file_name(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    run_dir = tmp_path / "huge"
    shutil.copytree(runs["a0"], run_dir)
    history = run_dir / "finetune" / "history.csv"
    header, *rows = history.read_text().splitlines()
    rows = [",".join([row.split(",")[0], f"{(-1) ** i}e308", *row.split(",")[2:]])
            for i, row in enumerate(rows)]  # fmt: skip
    history.write_text("\n".join([header, *rows]) + "\n")
    out = tmp_path / "curves.png"
    code, _, stderr = main_exit(["plot", str(run_dir), "--out", str(out)], capsys)
    message = " ".join(stderr.split())
    assert code == 2 and "Traceback" not in stderr and "Warning" not in stderr
    assert "The plotted values are probably out of range" in message, message
    assert ".png, .svg or .pdf" not in message  # the file name is not to blame
    assert not out.exists()


def test_a_missing_matplotlib_names_the_extra(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    code, _, stderr = main_exit(["plot", str(runs["a0"]), "--out", str(tmp_path / "c.png")], capsys)
    assert code == 2
    assert "pip install 'clue_fw[plot]'" in " ".join(stderr.split())


# --------------------------------------------------------------------------- analyze


def test_analyze_writes_the_measures_and_figures(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users, _ = load_run(runs["a0"], device="cpu").run_user_histories()
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "user,label\n" + "".join(f"{u},{'fm'[u % 2]}\n" for u in users[:150]), encoding="utf-8"
    )
    out = tmp_path / "analysis"
    argv = ["analyze", str(runs["a0"]), "--out", str(out), "--labels", str(labels)]
    code, stdout, stderr = main_exit(argv + ["--device", "cpu"], capsys)
    assert code == 0, stderr
    assert stdout.strip() == str(out / "analysis.json")
    report = json.loads((out / "analysis.json").read_text())
    assert report["users"] == report["users_sampled"] == 200 and report["dim"] == 16
    assert report["views"] == ["dropout"] and report["stage"] == "finetune"
    assert 0.0 < report["alignment"] < 4.0  # two dropout masks: close, not equal
    assert report["uniformity"] < 0.0
    assert 1.0 < report["effective_rank"] <= 16.0
    assert 0.0 < report["collapse_std"]
    assert report["labels"]["users_without_label"] == 50
    assert set(report["definitions"]) == {
        "alignment",
        "uniformity",
        "effective_rank",
        "collapse_std",
    }
    assert png_size(out / "pca.png") == (640, 520)
    assert png_size(out / "spectrum.png") == (600, 400)
    # The same seed, the same numbers; the pre-trained encoder is another set of vectors.
    code, _, _ = main_exit(argv[:3] + [str(tmp_path / "again"), "--device", "cpu"], capsys)
    again = json.loads((tmp_path / "again" / "analysis.json").read_text())
    assert code == 0 and again["alignment"] == report["alignment"]
    code, _, _ = main_exit(
        argv[:3] + [str(tmp_path / "pre"), "--stage", "pretrain", "--device", "cpu"], capsys
    )
    pre = json.loads((tmp_path / "pre" / "analysis.json").read_text())
    assert code == 0 and pre["stage"] == "pretrain"
    assert pre["effective_rank"] != report["effective_rank"]


def test_analyze_a_run_without_pretraining_measures_its_fine_tuned_encoder(
    make_tiny_recipe: Callable[[], dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No pre-training, no views to make positive pairs with: alignment is null (said on
    stderr), every other measure is of the fine-tuned encoder (was an AttributeError)."""
    recipe = make_tiny_recipe()
    del recipe["pretrain"]
    recipe["finetune"]["train"]["epochs"] = 1
    done = run(recipe, out=tmp_path / "run", console=Console(file=io.StringIO())).run_dir
    out = tmp_path / "analysis"
    code, _, stderr = main_exit(["analyze", str(done), "--out", str(out)], capsys)
    assert code == 0, stderr
    assert "alignment n/a (no pre-training views)" in stderr
    report = json.loads((out / "analysis.json").read_text())
    assert report["alignment"] is None and report["views"] == []
    assert "did not pre-train" in report["definitions"]["alignment"]
    assert 1.0 < report["effective_rank"] <= 16.0 and report["uniformity"] < 0.0


def test_analyze_checks_the_run_before_making_its_out_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "analysis"
    code, _, stderr = main_exit(["analyze", str(tmp_path / "missing"), "--out", str(out)], capsys)
    assert code == 2 and "Traceback" not in stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--label-column", "gender"], "give --labels FILE too"),
        (["--labels", "x.dat", "--label-column", "zip"], "gender, age or occupation"),
        (["--stage", "middle"], "stage must be 'finetune' or 'pretrain'"),
    ],
)
def test_analyze_bad_flags(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    argv = ["analyze", str(runs["a0"]), "--out", str(tmp_path / "a"), *extra]
    code, _, stderr = main_exit(argv, capsys)
    assert code == 2 and message in " ".join(stderr.split())


def test_analyze_refuses_labels_of_other_users(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("900001,a\n900002,b\n", encoding="utf-8")
    argv = ["analyze", str(runs["a0"]), "--out", str(tmp_path / "a"), "--labels", str(labels)]
    code, _, stderr = main_exit(argv, capsys)
    assert code == 2 and "None of the run's 200 users has a label" in " ".join(stderr.split())


# --------------------------------------------------------------------------- compare


def test_compare_groups_runs_that_differ_only_in_seed(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    markdown = tmp_path / "table.md"
    argv = ["compare", *(str(runs[k]) for k in ("a0", "a1", "b0")), "--markdown", str(markdown)]
    code, stdout, stderr = main_exit(argv, capsys)
    assert code == 0, stderr
    lines = markdown.read_text().splitlines()
    assert lines[0].startswith("| run | seeds | valid mrr@10 |") and "test recall@10" in lines[0]
    assert len(lines) == 4  # header, rule, two groups
    first, second = lines[2].split(" | "), lines[3].split(" | ")
    assert first[0] == "| tiny backbone.dropout=0.1" and first[1] == "2 (0, 1)"
    assert second[0] == "| tiny backbone.dropout=0.3" and second[1] == "1 (0)"
    metrics = [json.loads((runs[k] / "metrics.json").read_text()) for k in ("a0", "a1")]
    values = [m["test"]["recall@10"] for m in metrics]
    mean = sum(values) / 2
    std = abs(values[0] - values[1]) / 2**0.5
    assert f"{mean:.4f} ± {std:.4f}" in lines[2]
    assert (
        f"{json.loads((runs['b0'] / 'metrics.json').read_text())['test']['recall@10']:.4f}"
        in (lines[3])
    )
    assert "2 (0, 1)" in stdout and "1 (0)" in stdout  # the terminal table


def test_compare_refuses_unfinished_and_foreign_runs(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, stderr = main_exit(["compare", str(tmp_path)], capsys)
    assert code == 2 and "not a clue_fw run directory" in stderr
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "recipe.yaml").write_bytes((runs["a0"] / "recipe.yaml").read_bytes())
    code, _, stderr = main_exit(["compare", str(copy)], capsys)
    assert code == 2 and "has not finished" in stderr
    (copy / "metrics.json").write_bytes((runs["b0"] / "metrics.json").read_bytes())
    code, _, stderr = main_exit(["compare", str(copy)], capsys)
    assert code == 2 and "copied in from another run" in " ".join(stderr.split())
