"""Every command the README shows works as written.

:func:`readme_commands` reads each ```bash block of the README (continuation lines joined,
comments and leading ``VAR=value`` assignments removed). Then:

- every ``clue`` command names a real (sub)command, and every option it uses is one of
  that command's options, so a renamed or removed flag cannot stay in the README;
- every ``python benchmarks/...`` script it names exists;
- the cheap ``clue`` commands run for real, as written, on a quickstart run (``RUN`` and
  the example input files are made here), each expected to exit 0;
- the others are listed in :data:`NOT_RUN_HERE` with the reason. A README command that is
  neither run nor listed fails the test, so a new one cannot go unchecked.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_main import main_exit

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

NOT_RUN_HERE = {  # command (as the README writes it, normalised) -> why
    "clue data download ml-1m": "downloads from the internet",
    "clue data download ml-100k": "downloads from the internet",
    "clue data prepare ml-1m --from ~/Downloads/ml-1m.zip": "needs the GroupLens archive",
    "clue data stats ml-1m/ml-1m_sequences.txt": "needs ML-1M under the data root",
    "clue data synth --users 1000000 --items 1000000 --seed 0 --out "
    "$CLUE_DATA_DIR/synth/synth_1m.txt": "writes 1M users (43 s, 350 MB)",
    "clue validate my_data.yaml": "tests/test_docs.py runs the 'Your own data' example",
    "clue run my_data.yaml --out runs/mine": "tests/test_docs.py runs the 'Your own data' example",
    "clue run recipes/ml30_dropout.yaml --out runs/ml30": "a full ML-1M run",
    "clue run recipes/ml30_dropout.yaml --set backbone.dropout=0.3 --set seed=1": "a full "
    "ML-1M run",
    "clue run recipes/ml30_dropout.yaml --set backbone={kind: gru, dim: 64}": "a full ML-1M "
    "run (tests/test_recipe.py checks the override)",
    "clue run --resume runs/ml30": "needs an interrupted ML-1M run (tests/test_cli_resume.py)",
    "clue baseline recipes/ml50_dropout.yaml": "needs ML-1M under the data root",
    "clue baseline recipes/synth_1m.yaml --out runs/pop_synth_1m.json": "needs the 1M "
    "synthetic users",
    "clue analyze runs/ml30/seed0 --out analysis/ --labels $CLUE_DATA_DIR/ml-1m/users.dat "
    "--label-column gender": "needs an ML-1M run and its labels",
    "clue sweep recipes/ml30_dropout.yaml --grid backbone.dropout=0.1,0.3,0.5 --seeds 0 1 2 "
    "--jobs 3 --out runs/dropout --markdown dropout.md": "nine ML-1M runs",
    "clue probe RUN --labels ml-1m/users.dat --column age --stage pretrain --out probe.json "
    "--markdown probe.md": "needs an ML-1M run (tests/probing/ run the command)",
}

RUN_ON_THE_QUICKSTART = (  # these run for real; RUN and runs/ml30/seed* are the quickstart run
    "clue run recipes/quickstart.yaml",
    "clue list",
    "clue list head",
    "clue show transformer",
    "clue show objective clue",
    "clue validate recipes/ml30_dropout.yaml",
    "clue plot runs/ml30/seed0 runs/ml30/seed1 --out curves.png",
    "clue tensorboard runs/ml30/seed0 runs/ml30/seed1 --out tb/",
    "clue compare runs/table/*/seed* --markdown table.md",
    "clue embed RUN --out users.npy",
    "clue embed RUN --data new_users.txt --out users.npy --stage pretrain",
    "clue embed RUN --items --out items.safetensors",
    "clue recommend RUN -k 10 --out recs.csv",
    "clue recommend RUN --data new_users.txt -k 10 --out recs.csv",
    "clue recommend RUN -k 10 --candidates in_stock.txt --out recs.csv",
    "clue neighbours RUN -k 10 --out similar.csv",
    "clue neighbours users.npy --users ids.txt -k 10 --out similar.csv",
)


@dataclass(frozen=True)
class Command:
    text: str  # normalised: one line, no comment, no leading VAR=value
    words: list[str]
    line: int  # where its block starts in the README


def readme_commands() -> list[Command]:
    commands = []
    for line, block in _bash_blocks(README.read_text(encoding="utf-8")):
        for command in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(command, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]  # CLUE_DATA_DIR=... clue run ...
            if words:
                commands.append(Command(" ".join(words), words, line))
    return commands


def _bash_blocks(text: str) -> Iterator[tuple[int, str]]:
    for match in re.finditer(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        yield text[: match.start()].count("\n") + 1, match.group(1)


def clue_commands() -> list[Command]:
    found = []
    for command in readme_commands():
        # `clue validate X && clue run X`: each side is a command of its own
        pieces = " ".join(command.words).split(" && ")
        for piece in pieces:
            words = shlex.split(piece)
            if words and words[0] == "clue":
                found.append(Command(" ".join(words), words, command.line))
    return found


def _click_command(words: list[str]):  # type: ignore[no-untyped-def]
    """(the click command a ``clue ...`` word list names, the words after its name)."""
    import typer

    from clue_fw.cli import app

    command = typer.main.get_command(app)
    rest = words[1:]
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        command, rest = command.commands[rest[0]], rest[1:]
    return command, rest


def test_the_readme_shows_clue_commands_and_each_is_run_or_explained() -> None:
    commands = {command.text for command in clue_commands()}
    assert len(commands) >= 30
    unaccounted = sorted(commands - set(NOT_RUN_HERE) - set(RUN_ON_THE_QUICKSTART))
    assert not unaccounted, (
        f"README commands neither run by this test nor listed in NOT_RUN_HERE: {unaccounted}"
    )
    stale = sorted((set(NOT_RUN_HERE) | set(RUN_ON_THE_QUICKSTART)) - commands)
    assert not stale, f"listed here but no longer in the README: {stale}"


@pytest.mark.parametrize("command", clue_commands(), ids=lambda command: command.text[:60])
def test_every_readme_clue_command_uses_real_commands_and_options(command: Command) -> None:
    found, rest = _click_command(command.words)
    assert not hasattr(found, "commands"), (
        f"README line {command.line}: `{command.text}` names no command of `{found.name}`"
    )
    options = {opt for param in found.params for opt in getattr(param, "opts", [])}
    used = {word.split("=", 1)[0] for word in rest if word.startswith("-")}
    unknown = sorted(used - options)
    assert not unknown, (
        f"README line {command.line}: `{command.text}` uses {unknown}, which "
        f"`clue {found.name}` does not take (it takes {sorted(options)})"
    )


def test_every_benchmark_script_the_readme_names_exists() -> None:
    scripts = [
        word
        for command in readme_commands()
        for word in command.words
        if word.startswith("benchmarks/") and word.endswith(".py")
    ]
    assert scripts
    assert [script for script in scripts if not (ROOT / script).is_file()] == []


@pytest.mark.slow
def test_the_cheap_readme_commands_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quickstart first (its run is ``RUN``, ``runs/ml30/seed0`` and ``seed1``, and the
    run compared under ``runs/table``), then every other command of RUN_ON_THE_QUICKSTART
    in the README's order, in a folder holding the repository's recipes and the example
    input files the README mentions."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    code, stdout, stderr = main_exit(["run", "recipes/quickstart.yaml"], capsys)
    assert code == 0, stderr
    run = Path(stdout.strip().splitlines()[-1])
    assert (run / "metrics.json").is_file()
    for alias in ("runs/ml30/seed0", "runs/ml30/seed1", "runs/table/quickstart/seed0"):
        (tmp_path / alias).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / alias).symlink_to(run.resolve())
    (tmp_path / "new_users.txt").write_text("501 3 17 42 8\n502 9 9 120\n", encoding="utf-8")
    (tmp_path / "in_stock.txt").write_text(" ".join(map(str, range(0, 200, 3))) + "\n")
    if not (Path(os.environ.get("CLUE_DATA_DIR", "")) / "ml-1m").is_dir():
        # `clue validate` checks the recipe's data file: give it a small stand-in
        fake = tmp_path / "data" / "ml-1m"
        fake.mkdir(parents=True)
        (fake / "ml-1m_sequences.txt").write_text("1 1 2 3 4 5\n2 2 3 4 5 6\n")
        monkeypatch.setenv("CLUE_DATA_DIR", str(tmp_path / "data"))
    ran = []
    for command in clue_commands():
        if command.text not in RUN_ON_THE_QUICKSTART or command.text == (
            "clue run recipes/quickstart.yaml"
        ):
            continue
        argv = [str(run) if word == "RUN" else word for word in command.words[1:]]
        if command.text.startswith("clue compare"):
            argv = ["compare", *sorted(str(p) for p in Path("runs/table").glob("*/seed*"))]
            argv += ["--markdown", "table.md"]
        if command.text.startswith("clue neighbours users.npy"):
            ids = [int(user) for user in __import__("numpy").load("users.npy")["user"][:3]]
            Path("ids.txt").write_text("\n".join(map(str, ids)) + "\n")
        code, stdout, stderr = main_exit(argv, capsys)
        assert code == 0, f"README line {command.line}: `{command.text}` exited {code}:\n{stderr}"
        ran.append(command.text)
    assert len(ran) == len(RUN_ON_THE_QUICKSTART) - 1
    for made in ("curves.png", "table.md", "users.npy", "items.safetensors", "recs.csv"):
        assert Path(made).is_file() and Path(made).stat().st_size > 0, made
    assert Path("similar.csv").read_text().startswith("user,rank,neighbour,score\n")
    assert list(Path("tb/seed0").glob("events.out.tfevents.*"))
