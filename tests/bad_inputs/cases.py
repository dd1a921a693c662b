"""The bad-input corpus: what each case feeds clue_fw and the error it must produce.

Every case is a :class:`Case`. ``test_bad_inputs.py`` runs each one through the library
API (``load_recipe`` + ``clue_fw.run``, or a direct call) and through the CLI
(``clue_fw.cli.main`` in-process), and checks the exact error class, the message
fragments, exit code 2, no traceback, and that no run directory is left looking
complete. ``docs/bad-inputs.md`` is generated from this file::

    python tests/bad_inputs/cases.py > docs/bad-inputs.md
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import pickle
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from input_paths import (
    BROKEN,
    BROKEN_PROVIDER,
    ArgumentPlugin,
    EmptyPlugin,
    ExitingPlugin,
    MisspeltHookPlugin,
    RaisingPlugin,
    entry_point,
    fifo,
    link,
    read_labels_from,
    read_sequences_from,
    write_output_to_fifo,
)
from run_directory_inputs import (
    DEEP_JSON,
    another_run_id,
    copy_file,
    directory_at,
    disk_full,
    drop_key,
    edit_metadata,
    edit_text,
    fifo_lock,
    file_at,
    foreign_metrics,
    hold_lock,
    init_from_long_path,
    read_only,
    resume_at,
    run_with_out,
    run_with_out_and_resume,
    set_key,
    to_int32,
    without_finetune,
    write_metrics,
)

# A complete run takes well under a second on CPU.
TINY: dict[str, Any] = {
    "seed": 0,
    "device": "cpu",
    "data": {
        "format": "synthetic",
        "num_users": 120,
        "num_items": 40,
        "min_length": 5,
        "max_length": 12,
        "num_clusters": 4,
        "max_len": 8,
    },
    "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2, "dropout": 0.1},
    "pretrain": {
        "objective": {"kind": "clue", "projector_dim": 16, "predictor_dim": 8},
        "views": [{"kind": "dropout"}],
        "train": {"epochs": 1, "batch_size": 64},
    },
    "finetune": {
        "head": {"kind": "next_item"},
        "train": {"epochs": 2, "batch_size": 64},
        "patience": 5,
    },
}
TINY_YAML = yaml.safe_dump(TINY, sort_keys=False)
SEQUENCES = {"format": "sequences", "path": "seq.txt", "max_len": 8}
TABLE = {"format": "interactions", "path": "ratings.dat", "max_len": 8}

Group = Literal[
    "recipe", "override", "run directory", "data", "labels", "checkpoint", "plugins", "commands"
]
Command = Literal["run", "resume", "probe", "api", "cli"]


@dataclass(frozen=True)
class Case:
    """One bad input and the error it must produce.

    The case directory holds ``recipe.yaml``, the data root ``data/``, the ``--out``
    target ``out/`` (absent unless ``setup`` makes it) and, for ``resume`` cases,
    ``run/``: a copy of a finished tiny run (without ``metrics.json``) that ``damage``
    may spoil. ``probe`` cases run ``clue probe`` with ``cli_args`` (the run directory
    first) on ``run/``, a copy of the finished run (with its ``metrics.json``); the library
    side calls :func:`clue_fw.probing.probe_run` with the same arguments
    (:func:`probe_call`). ``cli`` cases run ``clue ARGV`` (another command than ``clue run``)
    in a case directory that also holds ``R0/``, a finished tiny run with its
    ``metrics.json``; a refused command must leave every file there as it was.
    """

    id: str
    group: Group
    summary: str
    error: str | None  # exact ClueError subclass name; None: the input must be accepted
    fragments: tuple[str, ...] = ()
    recipe: str | bytes | None = None  # recipe.yaml contents; None: TINY_YAML after `edit`
    edit: Callable[[dict[str, Any]], None] | None = None
    sets: tuple[str, ...] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)  # written under data/
    setup: Callable[[Path], object] | None = None  # gets the case dir; may return a clean-up
    command: Command = "run"
    damage: Callable[[Path], None] | None = None  # gets run/ (resume cases)
    cli_args: tuple[str, ...] = ()  # extra CLI arguments ({case} = the case directory)
    cli_only: bool = False
    api: Callable[[Path], object] | None = None  # command "api": called with the case dir
    creates_run_dir: bool = False  # fails after the run directory exists (no metrics.json)
    env: Mapping[str, str | None] = field(default_factory=dict)  # None: unset the variable
    entry_points: tuple[Any, ...] = ()  # installed plugins (entry-point loading switched on)
    argv: tuple[str, ...] = ()  # command "cli": clue ARGV ({case} = the case directory)

    def recipe_bytes(self) -> bytes:
        if isinstance(self.recipe, bytes):
            return self.recipe
        if self.recipe is not None:
            return self.recipe.encode("utf-8")
        data = copy.deepcopy(TINY)
        if self.edit is not None:
            self.edit(data)
        return yaml.safe_dump(data, sort_keys=False).encode("utf-8")


# --------------------------------------------------------------------------- helpers


def put(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets ``a.b.c`` in the recipe mapping."""

    def edit(data: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return edit


def put_all(values: Mapping[str, Any]) -> Callable[[dict[str, Any]], None]:
    """An edit that sets several ``a.b.c`` keys, in order."""

    def edit(data: dict[str, Any]) -> None:
        for dotted, value in values.items():
            put(dotted, value)(data)

    return edit


def drop(dotted: str) -> Callable[[dict[str, Any]], None]:
    """An edit that deletes ``a.b.c`` from the recipe mapping."""

    def edit(data: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        del node[last]

    return edit


def laughs(levels: int, width: int) -> str:
    """A billion-laughs document: each level is ``width`` aliases of the one before."""
    lines = ['lol0: &lol0 "lol"']
    for level in range(1, levels):
        lines.append(f"lol{level}: &lol{level} [" + ", ".join([f"*lol{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def sequence_file(users: int = 40, length: int = 8, separator: str = " ") -> bytes:
    """A small valid sequence file: ``users`` lines of ``length`` items over 20 items."""
    lines = []
    for user in range(1, users + 1):
        items = [str((user * 7 + i * 3) % 20 + 1) for i in range(length)]
        lines.append(separator.join([str(user), *items]))
    return ("\n".join(lines) + "\n").encode()


def mkdir(relative: str) -> Callable[[Path], None]:
    return lambda case_dir: (case_dir / relative).mkdir(parents=True)


def nonempty_out(case_dir: Path) -> None:
    (case_dir / "out").mkdir()
    (case_dir / "out" / "keep.txt").write_text("precious")


def remove_recipe(case_dir: Path) -> None:
    (case_dir / "recipe.yaml").unlink()


def recipe_is_directory(case_dir: Path) -> None:
    (case_dir / "recipe.yaml").unlink()
    (case_dir / "recipe.yaml").mkdir()


def empty_run_dir(case_dir: Path) -> None:
    import shutil

    shutil.rmtree(case_dir / "run")
    (case_dir / "run").mkdir()


# ------------------------------------------------------------------ checkpoint damage

EMBEDDING = "model.encoder.item_embedding.weight"


def _split(raw: bytes) -> tuple[dict[str, Any], bytes]:
    length = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + length]), raw[8 + length :]


def _join(header: dict[str, Any], data: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def truncate(name: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        path = run_dir / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return damage


def replace(name: str, payload: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        (run_dir / name).write_bytes(payload() if callable(payload) else payload)

    return damage


def header_dtype(name: str, tensor: str, dtype: str) -> Callable[[Path], None]:
    """Rewrite the dtype that the safetensors header declares for one tensor."""

    def damage(run_dir: Path) -> None:
        path = run_dir / name
        header, data = _split(path.read_bytes())
        header[tensor]["dtype"] = dtype
        path.write_bytes(_join(header, data))

    return damage


def header_text(name: str, text: bytes) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        path = run_dir / name
        _, data = _split(path.read_bytes())
        path.write_bytes(struct.pack("<Q", len(text)) + text + data)

    return damage


def rewrite_tensors(
    name: str, change: Callable[[dict[str, Any]], None], keep_metadata: bool = True
) -> Callable[[Path], None]:
    """Re-save a checkpoint with safetensors after ``change`` edits its tensors."""

    def damage(run_dir: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import save_file

        path = run_dir / name
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        change(tensors)
        save_file(tensors, str(path), metadata=metadata if keep_metadata else None)

    return damage


def _grow(key: str) -> Callable[[dict[str, Any]], None]:
    def change(tensors: dict[str, Any]) -> None:
        import torch

        tensors[key] = torch.cat([tensors[key], tensors[key][:1]])

    return change


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    def change(tensors: dict[str, Any]) -> None:
        del tensors[key]

    return change


def torch_save_bytes() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2, 2)}, buffer)
    return buffer.getvalue()


def delete_finetune_and(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    def both(run_dir: Path) -> None:
        import shutil

        shutil.rmtree(run_dir / "finetune")
        damage(run_dir)

    return both


# ------------------------------------------------------------------------ label calls


def _labels_file(name: str, content: bytes, column: str = "gender") -> Callable[[Path], object]:
    def call(case_dir: Path) -> object:
        from clue_fw.data.labels import read_label_file

        path = case_dir / name
        path.write_bytes(content)
        return read_label_file(path, column)  # type: ignore[arg-type]

    return call


def _align(labels: dict[int, str], users: list[int], strict: bool) -> Callable[[Path], object]:
    def call(case_dir: Path) -> object:
        from clue_fw.data.labels import align_labels

        return align_labels(labels, users, strict=strict, source="labels.csv")

    return call


def _synth(
    users: int, items: int, existing: str | None = None, **options: Any
) -> Callable[[Path], object]:
    """``clue data synth`` into ``case_dir/synth/s.txt`` (``existing``: a file there first)."""

    def call(case_dir: Path) -> object:
        from clue_fw.data.synth import write_synthetic_sequences

        folder = case_dir / "synth"
        if existing is not None:
            folder.mkdir()
            (folder / existing).write_text("precious\n")
        return write_synthetic_sequences(folder / "s.txt", users, items, **options)

    return call


def _load_absent_checkpoint(case_dir: Path) -> object:
    from clue_fw.training.checkpoint import load_checkpoint

    return load_checkpoint(case_dir / "absent.safetensors")


# ------------------------------------------------------------- profile and cold_start

TINY_USERS = range(1, TINY["data"]["num_users"] + 1)  # the synthetic data's user ids


def head(spec: dict[str, Any], history: str = "recent") -> Callable[[dict[str, Any]], None]:
    """An edit that makes ``spec`` the fine-tuning head (and sets finetune.train.history)."""

    def edit(data: dict[str, Any]) -> None:
        data["finetune"]["head"] = spec
        data["finetune"]["train"]["history"] = history

    return edit


def label_csv(label: Callable[[int], str | None], users: range = TINY_USERS) -> bytes:
    """A ``user,gender`` file; users whose ``label`` is None get no line."""
    lines = ["user,gender"] + [f"{u},{label(u)}" for u in users if label(u) is not None]
    return ("\n".join(lines) + "\n").encode()


def movies_dat(genres: Callable[[int], str]) -> bytes:
    """A movies.dat for the synthetic items 1..num_items."""
    items = range(1, TINY["data"]["num_items"] + 1)
    return "".join(f"{i}::Movie {i} (2000)::{genres(i)}\n" for i in items).encode()


PROFILE = {"kind": "profile", "labels": {"path": "gender.csv"}}
GENRES = {"format": "genres", "movies": "movies.dat"}
GENRE_MOVIES = movies_dat(lambda i: ("Drama", "Comedy", "Animation|Children's")[i % 3])


# ------------------------------------------------------------------------ clue probe

#: ``clue probe`` flags and the probe_run keyword each sets (value parsed by the function)
PROBE_FLAGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--labels": ("labels", str),
    "--column": ("column", str),
    "--stage": ("stage", str),
    "--missing": ("missing", str),
    "--label-format": ("label_format", str),
    "--l2-grid": ("l2_grid", lambda text: [float(v) for v in text.split(",")]),
    "--k-grid": ("k_grid", lambda text: [int(v) for v in text.split(",")]),
}
PROBE_SWITCHES = {"--no-next-item": "next_item", "--no-baselines": "baselines"}


def probe_call(args: tuple[str, ...], case_dir: Path) -> object:
    """``probe_run`` with the arguments of the CLI line ``clue probe ARGS``."""
    from clue_fw.probing import probe_run

    words = [arg.format(case=case_dir) for arg in args]
    kwargs: dict[str, Any] = {}
    rest = iter(words[1:])
    for word in rest:
        if word in PROBE_SWITCHES:
            kwargs[PROBE_SWITCHES[word]] = False
            continue
        name, parse = PROBE_FLAGS[word]
        kwargs[name] = parse(next(rest))
    return probe_run(words[0], **kwargs)


def write_zero_run(case_dir: Path) -> None:
    """A finished tiny run without pre-training in ``zero/``."""
    from rich.console import Console

    from clue_fw.runner import run

    data = copy.deepcopy(TINY)
    del data["pretrain"]
    data["finetune"]["train"]["epochs"] = 1
    run(data, out=case_dir / "zero", console=Console(file=io.StringIO()))


RUN = "{case}/run"
GENDER = ("--labels", "{case}/data/gender.csv")
QUICK = ("--no-next-item", "--no-baselines", "--l2-grid", "1", "--k-grid", "1")
GENDER_FILE = {"gender.csv": label_csv(lambda u: "MF"[u % 2])}


# ------------------------------------------------------------------------------ cases

EXTRA = "Extra inputs are not permitted"
NOT_READABLE = "is not a readable safetensors checkpoint"
NAME_RULE = "a name must be one folder name of 1 to 100 characters"

CASES: tuple[Case, ...] = (
    # ---------------------------------------------------------------- recipe: YAML
    Case(
        "yaml-unclosed-bracket",
        "recipe",
        "a flow list that is never closed",
        "RecipeError",
        ("is not valid YAML at line 3",),
        recipe="seed: 0\ndata: [1, 2\nbackbone: {}\n",
    ),
    Case(
        "yaml-bad-indentation",
        "recipe",
        "a key indented under a scalar",
        "RecipeError",
        ("is not valid YAML at line 2",),
        recipe="seed: 0\n  device: cpu\n",
    ),
    Case(
        "yaml-tab-indentation",
        "recipe",
        "a tab used for indentation",
        "RecipeError",
        ("is not valid YAML at line 2", "that cannot start any token"),
        recipe="data:\n\tformat: synthetic\n",
    ),
    Case(
        "yaml-duplicate-key",
        "recipe",
        "the same key twice in one mapping (PyYAML would keep the last silently)",
        "RecipeError",
        ("is refused: key 'seed' appears twice in one mapping (lines 1 and",),
        recipe=TINY_YAML + "seed: 1\n",
    ),
    Case(
        "yaml-two-documents",
        "recipe",
        "two YAML documents in one file",
        "RecipeError",
        ("is not valid YAML", "expected a single document in the stream"),
        recipe=TINY_YAML + "---\nseed: 1\n",
    ),
    Case(
        "yaml-python-tag",
        "recipe",
        "a !!python/object/apply tag (code execution with an unsafe loader)",
        "RecipeError",
        ("is not valid YAML", "could not determine a constructor", "python/object/apply"),
        recipe="!!python/object/apply:os.system ['echo pwned']\n",
    ),
    Case(
        "yaml-impossible-date",
        "recipe",
        "an implicit timestamp that is not a date (PyYAML raises ValueError)",
        "RecipeError",
        ("is not valid YAML: a value cannot be read", "month must be in 1..12"),
        recipe=TINY_YAML + "name: 2024-13-01\n",
    ),
    Case(
        "yaml-bomb-many-aliases",
        "recipe",
        "a billion-laughs document with 110 aliases",
        "RecipeError",
        ("is refused: it uses 110 YAML aliases; at most 100 are allowed", "YAML bombs"),
        recipe=laughs(12, 10),
    ),
    Case(
        "yaml-bomb-expansion",
        "recipe",
        "a billion-laughs document under the alias cap (81 aliases, 9^9 leaves)",
        "RecipeError",
        ("is refused: its aliases expand to", "YAML nodes; at most 100,000 are allowed"),
        recipe=laughs(10, 9),
    ),
    Case(
        "yaml-recursive-alias",
        "recipe",
        "an anchor used inside itself",
        "RecipeError",
        ("is refused: an anchor is used inside itself (recursive alias",),
        recipe=TINY_YAML + "name: &me [*me]\n",
    ),
    Case(
        "yaml-deep-nesting",
        "recipe",
        "lists nested 500 deep (PyYAML would hit RecursionError)",
        "RecipeError",
        ("is refused: it nests deeper than 100 levels",),
        recipe="name: " + "[" * 500 + "]" * 500 + "\n",
    ),
    Case(
        "recipe-too-large",
        "recipe",
        "a recipe file over 1 MiB",
        "RecipeError",
        ("is refused: it is larger than 1 MiB",),
        recipe=TINY_YAML + "# " + "x" * (1 << 20) + "\n",
    ),
    Case(
        "recipe-not-utf8",
        "recipe",
        "a recipe file that is not UTF-8",
        "RecipeError",
        ("Cannot read recipe", "'utf-8' codec can't decode"),
        recipe=b"seed: \xff\xfe\n",
    ),
    Case(
        "recipe-empty",
        "recipe",
        "an empty recipe file",
        "RecipeError",
        ("is empty; it must be a YAML mapping",),
        recipe="",
    ),
    Case(
        "recipe-not-a-mapping",
        "recipe",
        "a YAML list instead of a mapping",
        "RecipeError",
        ("must be a YAML mapping with data, backbone and finetune keys; it holds a list",),
        recipe="- data\n- backbone\n",
    ),
    Case(
        "recipe-missing-file",
        "recipe",
        "the recipe path does not exist",
        "RecipeError",
        ("Recipe file not found",),
        setup=remove_recipe,
    ),
    Case(
        "recipe-is-a-directory",
        "recipe",
        "the recipe path is a directory",
        "RecipeError",
        ("Cannot read recipe",),
        setup=recipe_is_directory,
    ),
    # ---------------------------------------------------------------- recipe: validation
    Case(
        "type-word-for-int",
        "recipe",
        "backbone.dim: sixteen",
        "RecipeError",
        ("backbone.dim: Input should be a valid integer",),
        edit=put("backbone.dim", "sixteen"),
    ),
    Case(
        "type-scalar-for-section",
        "recipe",
        "backbone: transformer (a string, not a mapping)",
        "RecipeError",
        ("backbone: Input should be a valid dictionary",),
        edit=put("backbone", "transformer"),
    ),
    Case(
        "type-mapping-for-list",
        "recipe",
        "pretrain.views given as one mapping instead of a list",
        "RecipeError",
        ("pretrain.views: Input should be a valid list",),
        edit=put("pretrain.views", {"kind": "dropout"}),
    ),
    Case(
        "type-fraction-for-int",
        "recipe",
        "finetune.train.epochs: 1.5",
        "RecipeError",
        ("finetune.train.epochs: Input should be a valid integer, got a number with a fractional",),
        edit=put("finetune.train.epochs", 1.5),
    ),
    Case(
        "type-word-for-bool",
        "recipe",
        "finetune.head.tie_weights: maybe",
        "RecipeError",
        ("finetune.head.tie_weights: Input should be a valid boolean",),
        edit=put("finetune.head.tie_weights", "maybe"),
    ),
    Case(
        "type-non-string-key",
        "recipe",
        "an integer key at the top level",
        "RecipeError",
        ("Keys should be strings",),
        edit=lambda data: data.__setitem__(1, "one"),
    ),
    Case(
        "size-zero-max-len",
        "recipe",
        "data.max_len: 0",
        "RecipeError",
        ("data.max_len: Input should be greater than 0",),
        edit=put("data.max_len", 0),
    ),
    Case(
        "size-negative-dim",
        "recipe",
        "backbone.dim: -16",
        "RecipeError",
        ("backbone.dim: Input should be greater than 0",),
        edit=put("backbone.dim", -16),
    ),
    Case(
        "size-zero-batch",
        "recipe",
        "finetune.train.batch_size: 0",
        "RecipeError",
        ("finetune.train.batch_size: Input should be greater than 0",),
        edit=put("finetune.train.batch_size", 0),
    ),
    Case(
        "size-zero-epochs",
        "recipe",
        "pretrain.train.epochs: 0",
        "RecipeError",
        ("pretrain.train.epochs: Input should be greater than 0",),
        edit=put("pretrain.train.epochs", 0),
    ),
    Case(
        "size-negative-lr",
        "recipe",
        "finetune.train.lr: -0.001",
        "RecipeError",
        ("finetune.train.lr: Input should be greater than 0",),
        edit=put("finetune.train.lr", -0.001),
    ),
    Case(
        "size-infinite-lr",
        "recipe",
        "finetune.train.lr: .inf (YAML infinity)",
        "RecipeError",
        ("finetune.train.lr: Input should be a finite number",),
        edit=put("finetune.train.lr", float("inf")),
    ),
    Case(
        "optim-momentum-with-adam",
        "recipe",
        "finetune.train.momentum: 0.9 with the default optimizer adam",
        "RecipeError",
        ("finetune.train: Value error, momentum is a setting of optimizer sgd, not adam",),
        edit=put("finetune.train.momentum", 0.9),
    ),
    Case(
        "optim-momentum-one",
        "recipe",
        "finetune.train.momentum: 1.0 with optimizer sgd",
        "RecipeError",
        ("finetune.train.momentum: Input should be less than 1",),
        edit=put_all({"finetune.train.optimizer": "sgd", "finetune.train.momentum": 1.0}),
    ),
    Case(
        "optim-beta-one",
        "recipe",
        "pretrain.train.betas: [0.9, 1.0]",
        "RecipeError",
        ("pretrain.train.betas.1: Input should be less than 1",),
        edit=put("pretrain.train.betas", [0.9, 1.0]),
    ),
    Case(
        "optim-min-lr-above-lr",
        "recipe",
        "finetune.train: schedule cosine with min_lr 0.01 above lr 0.001",
        "RecipeError",
        ("min_lr (0.01) must be below the peak learning rate 0.001",),
        edit=put_all({"finetune.train.schedule": "cosine", "finetune.train.min_lr": 0.01}),
    ),
    Case(
        "optim-warmup-longer-than-stage",
        "recipe",
        "finetune.train: warmup_epochs 5 in a stage of 2 epochs",
        "RecipeError",
        ("warmup_epochs (5) is longer than the stage (2 epochs)",),
        edit=put("finetune.train.warmup_epochs", 5),
    ),
    Case(
        "optim-warmup-leaves-no-decay",
        "recipe",
        "finetune.train: schedule linear with warmup_epochs 2 of 2 epochs",
        "RecipeError",
        ("warmup_epochs (2) leaves no epoch of the 2 for the linear decay",),
        edit=put_all({"finetune.train.schedule": "linear", "finetune.train.warmup_epochs": 2}),
    ),
    Case(
        "size-no-views",
        "recipe",
        "pretrain.views: []",
        "RecipeError",
        ("pretrain.views: List should have at least 1 item",),
        edit=put("pretrain.views", []),
    ),
    Case(
        "heads-do-not-divide-dim",
        "recipe",
        "backbone.heads: 3 with dim 16",
        "RecipeError",
        ("backbone: Value error, heads (3) must divide dim (16); try heads=2",),
        edit=put("backbone.heads", 3),
    ),
    Case(
        "unknown-backbone-kind",
        "recipe",
        "backbone.kind: transfomer",
        "RecipeError",
        ("backbone: unknown kind 'transfomer'", "'transformer'", "clue list"),
        edit=put("backbone.kind", "transfomer"),
    ),
    Case(
        "unknown-view-kind",
        "recipe",
        "a view of kind rotate",
        "RecipeError",
        ("pretrain.views.0: unknown kind 'rotate'",),
        edit=put("pretrain.views.0.kind", "rotate"),
    ),
    Case(
        "unknown-objective-kind",
        "recipe",
        "pretrain.objective.kind: clu",
        "RecipeError",
        ("pretrain.objective: unknown kind 'clu'",),
        edit=put("pretrain.objective.kind", "clu"),
    ),
    Case(
        "unknown-data-format",
        "recipe",
        "data.format: parquet",
        "RecipeError",
        ("data: unknown kind 'parquet'",),
        edit=put("data", {"format": "parquet", "path": "x.parquet"}),
    ),
    Case(
        "missing-kind",
        "recipe",
        "a backbone without kind",
        "RecipeError",
        ("backbone: missing `kind`",),
        edit=drop("backbone.kind"),
    ),
    Case(
        "misspelt-top-level-key",
        "recipe",
        "seeed: 1",
        "RecipeError",
        (f"seeed: {EXTRA}",),
        edit=put("seeed", 1),
    ),
    Case(
        "misspelt-nested-key",
        "recipe",
        "pretrain.objective.predictor_hiden: 32",
        "RecipeError",
        (f"pretrain.objective.predictor_hiden: {EXTRA}",),
        edit=put("pretrain.objective.predictor_hiden", 32),
    ),
    Case(
        "missing-section",
        "recipe",
        "no finetune section",
        "RecipeError",
        ("finetune: required field is missing",),
        edit=drop("finetune"),
    ),
    Case(
        "bad-device",
        "recipe",
        "device: gpu",
        "RecipeError",
        ("device must be auto, cpu, mps, cuda or cuda:N, got 'gpu'",),
        edit=put("device", "gpu"),
    ),
    Case(
        "markup-in-message",
        "recipe",
        "a kind that looks like console markup ([/bold]) is printed verbatim",
        "RecipeError",
        ("backbone: unknown kind '[/bold]'",),
        edit=put("backbone.kind", "[/bold]"),
    ),
    Case(
        "synthetic-min-above-max",
        "recipe",
        "data.min_length above data.max_length",
        "DataError",
        ("data.min_length (20) must not exceed data.max_length (12)",),
        edit=put("data.min_length", 20),
    ),
    Case(
        "unknown-monitor",
        "recipe",
        "finetune.monitor names no metric of the head (found at run time)",
        "RecipeError",
        ("finetune.monitor: 'auc' is not a metric of head 'next_item'", "ndcg@10"),
        edit=put("finetune.monitor", "auc"),
        creates_run_dir=True,
    ),
    # ---------------------------------------------------------------- --set overrides
    Case(
        "set-unknown-key",
        "override",
        "--set backbone.dimm=3 (a key the backbone does not have)",
        "RecipeError",
        (f"--set 'backbone.dimm=3': backbone.dimm: {EXTRA}",),
        sets=("backbone.dimm=3",),
    ),
    Case(
        "set-unknown-section",
        "override",
        "--set trainer.epochs=3 (a section the recipe does not have)",
        "RecipeError",
        (f"--set 'trainer.epochs=3': trainer: {EXTRA}",),
        sets=("trainer.epochs=3",),
    ),
    Case(
        "set-wrong-type",
        "override",
        "--set backbone.dim=big",
        "RecipeError",
        ("--set 'backbone.dim=big': backbone.dim: Input should be a valid integer",),
        sets=("backbone.dim=big",),
    ),
    Case(
        "set-breaks-section-check",
        "override",
        "--set backbone.heads=5 (the backbone's own check fails)",
        "RecipeError",
        ("--set 'backbone.heads=5': backbone: Value error, heads (5) must divide dim (16)",),
        sets=("backbone.heads=5",),
    ),
    Case(
        "set-index-of-absent-list",
        "override",
        "--set pretrain.views.0.kind=mask when the recipe has no views list",
        "RecipeError",
        ("pretrain.views does not exist, so it has no item 0", "--set 'pretrain.views=[...]'"),
        edit=drop("pretrain.views"),
        sets=("pretrain.views.0.kind=mask",),
    ),
    Case(
        "set-index-out-of-range",
        "override",
        "--set pretrain.views.3.kind=mask with one view",
        "RecipeError",
        ("pretrain.views.3 does not exist (list of 1)",),
        sets=("pretrain.views.3.kind=mask",),
    ),
    Case(
        "set-through-scalar",
        "override",
        "--set seed.value=1 (seed is a number)",
        "RecipeError",
        ("--set 'seed.value=1': seed is not a mapping",),
        sets=("seed.value=1",),
    ),
    Case(
        "set-without-equals",
        "override",
        "--set seed",
        "RecipeError",
        ("--set 'seed' must look like key.path=value",),
        sets=("seed",),
    ),
    Case(
        "set-empty-key",
        "override",
        "--set backbone..dim=3",
        "RecipeError",
        ("empty key in path 'backbone..dim'",),
        sets=("backbone..dim=3",),
    ),
    Case(
        "set-bad-yaml-value",
        "override",
        "--set backbone.dim=[16",
        "RecipeError",
        ("--set 'backbone.dim=[16': the value is not valid YAML",),
        sets=("backbone.dim=[16",),
    ),
    Case(
        "set-yaml-bomb-value",
        "override",
        "--set name={billion laughs}",
        "RecipeError",
        ("the value is refused: its aliases expand to", "YAML bombs"),
        sets=("name={" + laughs(10, 9).strip().replace("\n", ", ") + "}",),
    ),
    # ---------------------------------------------------------------- run directories
    Case(
        "out-not-empty",
        "run directory",
        "--out names a non-empty directory (left untouched)",
        "RunDirectoryError",
        ("exists and is not empty", "--overwrite"),
        setup=nonempty_out,
    ),
    Case(
        "out-not-empty-overwrite",
        "run directory",
        "--out --overwrite of a non-empty directory that is not a run (nothing deleted)",
        "RunDirectoryError",
        ("is not a clue_fw run directory", "--overwrite only replaces runs"),
        setup=nonempty_out,
        cli_args=("--overwrite",),
    ),
    Case(
        "out-and-resume",
        "run directory",
        "both --out and --resume",
        "ClueError",
        ("Use either --out (a new run) or --resume (an existing run), not both",),
        cli_args=("--resume", "{case}/run"),
        setup=mkdir("run"),
        cli_only=True,
    ),
    Case(
        "resume-not-a-run",
        "run directory",
        "--resume names a directory without recipe.yaml",
        "RunDirectoryError",
        ("Cannot resume", "holds no recipe.yaml"),
        command="resume",
        setup=empty_run_dir,
    ),
    Case(
        "resume-changed-recipe",
        "run directory",
        "--resume with a --set that changes the recipe",
        "RunDirectoryError",
        ("the recipe differs from the one it was started with", "finetune.train.lr"),
        command="resume",
        sets=("finetune.train.lr=0.01",),
    ),
    # ---------------------------------------------------------------- data files
    Case(
        "data-missing-file",
        "data",
        "the data file does not exist under the data root",
        "DataError",
        ("Data file not found", "seq.txt", "CLUE_DATA_DIR"),
        edit=put("data", SEQUENCES),
    ),
    Case(
        "data-path-is-directory",
        "data",
        "the data path is a directory",
        "DataError",
        ("is not a file",),
        edit=put("data", SEQUENCES),
        setup=mkdir("data/seq.txt"),
    ),
    Case(
        "data-empty-file",
        "data",
        "an empty sequence file",
        "DataError",
        ("seq.txt is empty: expected at least one line of data",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b""},
    ),
    Case(
        "data-blank-lines",
        "data",
        "a sequence file of blank lines (and a BOM)",
        "DataError",
        ("seq.txt is empty",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"\xef\xbb\xbf\n  \n\t\n"},
    ),
    Case(
        "data-non-integer-user",
        "data",
        "a user id that is not an integer",
        "DataError",
        ("seq.txt, line 2: user id 'u2' is not an integer id",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"1 2 3 4\nu2 5 6 7\n"},
    ),
    Case(
        "data-non-integer-item",
        "data",
        "an item id with a decimal point",
        "DataError",
        ("seq.txt, line 1: item id '3.5' is not an integer id",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"1 2 3.5 4\n"},
    ),
    Case(
        "data-user-without-items",
        "data",
        "a line with only a user id",
        "DataError",
        ("seq.txt, line 2: user 42 has no items",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"1 2 3 4\n42\n"},
    ),
    Case(
        "data-duplicated-user",
        "data",
        "the same user on two lines (both lines named)",
        "DataError",
        ("seq.txt, line 3: user 1 appears again (first on line 1)",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"1 2 3 4\n2 5 6 7\n1 8 9 10\n"},
    ),
    Case(
        "data-pickle",
        "data",
        "a pickle file given as the sequence file",
        "DataError",
        ("seq.txt looks like a binary file (it contains NUL bytes)",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": pickle.dumps({"users": [1, 2], "items": [[1, 2], [3]]})},
    ),
    Case(
        "data-gzip",
        "data",
        "a gzip-compressed sequence file",
        "DataError",
        ("looks like a binary file",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": gzip.compress(sequence_file(), mtime=0)},
    ),
    Case(
        "data-utf16",
        "data",
        "a UTF-16 sequence file",
        "DataError",
        ("seq.txt is UTF-16 text; save it as UTF-8",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": sequence_file().decode().encode("utf-16")},
    ),
    Case(
        "data-id-out-of-range",
        "data",
        "an item id beyond 64 bits",
        "DataError",
        ("line 1: item id 99999999999999999999 is out of range",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"1 2 3 99999999999999999999\n"},
    ),
    Case(
        "data-negative-item",
        "data",
        "a negative item id",
        "DataError",
        ("holds a negative item id (-3)",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": sequence_file() + b"99 2 -3 4\n"},
    ),
    Case(
        "data-too-short",
        "data",
        "every user has fewer than 3 interactions",
        "DataError",
        ("No interactions of", "survive filtering", "Both thresholds are at their floor"),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"1 2 3\n2 4 5\n"},
    ),
    Case(
        "data-bom",
        "data",
        "a UTF-8 BOM at the start of a sequence file is stripped",
        None,
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"\xef\xbb\xbf" + sequence_file()},
    ),
    Case(
        "data-tabs-and-spaces",
        "data",
        "tabs and spaces mixed in a sequence file (any whitespace separates)",
        None,
        edit=put("data", SEQUENCES),
        files={"seq.txt": sequence_file(separator=" ").replace(b" ", b"\t", 200)},
    ),
    Case(
        "data-crlf",
        "data",
        "Windows line ends in a sequence file",
        None,
        edit=put("data", SEQUENCES),
        files={"seq.txt": sequence_file().replace(b"\n", b"\r\n")},
    ),
    Case(
        "table-tabs-and-spaces",
        "data",
        "an interaction table that mixes tabs and spaces between columns",
        "DataError",
        ("ratings.dat, line 1: mixes tabs and spaces between columns", "separator: whitespace"),
        edit=put("data", TABLE),
        files={"ratings.dat": b"1\t2 5\t100\n1\t3\t5\t101\n"},
    ),
    Case(
        "table-tabs-and-spaces-whitespace",
        "data",
        "the same mixture read with `separator: whitespace`",
        None,
        edit=put("data", {**TABLE, "separator": "whitespace"}),
        files={
            "ratings.dat": b"".join(
                f"{u}\t{(u * 7 + t * 3) % 20 + 1} 5\t{t}\n".encode()
                for u in range(1, 41)
                for t in range(8)
            )
        },
    ),
    Case(
        "table-column-count",
        "data",
        "a ratings.dat line with 3 of 4 columns",
        "DataError",
        ("ratings.dat, line 3: expected 4 columns (user, item, rating, timestamp), found 3",),
        edit=put("data", TABLE),
        files={"ratings.dat": b"1::10::5::300\n1::11::5::301\n1::12::302\n"},
    ),
    Case(
        "table-five-columns",
        "data",
        "5 columns and no `columns` list",
        "DataError",
        ("line 1: found 5 columns; without a `columns` list",),
        edit=put("data", TABLE),
        files={"ratings.dat": b"1,2,3,4,5\n"},
    ),
    Case(
        "table-bad-timestamp",
        "data",
        "a timestamp that is a word",
        "DataError",
        ("line 1: timestamp 'yesterday' is not a number",),
        edit=put("data", TABLE),
        files={"ratings.dat": b"1,2,yesterday\n"},
    ),
    Case(
        "table-nan-timestamp",
        "data",
        "a timestamp that is nan",
        "DataError",
        ("line 2: timestamp 'nan' is not a finite number",),
        edit=put("data", TABLE),
        files={"ratings.dat": b"1,2,10\n1,3,nan\n"},
    ),
    Case(
        "table-header-not-skipped",
        "data",
        "a header line without `skip_header: true`",
        "DataError",
        ("line 1: user id 'user' is not an integer id", "skip_header: true"),
        edit=put("data", TABLE),
        files={"ratings.dat": b"user,item,timestamp\n1,2,3\n"},
    ),
    Case(
        "table-columns-without-timestamp",
        "data",
        "a `columns` list without timestamp",
        "DataError",
        ("`columns` for", "must include 'timestamp'"),
        edit=put("data", {**TABLE, "columns": ["user", "item", "rating"]}),
        files={"ratings.dat": b"1,2,3\n"},
    ),
    # ---------------------------------------------------------------- label files
    Case(
        "labels-missing-users",
        "labels",
        "a label file without labels for some users",
        "DataError",
        ("Labels do not match the users: 2 of 4 users have no label in labels.csv",),
        command="api",
        api=_align({1: "F", 2: "M"}, [1, 2, 3, 4], strict=False),
    ),
    Case(
        "labels-unknown-users",
        "labels",
        "labels for users that are not in the data (strict)",
        "DataError",
        ("labels.csv has labels for 2 users that are not in the data (e.g. users 98, 99)",),
        command="api",
        api=_align({1: "F", 2: "M", 98: "F", 99: "M"}, [1, 2], strict=True),
    ),
    Case(
        "labels-duplicated-user",
        "labels",
        "one user labelled twice",
        "DataError",
        ("labels.csv, line 3: user 1 appears again (first on line 2)",),
        command="api",
        api=_labels_file("labels.csv", b"user,gender\n1,F\n1,M\n"),
    ),
    Case(
        "labels-non-integer-user",
        "labels",
        "a label line whose user id is a word",
        "DataError",
        ("labels.csv, line 2: user id 'abc' is not an integer id",),
        command="api",
        api=_labels_file("labels.csv", b"1,F\nabc,M\n"),
    ),
    Case(
        "labels-users-dat-short-line",
        "labels",
        "a users.dat line with 3 of 5 fields",
        "DataError",
        ("users.dat, line 2: expected 5 fields (UserID::Gender::Age::Occupation::Zip-code)",),
        command="api",
        api=_labels_file("users.dat", b"1::F::1::10::48067\n2::M::56\n", "age"),
    ),
    Case(
        "labels-empty-file",
        "labels",
        "an empty label file",
        "DataError",
        ("labels.csv is empty",),
        command="api",
        api=_labels_file("labels.csv", b""),
    ),
    # ---------------------------------------------------------------- checkpoints
    Case(
        "ckpt-truncated",
        "checkpoint",
        "finetune/last.safetensors cut in half",
        "CheckpointError",
        (NOT_READABLE, "the file is truncated:", "bytes its header declares"),
        command="resume",
        damage=truncate("finetune/last.safetensors"),
    ),
    Case(
        "ckpt-empty",
        "checkpoint",
        "pretrain/last.safetensors is empty",
        "CheckpointError",
        (NOT_READABLE, "header too small"),
        command="resume",
        damage=replace("pretrain/last.safetensors", b""),
    ),
    Case(
        "ckpt-pickle-renamed",
        "checkpoint",
        "a pickle file renamed last.safetensors",
        "CheckpointError",
        ("last.safetensors is a pickle file, not a safetensors checkpoint", "never loads pickle"),
        command="resume",
        damage=replace("finetune/last.safetensors", pickle.dumps({"weight": [1.0, 2.0]})),
    ),
    Case(
        "ckpt-torch-save-renamed",
        "checkpoint",
        "a torch.save file renamed last.safetensors",
        "CheckpointError",
        ("is a zip archive (as written by torch.save, which pickles)",),
        command="resume",
        damage=replace("finetune/last.safetensors", torch_save_bytes),
    ),
    Case(
        "ckpt-header-dtype-size",
        "checkpoint",
        "the header declares F64 for an F32 tensor (sizes no longer add up)",
        "CheckpointError",
        (NOT_READABLE, "invalid shape, data type, or offset for tensor"),
        command="resume",
        damage=header_dtype("finetune/last.safetensors", EMBEDDING, "F64"),
    ),
    Case(
        "ckpt-header-wrong-dtype",
        "checkpoint",
        "the header declares I32 for an F32 tensor (same size, wrong type)",
        "CheckpointError",
        (f"{EMBEDDING} has dtype torch.int32 in the checkpoint but torch.float32 in the model",),
        command="resume",
        damage=header_dtype("finetune/last.safetensors", EMBEDDING, "I32"),
    ),
    Case(
        "ckpt-header-unknown-dtype",
        "checkpoint",
        "the header declares a dtype that does not exist",
        "CheckpointError",
        (NOT_READABLE, "unknown variant `F33`"),
        command="resume",
        damage=header_dtype("finetune/last.safetensors", EMBEDDING, "F33"),
    ),
    Case(
        "ckpt-header-not-json",
        "checkpoint",
        "the header is not JSON",
        "CheckpointError",
        (NOT_READABLE, "invalid JSON in header"),
        command="resume",
        damage=header_text("finetune/last.safetensors", b"{not json}"),
    ),
    Case(
        "ckpt-wrong-shape",
        "checkpoint",
        "a tensor with one row too many (clue_fw metadata kept)",
        "CheckpointError",
        ("does not match the recipe's model", f"{EMBEDDING} has shape"),
        command="resume",
        damage=rewrite_tensors("finetune/last.safetensors", _grow(EMBEDDING)),
    ),
    Case(
        "ckpt-missing-tensor",
        "checkpoint",
        "a model tensor is absent",
        "CheckpointError",
        ("does not match the recipe's model: missing encoder.user_token",),
        command="resume",
        damage=rewrite_tensors("finetune/last.safetensors", _without("model.encoder.user_token")),
    ),
    Case(
        "ckpt-foreign-safetensors",
        "checkpoint",
        "a safetensors file without clue_fw metadata",
        "CheckpointError",
        ("is a safetensors file but not a clue_fw checkpoint",),
        command="resume",
        damage=rewrite_tensors(
            "finetune/last.safetensors", lambda tensors: None, keep_metadata=False
        ),
    ),
    Case(
        "ckpt-optimizer-shape",
        "checkpoint",
        "an Adam moment whose shape is not its parameter's",
        "CheckpointError",
        ("Optimiser state in", "does not fit", "optim.1.exp_avg is torch.float32 (43, 16)"),
        command="resume",
        damage=rewrite_tensors("finetune/last.safetensors", _grow("optim.1.exp_avg")),
    ),
    Case(
        "ckpt-best-wrong-shape",
        "checkpoint",
        "finetune/best.safetensors with a wrong shape (read after the last epoch)",
        "CheckpointError",
        ("best.safetensors does not match the recipe's model", f"{EMBEDDING} has shape"),
        command="resume",
        damage=rewrite_tensors("finetune/best.safetensors", _grow(EMBEDDING)),
    ),
    Case(
        "ckpt-encoder-truncated",
        "checkpoint",
        "pretrain/encoder.safetensors cut in half before fine-tuning starts",
        "CheckpointError",
        ("encoder.safetensors is not a readable safetensors checkpoint", "truncated"),
        command="resume",
        damage=delete_finetune_and(truncate("pretrain/encoder.safetensors")),
    ),
    Case(
        "ckpt-not-found",
        "checkpoint",
        "load_checkpoint on a path that does not exist",
        "CheckpointError",
        ("Checkpoint not found",),
        command="api",
        api=_load_absent_checkpoint,
    ),
    # ---------------------------------------------------------------- profile and cold_start
    Case(
        "profile-label-file-missing",
        "labels",
        "a profile head whose label file is not under the data root",
        "DataError",
        ("Data file not found:", "gender.csv", "CLUE_DATA_DIR"),
        edit=head(PROFILE),
    ),
    Case(
        "profile-labels-of-other-users",
        "labels",
        "a label file whose users are none of the data's users",
        "DataError",
        (
            "Labels do not match the users: 120 of 120 users have no label in",
            "gender.csv (e.g. users 1, 2, 3, 4, 5 ...)",
            "Was the label file made for this dataset",
        ),
        edit=head(PROFILE),
        files={"gender.csv": label_csv(lambda u: "FM"[u % 2], range(1001, 1121))},
    ),
    Case(
        "profile-labels-other-users-skip",
        "labels",
        "the same file with `missing: skip`",
        "DataError",
        ("No user of the data has a label in", "gender.csv: was the label file made"),
        edit=head({**PROFILE, "labels": {"path": "gender.csv", "missing": "skip"}}),
        files={"gender.csv": label_csv(lambda u: "FM"[u % 2], range(1001, 1121))},
    ),
    Case(
        "profile-single-class",
        "labels",
        "every user has the same label",
        "DataError",
        ("gender.csv gives the users a single class ('F'); a profile task needs at least two",),
        edit=head(PROFILE),
        files={"gender.csv": label_csv(lambda u: "F")},
    ),
    Case(
        "profile-two-labelled-users",
        "labels",
        "`missing: skip` with labels for only two users (no validation or test user left)",
        "DataError",
        ("Only 2 users of the data have a label in", "needs at least 3 (train, valid, test)"),
        edit=head({**PROFILE, "labels": {"path": "gender.csv", "missing": "skip"}}),
        files={"gender.csv": label_csv(lambda u: "FM"[u % 2], range(1, 3))},
    ),
    Case(
        "profile-format-mismatch",
        "labels",
        "`format: users_dat` for a user,label CSV",
        "DataError",
        (
            "gender.csv, line 1: expected 5 fields (UserID::Gender::Age::Occupation::Zip-code)",
            "Is this the right label format?",
        ),
        edit=head({**PROFILE, "labels": {"path": "gender.csv", "format": "users_dat"}}),
        files={"gender.csv": label_csv(lambda u: "FM"[u % 2])},
    ),
    Case(
        "profile-missing-skip",
        "labels",
        "`missing: skip` with labels for a third of the users (and for unknown users)",
        None,
        edit=head({**PROFILE, "labels": {"path": "gender.csv", "missing": "skip"}}),
        files={
            "gender.csv": label_csv(lambda u: "FM"[u % 2] if u % 3 == 0 else None, range(1, 500))
        },
    ),
    Case(
        "history-all-profile",
        "recipe",
        "finetune.train.history: all with a profile head",
        "RecipeError",
        (
            "finetune.train.history: head 'profile' predicts from each user's n most recent",
            "use history: recent",
        ),
        edit=head(PROFILE, history="all"),
    ),
    Case(
        "probe-tied-weights",
        "recipe",
        "finetune.mode: probe with a next_item head that ties weights (the default)",
        "RecipeError",
        ("finetune.mode probe: finetune.head.tie_weights: true", "set it to false for a probe"),
        edit=put("finetune.mode", "probe"),
    ),
    Case(
        "auxiliary-objective-none",
        "recipe",
        "a finetune.auxiliary term whose objective is none",
        "RecipeError",
        ("finetune.auxiliary.0", "objective 'none' trains nothing"),
        edit=put("finetune.auxiliary", [{"objective": {"kind": "none"}}]),
    ),
    Case(
        "auxiliary-weight-zero",
        "recipe",
        "a finetune.auxiliary term of weight 0",
        "RecipeError",
        ("finetune.auxiliary.0.weight", "greater than 0"),
        edit=put("finetune.auxiliary", [{"objective": {"kind": "clue"}, "weight": 0}]),
    ),
    Case(
        "auxiliary-probe",
        "recipe",
        "finetune.auxiliary with finetune.mode: probe (a frozen encoder)",
        "RecipeError",
        ("finetune.auxiliary: auxiliary terms train the encoder", "use mode full"),
        edit=put_all(
            {
                "finetune.mode": "probe",
                "finetune.head.tie_weights": False,
                "finetune.auxiliary": [{"objective": {"kind": "clue"}}],
            }
        ),
    ),
    Case(
        "lpft-without-probe-epochs",
        "recipe",
        "finetune.mode: probe_then_full without finetune.probe_epochs",
        "RecipeError",
        ("finetune.probe_epochs: mode probe_then_full trains the head alone", "set it (e.g."),
        edit=put_all({"finetune.mode": "probe_then_full", "finetune.head.tie_weights": False}),
    ),
    Case(
        "probe-epochs-with-full",
        "recipe",
        "finetune.probe_epochs with finetune.mode: full (the default)",
        "RecipeError",
        (
            "finetune.probe_epochs is a setting of mode probe_then_full, and mode is full",
            "set finetune.mode: probe_then_full, or remove probe_epochs",
        ),
        edit=put("finetune.probe_epochs", 1),
    ),
    Case(
        "probe-epochs-not-below-epochs",
        "override",
        "--set finetune.probe_epochs=2 with finetune.train.epochs 2 (the encoder never unfreezes)",
        "RecipeError",
        (
            "--set 'finetune.probe_epochs=2'",
            "finetune.probe_epochs (2) must be less than finetune.train.epochs (2)",
            "use at most 1",
        ),
        edit=put_all({"finetune.mode": "probe_then_full", "finetune.head.tie_weights": False}),
        sets=("finetune.probe_epochs=2",),
    ),
    Case(
        "lpft-tied-weights",
        "recipe",
        "finetune.mode: probe_then_full with a next_item head that ties weights",
        "RecipeError",
        ("finetune.mode probe_then_full: finetune.head.tie_weights: true",),
        edit=put_all({"finetune.mode": "probe_then_full", "finetune.probe_epochs": 1}),
    ),
    Case(
        "auxiliary-lpft",
        "recipe",
        "finetune.auxiliary with finetune.mode: probe_then_full",
        "RecipeError",
        (
            "finetune.auxiliary: auxiliary terms train the encoder, which finetune.mode "
            "probe_then_full freezes for its probe epochs",
            "use mode full",
        ),
        edit=put_all(
            {
                "finetune.mode": "probe_then_full",
                "finetune.probe_epochs": 1,
                "finetune.head.tie_weights": False,
                "finetune.auxiliary": [{"objective": {"kind": "clue"}}],
            }
        ),
    ),
    Case(
        "encoder-lr-scale-probe",
        "recipe",
        "finetune.encoder_lr_scale with finetune.mode: probe (the encoder never trains)",
        "RecipeError",
        ("finetune.encoder_lr_scale: mode probe freezes the encoder", "remove encoder_lr_scale"),
        edit=put_all(
            {
                "finetune.mode": "probe",
                "finetune.head.tie_weights": False,
                "finetune.encoder_lr_scale": 0.1,
            }
        ),
    ),
    Case(
        "encoder-lr-scale-above-one",
        "recipe",
        "finetune.encoder_lr_scale: 2",
        "RecipeError",
        ("finetune.encoder_lr_scale: Input should be less than or equal to 1",),
        edit=put("finetune.encoder_lr_scale", 2.0),
    ),
    Case(
        "cold-start-unknown-genre",
        "data",
        "a target genre that movies.dat does not have",
        "DataError",
        (
            "Target genres ['Horror'] do not occur in",
            "its genres are Animation, Children's, Comedy",
        ),
        edit=head({"kind": "cold_start", "target": {**GENRES, "target_genres": ["Horror"]}}),
        files={"movies.dat": GENRE_MOVIES},
    ),
    Case(
        "cold-start-items-not-in-movies",
        "data",
        "movies.dat lists only items 1..20 of the 40",
        "DataError",
        ("items of the sequences are not in", "Do the sequences and"),
        edit=head({"kind": "cold_start", "target": {**GENRES, "target_genres": ["Animation"]}}),
        files={"movies.dat": b"".join(GENRE_MOVIES.splitlines(keepends=True)[:20])},
    ),
    Case(
        "cold-start-pairs-unknown-users",
        "data",
        "a target pair file with users that have no source sequence",
        "DataError",
        (
            "2 target users have no source sequence (e.g. user 500 on line 2)",
            "set drop_unknown_users: true to skip them",
        ),
        edit=head({"kind": "cold_start", "target": {"format": "pairs", "path": "target.txt"}}),
        files={"target.txt": b"user,item\n500,7\n1,8\n501,9\n2,7\n3,8\n500,8\n"},
    ),
    Case(
        "cold-start-pairs-drop-unknown-users",
        "data",
        "the same file with `drop_unknown_users: true`",
        None,
        edit=head(
            {
                "kind": "cold_start",
                "target": {"format": "pairs", "path": "target.txt", "drop_unknown_users": True},
            }
        ),
        files={"target.txt": b"user,item\n500,7\n1,8\n501,9\n2,7\n3,8\n500,8\n"},
    ),
    # ------------------------------------------------ ranking protocol (issue 9, part 1)
    Case(
        "cold-start-one-target-item",
        "data",
        "a cold-start target file with a single item: every ranking metric would be 1",
        "DataError",
        ("The target domain has 1 item(s)", "at least 2 target items"),
        edit=head({"kind": "cold_start", "target": {"format": "pairs", "path": "target.txt"}}),
        files={"target.txt": b"user,item\n1,7\n2,7\n3,7\n4,7\n5,7\n"},
    ),
    Case(
        "exclude-seen-unknown",
        "recipe",
        "finetune.head.exclude_seen: maybe",
        "RecipeError",
        ("finetune.head.exclude_seen: Input should be 'history' or 'none'",),
        edit=put("finetune.head.exclude_seen", "maybe"),
    ),
    Case(
        "ties-unknown",
        "recipe",
        "finetune.head.ties: random",
        "RecipeError",
        ("finetune.head.ties: Input should be 'pessimistic' or 'average'",),
        edit=put("finetune.head.ties", "random"),
    ),
    Case(
        "exclude-seen-old-boolean",
        "recipe",
        "finetune.head.exclude_seen: true, the old spelling (warns, runs as `history`)",
        None,
        edit=put("finetune.head.exclude_seen", True),
    ),
    # ------------------------------------------------- run directory (issue 9, part 2)
    Case(
        "out-lock-is-a-fifo",
        "run directory",
        "--out's .lock is a named pipe",
        "RunDirectoryError",
        ("is a named pipe; clue_fw's lock file must be a regular file",),
        setup=fifo_lock,
    ),
    Case(
        "out-name-too-long",
        "run directory",
        "--out with a path component longer than 255 bytes",
        "RunDirectoryError",
        ("Cannot use the path", "File name too long (ENAMETOOLONG)"),
        command="api",
        api=run_with_out("x" * 300),
    ),
    Case(
        "resume-name-too-long",
        "run directory",
        "--resume with a path component longer than 255 bytes",
        "RunDirectoryError",
        ("Cannot use the path", "File name too long (ENAMETOOLONG)"),
        command="api",
        api=resume_at("x" * 300),
    ),
    Case(
        "init-from-name-too-long",
        "recipe",
        "finetune.init_from with a path component longer than 255 bytes",
        "RecipeError",
        ("finetune.init_from: Cannot use the path", "File name too long (ENAMETOOLONG)"),
        edit=init_from_long_path,
    ),
    Case(
        "ckpt-best-is-last",
        "checkpoint",
        "finetune/best.safetensors replaced by the same run's last.safetensors",
        "CheckpointError",
        ("is not this run's best checkpoint (its metadata records role 'last')",),
        command="resume",
        damage=copy_file("finetune/last.safetensors", "finetune/best.safetensors"),
    ),
    Case(
        "ckpt-optimizer-lr-string",
        "checkpoint",
        "optimiser lr 'abc' in the checkpoint (hyper-parameters stay the recipe's)",
        None,
        command="resume",
        damage=edit_metadata(
            "finetune/last.safetensors", set_key("abc", "optimizer", "param_groups", 0, "lr")
        ),
    ),
    Case(
        "ckpt-optimizer-params-duplicated",
        "checkpoint",
        "optimiser parameter group listing parameter 0 over and over",
        "CheckpointError",
        ("Optimiser state in", "parameter group 0 must list parameters [0]"),
        command="resume",
        damage=edit_metadata(
            "finetune/last.safetensors",
            lambda meta: meta["optimizer"]["param_groups"][0].update(
                params=[0] * len(meta["optimizer"]["param_groups"][0]["params"])
            ),
        ),
    ),
    Case(
        "ckpt-optimizer-int-moment",
        "checkpoint",
        "an Adam moment stored as int32",
        "CheckpointError",
        ("Optimiser state in", "exp_avg is torch.int32"),
        command="resume",
        damage=rewrite_tensors("finetune/last.safetensors", to_int32("optim.0.exp_avg")),
    ),
    Case(
        "ckpt-meta-best-nan",
        "checkpoint",
        "training metadata with best NaN",
        "CheckpointError",
        ("'extra.best' must be a finite number, not nan",),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", set_key(float("nan"), "extra", "best")),
    ),
    Case(
        "ckpt-meta-best-epoch-negative",
        "checkpoint",
        "training metadata with best_epoch -5",
        "CheckpointError",
        ("'extra.best_epoch' must be in [0, 2] (its epoch), not -5",),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", set_key(-5, "extra", "best_epoch")),
    ),
    Case(
        "ckpt-meta-bad-epochs-negative",
        "checkpoint",
        "training metadata with bad_epochs -1000000000",
        "CheckpointError",
        ("'extra.bad_epochs' must be in [0, ",),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", set_key(-(10**9), "extra", "bad_epochs")),
    ),
    Case(
        "ckpt-meta-epoch-huge",
        "checkpoint",
        "training metadata with epoch 10**30",
        "CheckpointError",
        ("'epoch' must be a whole number in [0, 2] (the recipe's epochs)",),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", set_key(10**30, "epoch")),
    ),
    Case(
        "out-locked",
        "run directory",
        "--out names a directory that another run holds locked",
        "RunDirectoryError",
        ("is in use by another clue_fw run (PID", "holds its lock file", "choose another --out"),
        setup=hold_lock("out"),
    ),
    Case(
        "out-locked-overwrite",
        "run directory",
        "--out --overwrite of a directory that another run holds locked (nothing deleted)",
        "RunDirectoryError",
        ("is in use by another clue_fw run (PID",),
        setup=hold_lock("out", "keep.txt"),
        cli_args=("--overwrite",),
    ),
    Case(
        "resume-locked",
        "run directory",
        "--resume of a run directory that another run holds locked",
        "RunDirectoryError",
        ("is in use by another clue_fw run (PID",),
        command="resume",
        setup=hold_lock("run"),
    ),
    Case(
        "out-is-a-file",
        "run directory",
        "--out names a regular file",
        "RunDirectoryError",
        ("is a file, not a directory", "Choose another --out"),
        setup=file_at("out"),
    ),
    Case(
        "out-read-only",
        "run directory",
        "--out on a read-only file system (EROFS, emulated)",
        "RunDirectoryError",
        ("Cannot create the lock file", ".lock: Read-only file system (EROFS)"),
        setup=read_only("out"),
    ),
    Case(
        "out-disk-full",
        "run directory",
        "the disk fills up at the first checkpoint (ENOSPC, emulated; no temp file is left)",
        "RunDirectoryError",
        ("last.safetensors: No space left on device (ENOSPC)", "Free disk space", "--resume"),
        setup=disk_full,
        creates_run_dir=True,
    ),
    Case(
        "resume-is-a-file",
        "run directory",
        "--resume names a regular file",
        "RunDirectoryError",
        ("Cannot resume:", "is a file, not a run directory"),
        command="resume",
        setup=file_at("run"),
    ),
    Case(
        "out-and-resume-library",
        "run directory",
        "clue_fw.run(recipe, out=..., resume=...)",
        "RunDirectoryError",
        ("Use either --out (a new run) or --resume (an existing run), not both",),
        command="api",
        api=run_with_out_and_resume,
    ),
    Case(
        "resume-and-overwrite",
        "run directory",
        "--resume with --overwrite",
        "RunDirectoryError",
        ("--overwrite replaces the contents of a new run's --out", "cannot be combined"),
        command="resume",
        cli_args=("--overwrite",),
        cli_only=True,
    ),
    Case(
        "name-absolute",
        "run directory",
        "name: /abs/dir (the run would be written there)",
        "RecipeError",
        ("name: Value error, '/abs/dir' is not a single folder name", NAME_RULE),
        edit=put("name", "/abs/dir"),
    ),
    Case(
        "name-parent",
        "run directory",
        "name: ../../x",
        "RecipeError",
        ("'../../x' is not a single folder name (it contains '/')", NAME_RULE),
        edit=put("name", "../../x"),
    ),
    Case(
        "name-nested",
        "run directory",
        "name: a/b",
        "RecipeError",
        ("'a/b' is not a single folder name", NAME_RULE),
        edit=put("name", "a/b"),
    ),
    Case(
        "name-dot-dot",
        "run directory",
        "name: ..",
        "RecipeError",
        ("'..' is not a safe folder name", NAME_RULE),
        edit=put("name", ".."),
    ),
    Case(
        "name-empty",
        "run directory",
        "name: ''",
        "RecipeError",
        ("name: Value error, the name is empty", NAME_RULE),
        edit=put("name", ""),
    ),
    Case(
        "name-nul",
        "run directory",
        "a name with a NUL character",
        "RecipeError",
        ("(it contains '\\x00')", NAME_RULE),
        edit=put("name", "run\x00x"),
    ),
    Case(
        "name-control",
        "run directory",
        "a name with a newline",
        "RecipeError",
        ("(it contains '\\n')", NAME_RULE),
        sets=('name="a\\nb"',),
    ),
    Case(
        "resume-recipe-truncated",
        "run directory",
        "--resume: recipe.yaml cut in half (unreadable, or no longer the run's recipe)",
        "RunDirectoryError",
        # where the cut lands decides which of the two refusals (each ends "... a new run")
        ("Cannot resume", "a new run"),
        command="resume",
        damage=truncate("recipe.yaml"),
    ),
    Case(
        "resume-recipe-no-identity",
        "run directory",
        "--resume: recipe.yaml without its run identity line",
        "RunDirectoryError",
        ("recipe.yaml does not start with the run identity line", "Start a new run"),
        command="resume",
        damage=edit_text("recipe.yaml", lambda text: text.split("\n", 1)[1]),
    ),
    Case(
        "resume-recipe-edited",
        "run directory",
        "--resume: recipe.yaml edited by hand (seed 0 -> 1) and resumed with seed=1",
        "RunDirectoryError",
        ("recipe.yaml was edited after the run started",),
        command="resume",
        sets=("seed=1",),
        damage=edit_text("recipe.yaml", lambda text: text.replace("\nseed: 0\n", "\nseed: 1\n")),
    ),
    Case(
        "resume-recipe-directory",
        "run directory",
        "--resume: recipe.yaml is a directory",
        "RunDirectoryError",
        ("recipe.yaml is not a regular file (it is a directory",),
        command="resume",
        damage=directory_at("recipe.yaml"),
    ),
    Case(
        "resume-recipe-yaml-bomb",
        "run directory",
        "--resume: recipe.yaml replaced by a billion-laughs document",
        "RunDirectoryError",
        ("recipe.yaml is unreadable", "YAML bombs"),
        command="resume",
        damage=edit_text("recipe.yaml", lambda text: laughs(10, 9)),
    ),
    Case(
        "resume-metrics-truncated",
        "run directory",
        "--resume of a finished run whose metrics.json is cut short",
        "RunDirectoryError",
        ("metrics.json is unreadable (JSONDecodeError", "Delete it and --resume"),
        command="resume",
        damage=write_metrics(b'{"valid": {"mrr@10": 0.1'),
    ),
    Case(
        "resume-metrics-directory",
        "run directory",
        "--resume: metrics.json is a directory",
        "RunDirectoryError",
        ("metrics.json is not a regular file (it is a directory",),
        command="resume",
        damage=directory_at("metrics.json"),
    ),
    Case(
        "resume-metrics-deep",
        "run directory",
        "--resume: metrics.json nests 100,000 levels deep",
        "RunDirectoryError",
        ("metrics.json is unreadable (RecursionError",),
        command="resume",
        damage=write_metrics(DEEP_JSON.encode()),
    ),
    Case(
        "resume-metrics-foreign",
        "run directory",
        "--resume: metrics.json of another run",
        "RunDirectoryError",
        ("metrics.json and", "name different runs", "delete it and --resume"),
        command="resume",
        damage=write_metrics(foreign_metrics),
    ),
    Case(
        "resume-metrics-no-identity",
        "run directory",
        "--resume: metrics.json without a run identity",
        "RunDirectoryError",
        ("metrics.json carries no run identity", "Delete it and --resume"),
        command="resume",
        damage=write_metrics(b'{"valid": {}, "test": {}}'),
    ),
    Case(
        "resume-run-log-unwritable",
        "run directory",
        "--resume: run.log is a directory (appending fails)",
        "RunDirectoryError",
        ("Cannot write", "run.log: Is a directory", "--resume"),
        command="resume",
        damage=directory_at("run.log"),
    ),
    Case(
        "ckpt-foreign-run",
        "checkpoint",
        "finetune/best.safetensors written by another run (another run id)",
        "CheckpointError",
        ("best.safetensors was written by another run", "put this run's own file back"),
        command="resume",
        damage=edit_metadata("finetune/best.safetensors", another_run_id),
    ),
    Case(
        "ckpt-foreign-encoder",
        "checkpoint",
        "pretrain/encoder.safetensors of another run, read before fine-tuning starts",
        "CheckpointError",
        ("encoder.safetensors was written by another run",),
        command="resume",
        damage=without_finetune(edit_metadata("pretrain/encoder.safetensors", another_run_id)),
    ),
    Case(
        "ckpt-no-identity",
        "checkpoint",
        "finetune/last.safetensors without a run identity",
        "CheckpointError",
        ("last.safetensors carries no clue_fw run identity",),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", drop_key("run")),
    ),
    Case(
        "ckpt-identity-inconsistent",
        "checkpoint",
        "the recipe in the metadata no longer matches its recipe sha256",
        "CheckpointError",
        ("last.safetensors is inconsistent", "changed after it was written"),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", set_key(9, "recipe", "seed")),
    ),
    Case(
        "ckpt-meta-deep",
        "checkpoint",
        "checkpoint metadata JSON nested 100,000 levels deep",
        "CheckpointError",
        ("is a safetensors file but not a clue_fw checkpoint", "nests too deeply"),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", drop_key("run"), raw=DEEP_JSON),
    ),
    Case(
        "ckpt-meta-not-object",
        "checkpoint",
        "checkpoint metadata is a JSON list",
        "CheckpointError",
        ("not a clue_fw checkpoint (metadata: a JSON list, not an object)",),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", drop_key("run"), raw="[1, 2]"),
    ),
    Case(
        "ckpt-meta-missing-epoch",
        "checkpoint",
        "training metadata without 'epoch'",
        "CheckpointError",
        ("has malformed training metadata: 'epoch' must be a whole number in [0, 2]", "not None"),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", drop_key("epoch")),
    ),
    Case(
        "ckpt-meta-epoch-string",
        "checkpoint",
        "training metadata with epoch '1' (a string)",
        "CheckpointError",
        ("'epoch' must be a whole number in [0, 1] (the recipe's epochs), not '1'",),
        command="resume",
        damage=edit_metadata("pretrain/last.safetensors", set_key("1", "epoch")),
    ),
    Case(
        "ckpt-meta-finished-string",
        "checkpoint",
        "training metadata with finished 'yes'",
        "CheckpointError",
        ("'finished' must be true or false, not 'yes'",),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", set_key("yes", "finished")),
    ),
    Case(
        "ckpt-meta-history-mapping",
        "checkpoint",
        "training metadata whose history is a mapping",
        "CheckpointError",
        ("'history' must be a list of mappings",),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", set_key({"epoch": 1}, "history")),
    ),
    Case(
        "ckpt-meta-missing-best",
        "checkpoint",
        "fine-tuning metadata without extra.best",
        "CheckpointError",
        ("'extra.best' must be float, not None",),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", drop_key("extra", "best")),
    ),
    Case(
        "ckpt-meta-wrong-stage",
        "checkpoint",
        "pretrain/last.safetensors that says it holds finetune state",
        "CheckpointError",
        ("it holds 'finetune' state, not 'pretrain' state",),
        command="resume",
        damage=edit_metadata("pretrain/last.safetensors", set_key("finetune", "stage")),
    ),
    Case(
        "ckpt-meta-no-optimizer",
        "checkpoint",
        "training metadata without the optimiser structure",
        "CheckpointError",
        ("Optimiser state in", "does not fit", "no list of parameter groups"),
        command="resume",
        damage=edit_metadata("finetune/last.safetensors", drop_key("optimizer")),
    ),
    # --------------------------------------------------- input paths (issue 9, part 3)
    Case(
        "yaml-sexagesimal-seed",
        "override",
        "--set seed=1:30 (YAML 1.1 reads it as 90; YAML 1.2 as a string)",
        "RecipeError",
        ("seed: Input should be a valid integer, not the string '1:30'", "YAML 1.2"),
        sets=("seed=1:30",),
    ),
    Case(
        "yaml-underscore-epochs",
        "recipe",
        "finetune.train.epochs: 1_0 (YAML 1.1 reads it as 10)",
        "RecipeError",
        ("finetune.train.epochs: Input should be a valid integer, not the string '1_0'",),
        recipe=TINY_YAML.replace("  epochs: 2\n", "  epochs: 1_0\n", 1),
    ),
    Case(
        "yaml-leading-zero-seed",
        "recipe",
        "seed: 010 (octal 8 in YAML 1.1, 10 in YAML 1.2: refused, not guessed)",
        "RecipeError",
        ("line 1, column 7: the integer 010 has a leading zero",),
        recipe=TINY_YAML.replace("seed: 0\n", "seed: 010\n", 1),
    ),
    Case(
        "profile-superscript-label",
        "labels",
        "a profile label '\u00b2' (isdigit() but not int()): sorted as text, not a crash",
        None,
        edit=head(PROFILE),
        files={"gender.csv": label_csv(lambda u: ("1", "\u00b2", "--5")[u % 3])},
    ),
    Case(
        "transformer-blocks-huge",
        "override",
        "--set backbone.blocks=100000000 (the memory check would build them one by one)",
        "RecipeError",
        ("backbone.blocks: Input should be less than or equal to 256",),
        sets=("backbone.blocks=100000000",),
    ),
    Case(
        "clue-projector-dim-huge",
        "override",
        "--set pretrain.objective.projector_dim=1099511627776",
        "RecipeError",
        ("pretrain.objective.projector_dim must be at most 65536",),
        sets=("pretrain.objective.projector_dim=1099511627776",),
    ),
    Case(
        "data-seed-beyond-32-bits",
        "override",
        "--set data.seed=4294967296 (the generator would use its low 32 bits: seed 0)",
        "RecipeError",
        ("data.seed", "seeds for data generation and splits must lie in 0 .. 4294967295"),
        sets=("data.seed=4294967296",),
    ),
    Case(
        "table-duplicate-columns",
        "recipe",
        "data.columns names the user column twice (it would read the wrong columns)",
        "RecipeError",
        ("data.columns", "column 'user' is named more than once"),
        edit=put("data", {**TABLE, "columns": ["user", "user", "item", "timestamp"]}),
        files={"ratings.dat": b"1::10::5::100\n"},
    ),
    Case(
        "data-form-feed-inside-a-line",
        "data",
        "a form feed inside a line of a sequence file (str.splitlines would invent a user)",
        "DataError",
        ("seq.txt, line 2: item id", "is not an integer id"),
        edit=put("data", SEQUENCES),
        files={"seq.txt": sequence_file().replace(b"\n2 ", b"\n2 7\x0c", 1)},
    ),
    Case(
        "device-index-overflow",
        "override",
        "--set device=cuda:2147483648 (torch.device would raise)",
        "RecipeError",
        ("device must be auto, cpu, mps, cuda or cuda:N, got 'cuda:2147483648'",),
        sets=("device=cuda:2147483648",),
    ),
    Case(
        "device-index-leading-zero",
        "override",
        "--set device=cuda:01",
        "RecipeError",
        ("got 'cuda:01'", "without leading zeros"),
        sets=("device=cuda:01",),
    ),
    Case(
        "clue-batch-size-one",
        "override",
        "pretrain.train.batch_size: 1 with the clue objective (its BatchNorm needs 2 rows)",
        "RecipeError",
        ("objective 'clue' needs batches of at least 2 sequences", "got 1"),
        sets=("pretrain.train.batch_size=1",),
    ),
    Case(
        "lone-surrogate-string",
        "override",
        "--set 'name=\"\\udc80\"' (a string UTF-8 cannot encode)",
        "RecipeError",
        ("name: the value is not valid text", "lone surrogate"),
        sets=('name="\\udc80"',),
    ),
    Case(
        "data-path-unknown-home",
        "data",
        "data.path: ~nosuchuser/x (expanduser raises RuntimeError)",
        "DataError",
        ("data.path: cannot expand '~clue-no-such-user'", "write the path out in full"),
        edit=put("data", {**SEQUENCES, "path": "~clue-no-such-user/seq.txt"}),
    ),
    Case(
        "data-dir-unknown-home",
        "data",
        "CLUE_DATA_DIR=~nosuchuser/data",
        "DataError",
        ("CLUE_DATA_DIR: cannot expand '~clue-no-such-user'",),
        edit=put("data", SEQUENCES),
        env={"CLUE_DATA_DIR": "~clue-no-such-user/data"},
    ),
    Case(
        "max-file-bytes-5000-digits",
        "data",
        "CLUE_MAX_FILE_BYTES with 5000 digits (int() refuses it)",
        "DataError",
        ("CLUE_MAX_FILE_BYTES has 5,000 digits",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": sequence_file()},
        env={"CLUE_MAX_FILE_BYTES": "9" * 5000},
    ),
    Case(
        "cold-start-max-per-user-huge",
        "recipe",
        "finetune.head.max_per_user: 2**63 - 1 (torch.randint would overflow)",
        "RecipeError",
        ("finetune.head.max_per_user", "less than or equal to 1000000"),
        edit=put("finetune.head", {"kind": "cold_start", "max_per_user": 2**63 - 1}),
    ),
    Case(
        "max-len-huge",
        "recipe",
        "data.max_len: 2**62 (a tensor's byte size would overflow)",
        "RecipeError",
        ("data.max_len", "less than or equal to 1000000"),
        edit=put("data.max_len", 2**62),
    ),
    Case(
        "pretrain-without-a-batch",
        "override",
        "--set data.num_users=1: pre-training would run no optimiser step and claim success",
        "TrainingError",
        ("pretrain epoch 1/1 has no batch to train on", "1 training example and batch_size 64"),
        sets=("data.num_users=1",),
        creates_run_dir=True,
    ),
    Case(
        "init-from-empty-string",
        "recipe",
        "finetune.init_from: '' (was taken as unset)",
        "RecipeError",
        ("finetune.init_from", "an empty string is not a value"),
        edit=put("finetune.init_from", ""),
    ),
    Case(
        "monitor-empty-string",
        "recipe",
        "finetune.monitor: '' (was taken as unset)",
        "RecipeError",
        ("finetune.monitor", "an empty string is not a value"),
        edit=put("finetune.monitor", ""),
    ),
    Case(
        "dropout-view-probability",
        "recipe",
        "views: [{kind: dropout, probability: 0.0}] (the dropout view never changes items)",
        "RecipeError",
        ("pretrain.views.0.probability", "a probability other than 1 has no effect"),
        edit=put("pretrain.views", [{"kind": "dropout", "probability": 0.0}]),
    ),
    Case(
        "set-value-5000-characters",
        "override",
        "--set seed=xxx... (5000 characters): the error quotes 40 of them",
        "RecipeError",
        ("--set 'seed=" + "x" * 40 + "...' (5,005 characters)",),
        sets=("seed=" + "x" * 5000,),
    ),
    Case(
        "recipe-fifo",
        "recipe",
        "the recipe path is a named pipe (reading it would wait for a writer for ever)",
        "RecipeError",
        ("Cannot read recipe file", "it is a named pipe (FIFO), not a regular file"),
        setup=fifo("recipe.yaml"),
    ),
    Case(
        "recipe-dev-zero",
        "recipe",
        "the recipe path is a link to /dev/zero (endless, reports size 0)",
        "RecipeError",
        ("Cannot read recipe file", "it is a character device, not a regular file"),
        setup=link("recipe.yaml", "/dev/zero"),
    ),
    *(
        Case(
            f"out-{writer}-fifo",
            "run directory",
            f"{what} given a named pipe as its output file (a rename would replace it)",
            error,
            ("out.fifo", "it is a named pipe (FIFO), not a regular file"),
            command="api",
            api=write_output_to_fifo(writer),
        )
        for writer, what, error in (
            ("evaluate", "clue evaluate --out", "ClueError"),
            ("schema", "clue schema --out", "ClueError"),
            ("export", "clue embed / recommend --out", "ClueError"),
            ("synth", "clue data synth --out --overwrite", "DataError"),
        )
    ),
    Case(
        "data-fifo",
        "data",
        "the sequence file is a named pipe",
        "DataError",
        ("seq.txt is not a file: it is a named pipe (FIFO)", "only from regular files"),
        edit=put("data", SEQUENCES),
        setup=fifo("data/seq.txt"),
    ),
    Case(
        "data-dev-zero",
        "data",
        "data.path: /dev/zero",
        "DataError",
        ("Data path /dev/zero is not a file: it is a character device",),
        edit=put("data", {**SEQUENCES, "path": "/dev/zero"}),
    ),
    Case(
        "reader-fifo",
        "data",
        "read_sequence_file on a named pipe returns at once",
        "DataError",
        ("Cannot read data file", "it is a named pipe (FIFO), not a regular file"),
        setup=fifo("data/seq.txt"),
        command="api",
        api=read_sequences_from("data/seq.txt"),
    ),
    Case(
        "reader-dev-zero",
        "data",
        "read_sequence_file on a link to /dev/zero",
        "DataError",
        ("Cannot read data file", "it is a character device, not a regular file"),
        setup=link("data/zero.txt", "/dev/zero"),
        command="api",
        api=read_sequences_from("data/zero.txt"),
    ),
    Case(
        "data-over-size-cap",
        "data",
        "a sequence file larger than CLUE_MAX_FILE_BYTES (set to 100)",
        "DataError",
        ("seq.txt is refused: it is larger than 100 bytes; set CLUE_MAX_FILE_BYTES",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": sequence_file()},
        env={"CLUE_MAX_FILE_BYTES": "100"},
    ),
    Case(
        "data-size-cap-not-a-number",
        "data",
        "CLUE_MAX_FILE_BYTES=lots",
        "DataError",
        ("CLUE_MAX_FILE_BYTES must be a positive number of bytes, got 'lots'",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": sequence_file()},
        env={"CLUE_MAX_FILE_BYTES": "lots"},
    ),
    Case(
        "labels-fifo",
        "labels",
        "read_label_file on a named pipe returns at once",
        "DataError",
        ("it is a named pipe (FIFO), not a regular file",),
        setup=fifo("labels.csv"),
        command="api",
        api=read_labels_from("labels.csv"),
    ),
    Case(
        "profile-labels-dev-zero",
        "labels",
        "a profile head whose label file is /dev/zero",
        "DataError",
        ("Data path /dev/zero is not a file: it is a character device",),
        edit=head({**PROFILE, "labels": {"path": "/dev/zero"}}),
    ),
    Case(
        "seed-beyond-64-bits",
        "recipe",
        "seed: 2**64",
        "RecipeError",
        ("seed: the integer (20 digits) does not fit in 64 bits",),
        edit=put("seed", 2**64),
    ),
    Case(
        "synthetic-seed-beyond-64-bits",
        "recipe",
        "data.seed: -2**63 - 1",
        "RecipeError",
        ("data.seed: the integer (19 digits) does not fit in 64 bits",),
        edit=put("data.seed", -(2**63) - 1),
    ),
    Case(
        "split-seed-beyond-64-bits",
        "recipe",
        "a profile head with split_seed: 2**70",
        "RecipeError",
        ("finetune.head.split_seed: the integer (22 digits) does not fit in 64 bits",),
        edit=head({**PROFILE, "split_seed": 2**70}),
    ),
    Case(
        "list-item-beyond-64-bits",
        "recipe",
        "a cnn backbone with a dilation of 2**64",
        "RecipeError",
        ("backbone.dilations.1: the integer (20 digits) does not fit in 64 bits",),
        edit=put("backbone", {"kind": "cnn", "dim": 16, "dilations": [1, 2**64]}),
    ),
    Case(
        "seeds-at-64-bit-limits",
        "recipe",
        "seed: 2**63 - 1 and data.seed: 2**32 - 1 (the largest generator seed)",
        None,
        edit=lambda data: (put("seed", 2**63 - 1)(data), put("data.seed", 2**32 - 1)(data)),
    ),
    Case(
        "type-quoted-number-for-int",
        "recipe",
        'backbone.dim: "16" (a string is not a number)',
        "RecipeError",
        ("backbone.dim: Input should be a valid integer",),
        edit=put("backbone.dim", "16"),
    ),
    Case(
        "type-float-for-int",
        "recipe",
        "finetune.train.epochs: 2.0",
        "RecipeError",
        ("finetune.train.epochs: Input should be a valid integer",),
        edit=put("finetune.train.epochs", 2.0),
    ),
    Case(
        "type-bool-for-float",
        "recipe",
        "finetune.train.lr: true",
        "RecipeError",
        ("finetune.train.lr: Input should be a valid number",),
        edit=put("finetune.train.lr", True),
    ),
    Case(
        "type-int-for-bool",
        "recipe",
        "finetune.head.tie_weights: 1",
        "RecipeError",
        ("finetune.head.tie_weights: Input should be a valid boolean",),
        edit=put("finetune.head.tie_weights", 1),
    ),
    Case(
        "type-word-for-nested-bool",
        "recipe",
        'a cold_start target with drop_unknown_users: "yes" (nested models are strict too)',
        "RecipeError",
        ("finetune.head.target.drop_unknown_users: Input should be a valid boolean",),
        edit=head(
            {
                "kind": "cold_start",
                "target": {"format": "pairs", "path": "t.txt", "drop_unknown_users": "yes"},
            }
        ),
    ),
    Case(
        "set-seed-true",
        "override",
        "--set seed=true (a boolean is not an integer)",
        "RecipeError",
        ("--set 'seed=true': seed: Input should be a valid integer",),
        sets=("seed=true",),
    ),
    Case(
        "set-seed-beyond-64-bits",
        "override",
        "--set seed= 30 nines",
        "RecipeError",
        ("--set 'seed=" + "9" * 30 + "': seed: the integer (30 digits) does not fit in 64 bits",),
        sets=("seed=" + "9" * 30,),
    ),
    Case(
        "set-exponent-float",
        "override",
        "--set finetune.train.lr=1e-3 (YAML 1.1 would read a string; it is a number)",
        None,
        sets=("finetune.train.lr=1e-3",),
    ),
    Case(
        "data-id-underscore",
        "data",
        "a user id 1_0 (Python's int() reads 10)",
        "DataError",
        ("seq.txt, line 2: user id '1_0' is not an integer id", "ASCII digits"),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"1 2 3 4\n1_0 5 6 7\n"},
    ),
    Case(
        "data-id-plus-sign",
        "data",
        "an item id +4",
        "DataError",
        ("seq.txt, line 1: item id '+4' is not an integer id",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"1 2 3 +4\n"},
    ),
    Case(
        "data-id-non-ascii-digit",
        "data",
        "an item id written with an Arabic-Indic digit (U+0663)",
        "DataError",
        ("seq.txt, line 1: item id '\u0663' is not an integer id",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": "1 2 3 \u0663\n".encode()},
    ),
    Case(
        "data-id-huge-token",
        "data",
        "an item id of 10,000 letters: the message quotes 40 of them",
        "DataError",
        ("item id '" + "x" * 40 + "'... (10,000 characters) is not an integer id",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"1 2 3 " + b"x" * 10_000 + b"\n"},
    ),
    Case(
        "data-id-huge-number",
        "data",
        "an item id of 5,000 digits: the message quotes 40 of them",
        "DataError",
        ("item id '" + "7" * 40 + "'... (5,000 characters) is out of range",),
        edit=put("data", SEQUENCES),
        files={"seq.txt": b"1 2 3 " + b"7" * 5_000 + b"\n"},
    ),
    Case(
        "table-timestamp-underscore",
        "data",
        "a timestamp 1_0 (Python's float() reads 10.0)",
        "DataError",
        ("ratings.dat, line 1: timestamp '1_0' is not a number",),
        edit=put("data", TABLE),
        files={"ratings.dat": b"1::2::5::1_0\n"},
    ),
    Case(
        "labels-id-underscore",
        "labels",
        "a label file whose user id is 1_0",
        "DataError",
        ("labels.csv, line 2: user id '1_0' is not an integer id",),
        command="api",
        api=_labels_file("labels.csv", b"user,gender\n1_0,F\n"),
    ),
    Case(
        "emoji-code-in-path",
        "data",
        "a missing data file named ratings:x:v2.txt is printed as it is (not as an emoji)",
        "DataError",
        ("Data file not found", "ratings:x:v2.txt"),
        edit=put("data", {**SEQUENCES, "path": "ratings:x:v2.txt"}),
    ),
    Case(
        "markup-in-path",
        "data",
        "a missing data file named [bold]x[/bold].txt is printed as it is",
        "DataError",
        ("Data file not found", "[bold]x[/bold].txt"),
        edit=put("data", {**SEQUENCES, "path": "[bold]x[/bold].txt"}),
    ),
    Case(
        "emoji-code-in-kind",
        "recipe",
        "backbone.kind: ':x:' is printed as it is",
        "RecipeError",
        ("backbone: unknown kind ':x:'",),
        edit=put("backbone.kind", ":x:"),
    ),
    Case(
        "synthetic-too-large",
        "data",
        "synthetic data for 10**12 users is refused before anything is generated",
        "ResourceError",
        ("Refusing to generate synthetic data", "Lower data.num_users, data.max_length"),
        edit=put("data.num_users", 10**12),
        env={"CLUE_SKIP_MEMORY_CHECK": None},
    ),
    Case(
        "synth-larger-than-the-disk",
        "data",
        "clue data synth --users 1000000000000 --items 100 (it would stream until the disk "
        "is full)",
        "ResourceError",
        ("Refusing to write synthetic data", "file system has", "free", "--force-size"),
        command="api",
        api=_synth(10**12, 100),
    ),
    Case(
        "synth-target-items-without-cold-start",
        "data",
        "clue data synth --target-items 50 without --cold-start",
        "DataError",
        ("target_items (--target-items) sizes the cold-start target domain; add --cold-start",),
        command="api",
        api=_synth(10, 80, target_items=50),
    ),
    Case(
        "synth-target-items-below-genres",
        "data",
        "clue data synth --cold-start --target-items 3 with 9 genres (a target genre would "
        "be empty)",
        "DataError",
        ("target_items (--target-items) must be between the number of genres (9",),
        command="api",
        api=_synth(10, 80, cold_start=True, target_items=3),
    ),
    Case(
        "synth-planted-file-exists",
        "data",
        "clue data synth --attributes where OUT_hard.csv already exists",
        "DataError",
        ("s_hard.csv already exists; pass --overwrite",),
        command="api",
        api=_synth(10, 80, existing="s_hard.csv", attributes=True),
    ),
    Case(
        "cnn-huge-dilation",
        "recipe",
        "a cnn backbone with a dilation of 2**40 (its left padding would not fit)",
        "ResourceError",
        ("Refusing to start", "padded convolution inputs", "Lower backbone.dilations"),
        edit=put(
            "backbone",
            {"kind": "cnn", "dim": 16, "dilations": [1, 2**40], "repeats": 1, "kernel_size": 2},
        ),
        env={"CLUE_SKIP_MEMORY_CHECK": None},
    ),
    Case(
        "plugin-hook-raises",
        "plugins",
        "an installed plugin whose hook raises ValueError",
        "RegistryError",
        (
            "Plugin clue-bad-plugin 0.1: its hook clue_register_backbones raised ValueError: "
            "the backbone table is corrupt",
            "CLUE_DISABLE_PLUGINS=1",
        ),
        entry_points=(entry_point("raising", RaisingPlugin()),),
    ),
    Case(
        "plugin-hookimpl-wrong-arguments",
        "plugins",
        "a hook implementation with an argument its hook does not have",
        "RegistryError",
        ("Plugin clue-bad-plugin 0.1 has a hook implementation that pluggy refuses", "registry"),
        entry_points=(entry_point("arguments", ArgumentPlugin()),),
    ),
    Case(
        "plugin-hookimpl-misspelt",
        "plugins",
        "a @hookimpl named clue_register_backbone (no such hook)",
        "RegistryError",
        (
            "Plugin clue-bad-plugin 0.1 has a hook implementation that pluggy refuses",
            "clue_register_backbone",
        ),
        entry_points=(entry_point("misspelt", MisspeltHookPlugin()),),
    ),
    Case(
        "plugin-same-entry-point-name",
        "plugins",
        "two distributions that both install the entry point 'twin'",
        "RegistryError",
        (
            "Two installed distributions use the clue_fw entry-point name 'twin': clue-twin-a 0.1",
            "clue-twin-b 0.1",
        ),
        entry_points=(
            entry_point("twin", EmptyPlugin(), "clue-twin-a"),
            entry_point("twin", EmptyPlugin(), "clue-twin-b"),
        ),
    ),
    Case(
        "plugin-loss-returns-tensor",
        "plugins",
        "a plugin objective that returns a bare tensor instead of a LossOutput",
        "PluginError",
        (
            f"The tensor_loss objective (plugin {BROKEN_PROVIDER}) broke the loss contract: "
            "it returned Tensor, not LossOutput",
        ),
        edit=put("pretrain.objective", {"kind": "tensor_loss", "projector_dim": 16}),
        entry_points=BROKEN,
        creates_run_dir=True,
    ),
    Case(
        "plugin-backbone-wrong-width",
        "plugins",
        "a plugin backbone whose states are narrower than its dim",
        "PluginError",
        (
            f"Backbone NarrowEncoder (module input_paths, plugin {BROKEN_PROVIDER}) broke the "
            "backbone contract",
            "its states have shape [128, 8, 8], not [128, 8, 16]",
        ),
        edit=put("backbone", {"kind": "narrow", "dim": 16}),
        entry_points=BROKEN,
        creates_run_dir=True,
    ),
    Case(
        "plugin-view-changes-shape",
        "plugins",
        "a plugin view that drops a column",
        "PluginError",
        (
            f"View 'shrink' (ShrinkView (module input_paths, plugin {BROKEN_PROVIDER})) broke "
            "the view contract: for items of shape [64, 8] (torch.int64) it returned shape "
            "[64, 7]",
        ),
        edit=put("pretrain.views", [{"kind": "shrink"}]),
        entry_points=BROKEN,
        creates_run_dir=True,
    ),
    Case(
        "plugin-view-fills-padding",
        "plugins",
        "a plugin view that writes items into padding positions",
        "PluginError",
        ("View 'fill_padding'", "it wrote an item into a padding position"),
        edit=put("pretrain.views", [{"kind": "fill_padding"}]),
        entry_points=BROKEN,
        creates_run_dir=True,
    ),
    # ------------------------------------------------------------------ clue probe
    Case(
        "probe-labels-missing",
        "labels",
        "clue probe --labels names a file that does not exist",
        "DataError",
        ("not found", "absent.csv"),
        command="probe",
        cli_args=(RUN, "--labels", "{case}/data/absent.csv"),
    ),
    Case(
        "probe-labels-directory",
        "labels",
        "clue probe --labels names a directory",
        "DataError",
        ("it is a directory, not a regular file",),
        command="probe",
        cli_args=(RUN, "--labels", "{case}/data"),
    ),
    Case(
        "probe-labels-fifo",
        "labels",
        "clue probe --labels names a named pipe",
        "DataError",
        ("it is a named pipe (FIFO), not a regular file",),
        command="probe",
        setup=fifo("data/labels.fifo"),
        cli_args=(RUN, "--labels", "{case}/data/labels.fifo"),
    ),
    Case(
        "probe-unknown-column",
        "labels",
        "clue probe --column zip",
        "ClueError",
        ("Unknown label column 'zip'", "use gender, age or occupation"),
        files=GENDER_FILE,
        command="probe",
        cli_args=(RUN, *GENDER, "--column", "zip"),
    ),
    Case(
        "probe-users-without-labels",
        "labels",
        "clue probe with labels for only half of the run's users",
        "DataError",
        ("60 of 120 users have no label", "pass --missing skip"),
        files={"gender.csv": label_csv(lambda u: "MF"[u % 2] if u <= 60 else None)},
        command="probe",
        cli_args=(RUN, *GENDER),
    ),
    Case(
        "probe-labels-of-other-users",
        "labels",
        "clue probe --missing skip with a label file of other users only",
        "DataError",
        ("None of the run's 120 users has a label in", "same user ids"),
        files={"gender.csv": label_csv(lambda u: "MF"[u % 2], range(5000, 5100))},
        command="probe",
        cli_args=(RUN, *GENDER, "--missing", "skip"),
    ),
    Case(
        "probe-single-class",
        "labels",
        "clue probe with a label file that gives every user the same class",
        "DataError",
        ("gives the run's users a single class ('F')", "at least two"),
        files={"gender.csv": label_csv(lambda u: "F")},
        command="probe",
        cli_args=(RUN, *GENDER),
    ),
    Case(
        "probe-missing-flag",
        "labels",
        "clue probe --missing ignore",
        "ClueError",
        ("must be error (every user of the run needs a label) or skip", "'ignore'"),
        files=GENDER_FILE,
        command="probe",
        cli_args=(RUN, *GENDER, "--missing", "ignore"),
    ),
    Case(
        "probe-missing-skip",
        "labels",
        "clue probe --missing skip with labels for half of the users probes those users",
        None,
        files={"gender.csv": label_csv(lambda u: "MF"[u % 2] if u <= 60 else None)},
        command="probe",
        cli_args=(RUN, *GENDER, "--missing", "skip", *QUICK),
    ),
    Case(
        "probe-stage-the-run-lacks",
        "run directory",
        "clue probe --stage pretrain of a run that never pre-trained",
        "RunDirectoryError",
        ("did not pre-train", "has no pre-trained encoder", "--stage finetune"),
        files=GENDER_FILE,
        setup=write_zero_run,
        command="probe",
        cli_args=("{case}/zero", *GENDER, "--stage", "pretrain"),
    ),
    Case(
        "probe-unknown-stage",
        "run directory",
        "clue probe --stage best",
        "ClueError",
        ("stage must be 'finetune' or 'pretrain', not 'best'",),
        files=GENDER_FILE,
        command="probe",
        cli_args=(RUN, *GENDER, "--stage", "best"),
    ),
    Case(
        "probe-not-a-run",
        "run directory",
        "clue probe of a directory that is not a run (no recipe.yaml)",
        "RunDirectoryError",
        ("holds no recipe.yaml, so it is not a clue_fw run directory",),
        files=GENDER_FILE,
        command="probe",
        cli_args=("{case}/data", *GENDER),
    ),
    Case(
        "probe-run-missing",
        "run directory",
        "clue probe of a run directory that does not exist",
        "RunDirectoryError",
        ("Run directory not found", "Give the directory that `clue run` printed"),
        files=GENDER_FILE,
        command="probe",
        cli_args=("{case}/nowhere", *GENDER),
    ),
    Case(
        "probe-out-is-a-run-file",
        "run directory",
        "clue probe --out RUN/metrics.json (would replace the run's metrics)",
        "ClueError",
        ("is the run's own metrics.json", "never replaces a run's files"),
        files=GENDER_FILE,
        command="probe",
        cli_args=(RUN, *GENDER, "--out", "{case}/run/metrics.json"),
        cli_only=True,
    ),
    Case(
        "probe-out-fifo",
        "run directory",
        "clue probe --markdown names a named pipe",
        "ClueError",
        ("out.fifo", "it is a named pipe (FIFO), not a regular file"),
        files=GENDER_FILE,
        setup=fifo("out.fifo"),
        command="probe",
        cli_args=(RUN, *GENDER, "--markdown", "{case}/out.fifo"),
        cli_only=True,
    ),
    Case(
        "probe-bad-grid",
        "override",
        "clue probe --l2-grid 0,1 (an L2 strength must be positive)",
        "ClueError",
        ("--l2-grid takes positive numbers separated by commas", "not '0'"),
        files=GENDER_FILE,
        command="probe",
        cli_args=(RUN, *GENDER, "--l2-grid", "0,1"),
        cli_only=True,
    ),
)


# ------------------------------------------------- other commands on a finished run (issue 20)

RUN_FILE = ("Refusing to write", "inside the run directory", "only that run may replace its files")
FIFO_OUT = ("it is a named pipe (FIFO), not a regular file",)


def fifo_in(folder: str, name: str) -> Callable[[Path], None]:
    """A setup that makes ``folder/name`` (in the case directory) a named pipe."""

    def setup(case_dir: Path) -> None:
        (case_dir / folder).mkdir(parents=True, exist_ok=True)
        os.mkfifo(case_dir / folder / name)

    return setup


COMMAND_CASES: tuple[Case, ...] = (
    *(
        Case(
            f"{name}-replaces-run-file",
            "commands",
            f"clue {' '.join(argv[:1])} writing {target} of a finished run (it would replace the "
            "run's own file)",
            "ClueError",
            (*RUN_FILE, f"R0/{target}"),
            command="cli",
            argv=(*argv, f"{{case}}/R0/{target}"),
            files={"seq.txt": sequence_file()},
        )
        for name, argv, target in (
            ("evaluate-out", ("evaluate", "{case}/R0", "--out"), "metrics.json"),
            ("embed-out", ("embed", "{case}/R0", "--out"), "finetune/best.safetensors"),
            (
                "recommend-out",
                ("recommend", "{case}/R0", "--data", "{case}/data/seq.txt", "--out"),
                "finetune/history.csv",
            ),
            ("baseline-out", ("baseline", "{case}/recipe.yaml", "--out"), "metrics.json"),
            ("compare-markdown", ("compare", "{case}/R0", "--markdown"), "recipe.yaml"),
            ("schema-out", ("schema", "--out"), "pretrain/schema.json"),
            ("plot-out", ("plot", "{case}/R0", "--out"), "finetune/curves.png"),
            ("analyze-out", ("analyze", "{case}/R0", "--out"), "finetune"),
        )
    ),
    Case(
        "compare-markdown-fifo",
        "commands",
        "clue compare --markdown names a named pipe (a plain write would wait for a reader)",
        "ClueError",
        ("Cannot write --markdown", *FIFO_OUT),
        command="cli",
        argv=("compare", "{case}/R0", "--markdown", "{case}/x.md"),
        setup=fifo("x.md"),
    ),
    Case(
        "sweep-markdown-fifo",
        "commands",
        "clue sweep --markdown names a named pipe (refused before any run starts)",
        "ClueError",
        ("Cannot write --markdown", *FIFO_OUT),
        command="cli",
        argv=("sweep", "{case}/recipe.yaml", "--out", "{case}/sweep", "--markdown", "{case}/x.md"),
        setup=fifo("x.md"),
    ),
    Case(
        "analyze-json-fifo",
        "commands",
        "clue analyze --out a folder whose analysis.json is a named pipe",
        "ClueError",
        ("Cannot write --out", "analysis.json", *FIFO_OUT),
        command="cli",
        argv=("analyze", "{case}/R0", "--out", "{case}/an"),
        setup=fifo_in("an", "analysis.json"),
    ),
    Case(
        "plot-out-fifo",
        "commands",
        "clue plot --out names a named pipe",
        "ClueError",
        ("Cannot write --out", *FIFO_OUT),
        command="cli",
        argv=("plot", "{case}/R0", "--out", "{case}/c.png"),
        setup=fifo("c.png"),
    ),
)


def copy_run(name: str) -> Callable[[Path], None]:
    """A setup that copies the finished run R0 to ``name`` (same run id)."""

    def setup(case_dir: Path) -> None:
        import shutil

        shutil.copytree(case_dir / "R0", case_dir / name)

    return setup


def edit_run_recipe(old: str, new: str) -> Callable[[Path], None]:
    """A setup that edits the recipe in R0/recipe.yaml by hand (below its identity line)."""

    def setup(case_dir: Path) -> None:
        path = case_dir / "R0" / "recipe.yaml"
        head, _, body = path.read_text(encoding="utf-8").partition("\n")
        assert old in body
        path.write_text(f"{head}\n{body.replace(old, new, 1)}", encoding="utf-8")

    return setup


def edit_run_id(case_dir: Path) -> None:
    """A setup that changes the first digit of the run id on R0/recipe.yaml's first line."""
    path = case_dir / "R0" / "recipe.yaml"
    text = path.read_text(encoding="utf-8")
    prefix = "# clue_fw run "
    digit = text[len(prefix)]
    path.write_text(f"{prefix}{'1' if digit == '0' else '0'}{text[len(prefix) + 1 :]}", "utf-8")


COMMAND_CASES += (
    Case(
        "compare-same-run-twice",
        "commands",
        "clue compare R0 R0 (one run would be reported as two seeds)",
        "ClueError",
        ("R0 is the same directory as", "would count as two seeds", "Give each run once"),
        command="cli",
        argv=("compare", "{case}/R0", "{case}/R0"),
    ),
    Case(
        "compare-copied-run",
        "commands",
        "clue compare R0 and a copy of its directory (the same run id)",
        "ClueError",
        ("R0copy is a copy of", "would count as two seeds"),
        command="cli",
        argv=("compare", "{case}/R0", "{case}/R0copy"),
        setup=copy_run("R0copy"),
    ),
    Case(
        "compare-edited-seed",
        "commands",
        "clue compare a run whose recipe.yaml seed was edited by hand",
        "ClueError",
        ("recipe.yaml was edited after the run started", "Restore the run's own recipe.yaml"),
        command="cli",
        argv=("compare", "{case}/R0"),
        setup=edit_run_recipe("seed: 0", "seed: 7"),
    ),
    Case(
        "compare-edited-identity-line",
        "commands",
        "clue compare a run whose recipe.yaml identity line was edited (not metrics.json's fault)",
        "ClueError",
        ("metrics.json and", "name different runs", "copied in from another run or edited"),
        command="cli",
        argv=("compare", "{case}/R0"),
        setup=edit_run_id,
    ),
)


def run_in_sweep_folder(folder: str) -> Callable[[Path], None]:
    """A setup that puts a copy of R0 (a finished run of the tiny recipe, 2 fine-tuning
    epochs) where a sweep would put one of its runs."""

    def setup(case_dir: Path) -> None:
        import shutil

        shutil.copytree(case_dir / "R0", case_dir / "sweep" / folder)

    return setup


SWEEP = ("sweep", "{case}/recipe.yaml", "--out", "{case}/sweep")

COMMAND_CASES += (
    Case(
        "sweep-second-seed-too-large",
        "commands",
        "clue sweep --seeds 0 10**23: every seed is checked before seed 0 trains",
        "RecipeError",
        ("grid point recipe, seed 100000000000000000000000", "does not fit in 64 bits"),
        command="cli",
        argv=(*SWEEP, "--seeds", "0", str(10**23)),
    ),
    Case(
        "sweep-second-grid-value-invalid",
        "commands",
        "clue sweep --grid backbone.dropout=0.1,2.0: the second grid point is checked first",
        "RecipeError",
        ("grid point backbone.dropout=2.0, seed 0", "backbone.dropout"),
        command="cli",
        argv=(*SWEEP, "--grid", "backbone.dropout=0.1,2.0"),
    ),
    Case(
        "sweep-seed-underscore",
        "commands",
        "clue sweep --seeds 1_0 (int() would read seed 10)",
        "ClueError",
        ("--seeds takes whole numbers", "not '1_0'"),
        command="cli",
        argv=(*SWEEP, "--seeds", "1_0"),
    ),
    Case(
        "sweep-too-many-runs",
        "commands",
        "a 6,561-point grid (8 keys of 3 values each) is refused before it starts",
        "ClueError",
        ("The sweep has 6,561 runs, more than --max-runs 200", "--max-runs 6561"),
        command="cli",
        argv=(
            *SWEEP,
            *(
                arg
                for key in ("a", "b", "c", "d", "e", "f", "g", "h")
                for arg in ("--grid", f"name_{key}=1,2,3")
            ),
        ),
    ),
    Case(
        "sweep-finished-run-of-another-recipe",
        "commands",
        "a second sweep into the same --out with another recipe (its finished run is not ours)",
        "ClueError",
        ("holds a run of another recipe", "Give this sweep another --out"),
        command="cli",
        argv=(*SWEEP, "--grid", "finetune.train.epochs=1"),
        setup=run_in_sweep_folder("finetune.train.epochs=1/seed0"),
    ),
)

COMMAND_CASES += (
    Case(
        "lr-overflows-float32",
        "override",
        "--set finetune.train.lr=1e39 (more than the largest float32: Adam's step overflowed)",
        "RecipeError",
        ("finetune.train.lr: Value error, 1e+39 is more than the largest float32",),
        sets=("finetune.train.lr=1e39",),
    ),
    Case(
        "lr-adam-step-overflows-float32",
        "override",
        "--set finetune.train.lr=1e38: below the float32 limit, but Adam divides it by 1 - beta1",
        "RecipeError",
        ("Adam's first step, lr / (1 - beta1), is 1e+39", "lower lr"),
        sets=("finetune.train.lr=1e38",),
    ),
    Case(
        "lr-scaled-overflows-float32",
        "recipe",
        "a valid lr that lr_scale: linear multiplies past the largest float32",
        "RecipeError",
        ("lr x batch_size / 256 (lr_scale linear) / (1 - beta1), is", "set lr_scale: none"),
        edit=put_all(
            {
                "pretrain.train.lr": 1e36,
                "pretrain.train.lr_scale": "linear",
                "pretrain.train.batch_size": 100_000,
            }
        ),
    ),
)


def refuse_data_parallel(case_dir: Path) -> object:
    from clue_fw.cli_export import one_process

    return one_process("embed")


COMMAND_CASES += (
    Case(
        "evaluate-edited-identity-line",
        "commands",
        "clue evaluate a run whose recipe.yaml identity line was edited (not metrics.json's fault)",
        "RunDirectoryError",
        ("name different runs", "edited by hand (the identity line of recipe.yaml, say)"),
        command="cli",
        argv=("evaluate", "{case}/R0"),
        setup=edit_run_id,
    ),
    Case(
        "resume-missing-directory-without-recipe",
        "commands",
        "clue run --resume of a directory that does not exist (was: 'holds no recipe.yaml')",
        "ClueError",
        ("Cannot resume", "nowhere: no such directory", "start a new run with --out"),
        command="cli",
        argv=("run", "--resume", "{case}/nowhere"),
    ),
    Case(
        "resume-fifo-without-recipe",
        "commands",
        "clue run --resume of a named pipe, without a recipe (was: 'holds no recipe.yaml')",
        "ClueError",
        ("Cannot resume", "it is a named pipe, not a run directory"),
        command="cli",
        argv=("run", "--resume", "{case}/pipe"),
        setup=fifo("pipe"),
    ),
    Case(
        "prepare-from-fifo",
        "commands",
        "clue data prepare --from a named pipe (was reported as missing)",
        "DownloadError",
        ("--from", "it is a named pipe (FIFO), not an archive file or a folder"),
        command="cli",
        argv=("data", "prepare", "ml-1m", "--from", "{case}/pipe", "--root", "{case}/data"),
        setup=fifo("pipe"),
    ),
    Case(
        "prepare-from-device",
        "commands",
        "clue data prepare --from /dev/null (was reported as missing)",
        "DownloadError",
        ("--from /dev/null: it is a character device", "ml-1m.zip, a regular file"),
        command="cli",
        argv=("data", "prepare", "ml-1m", "--from", "/dev/null", "--root", "{case}/data"),
    ),
    Case(
        "embed-empty-run",
        "commands",
        "clue embed with an empty RUN argument (was shown as '.')",
        "ClueError",
        ("The run directory is empty",),
        command="cli",
        argv=("embed", "", "--out", "{case}/users.npy"),
    ),
    Case(
        "analyze-seed-too-large",
        "commands",
        "clue analyze --seed 10**20 (was: 'Overflow when unpacking long long')",
        "ClueError",
        ("--seed must lie in 0 .. 2**63 - 1",),
        command="cli",
        argv=("analyze", "{case}/R0", "--out", "{case}/an", "--seed", str(10**20)),
    ),
    Case(
        "embed-under-torchrun",
        "commands",
        "clue embed as one of two torchrun processes (each would write the same file)",
        "ClueError",
        ("clue embed runs in one process", "Run it without torchrun"),
        command="api",
        api=refuse_data_parallel,
        env={"WORLD_SIZE": "2", "RANK": "0"},
    ),
    Case(
        "data-too-short-for-min-user",
        "data",
        "data.min_user_interactions: 5 and users of 4 items: the advice names what can be lowered",
        "DataError",
        ("users need >= 5 interactions", "Lower `data.min_user_interactions` (down to 3)"),
        edit=put("data", {**SEQUENCES, "min_user_interactions": 5}),
        files={"seq.txt": b"1 1 2 3 4\n2 3 4 5 6\n3 5 6 7 8\n"},
    ),
    Case(
        "plugin-hook-calls-exit",
        "plugins",
        "an installed plugin whose hook calls sys.exit(3) (exited 3 silently)",
        "RegistryError",
        (
            "Plugin clue-bad-plugin 0.1: its hook clue_register_backbones called sys.exit(3)",
            "a plugin must raise an exception, not exit",
        ),
        entry_points=(entry_point("exiting", ExitingPlugin()),),
    ),
)

# ------------------------------------------------------------------ the caser backbone

CASER = {"kind": "caser", "dim": 16, "n_h": 2, "n_v": 1}
NO_STATES = "backbone 'caser' has no per-position states (it encodes a sequence into one user"


def caser(**fields: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that makes the backbone caser (with ``fields``) and trains the user vector."""
    return put_all({"backbone": {**CASER, **fields}, "finetune.head.loss_positions": "ur"})


CASER_CASES: tuple[Case, ...] = (
    Case(
        "caser-accepted",
        "recipe",
        "a caser backbone trained with loss_positions: ur after CLUE pre-training",
        None,
        edit=caser(),
    ),
    Case(
        "caser-no-filters",
        "recipe",
        "caser with n_h: 0 and n_v: 0 (no convolution would read the items)",
        "RecipeError",
        ("backbone: Value error, n_h and n_v are both 0", "give at least one of them"),
        edit=caser(n_h=0, n_v=0),
    ),
    Case(
        "caser-negative-filters",
        "recipe",
        "caser with n_h: -1",
        "RecipeError",
        ("backbone.n_h: Input should be greater than or equal to 0",),
        edit=caser(n_h=-1),
    ),
    Case(
        "caser-filters-huge",
        "override",
        "--set backbone.n_v=1000000000",
        "RecipeError",
        ("backbone.n_v: Input should be less than or equal to 4096",),
        edit=caser(),
        sets=("backbone.n_v=1000000000",),
    ),
    Case(
        "caser-dim-zero",
        "recipe",
        "caser with dim: 0",
        "RecipeError",
        ("backbone.dim: Input should be greater than 0",),
        edit=caser(dim=0),
    ),
    Case(
        "caser-dropout-one",
        "recipe",
        "caser with dropout: 1.0 (every feature dropped)",
        "RecipeError",
        ("backbone.dropout: Input should be less than 1",),
        edit=caser(dropout=1.0),
    ),
    Case(
        "caser-unknown-activation",
        "recipe",
        "caser with conv_activation: gelu",
        "RecipeError",
        ("backbone.conv_activation: Input should be 'relu', 'tanh', 'sigmoid' or 'identity'",),
        edit=caser(conv_activation="gelu"),
    ),
    Case(
        "caser-activation-not-a-string",
        "recipe",
        "caser with fc_activation: 1",
        "RecipeError",
        ("backbone.fc_activation: Input should be 'relu', 'tanh', 'sigmoid' or 'identity'",),
        edit=caser(fc_activation=1),
    ),
    Case(
        "caser-length-zero",
        "recipe",
        "caser with length: 0",
        "RecipeError",
        ("backbone.length: Input should be greater than 0",),
        edit=caser(length=0),
    ),
    Case(
        "caser-length-quoted",
        "override",
        "--set 'backbone.length=\"5\"' (a string, not a number)",
        "RecipeError",
        ("backbone.length: Input should be a valid integer, not the string '5'",),
        edit=caser(),
        sets=('backbone.length="5"',),
    ),
    Case(
        "caser-length-huge",
        "override",
        "--set backbone.length=100000 (filters of every height up to L: L^2 parameters)",
        "RecipeError",
        ("backbone.length: Input should be less than or equal to 256",),
        edit=caser(),
        sets=("backbone.length=100000",),
    ),
    Case(
        "caser-length-beyond-max-len",
        "recipe",
        "caser with length: 9 and data.max_len: 8 (the top row would always be padding)",
        "RecipeError",
        ("backbone.length (9) is longer than data.max_len (8)", "at most 8, or leave it out"),
        edit=caser(length=9),
    ),
    Case(
        "caser-default-length-too-long",
        "override",
        "caser without length and --set data.max_len=1000 (L defaults to max_len)",
        "RecipeError",
        ("L defaults to data.max_len (1000), more than the 256", "set backbone.length"),
        edit=caser(),
        sets=("data.max_len=1000",),
    ),
    Case(
        "caser-masked-item",
        "recipe",
        "caser with masked-item pre-training (it reads the state of each masked position)",
        "RecipeError",
        (NO_STATES, "pretrain.objective 'masked_item' predicts each masked item"),
        edit=lambda data: (
            caser()(data),
            put("pretrain.objective", {"kind": "masked_item"})(data),
        ),
    ),
    Case(
        "caser-loss-positions-all",
        "override",
        "caser with --set finetune.head.loss_positions=all (every position's state predicts)",
        "RecipeError",
        (NO_STATES, "set finetune.head.loss_positions: ur"),
        edit=caser(),
        sets=("finetune.head.loss_positions=all",),
    ),
    Case(
        "caser-user-vector-mean",
        "recipe",
        "caser with a profile head reading user_vector: mean (the mean of the states)",
        "RecipeError",
        (NO_STATES, "set finetune.head.user_vector: ur"),
        edit=lambda data: (
            caser()(data),
            head({**PROFILE, "user_vector": "mean"})(data),
        ),
        files=GENDER_FILE,
    ),
    Case(
        "caser-auxiliary-masked-item",
        "recipe",
        "caser with a masked-item term in finetune.auxiliary",
        "RecipeError",
        (NO_STATES, "finetune.auxiliary.0.objective 'masked_item'"),
        edit=lambda data: (
            caser()(data),
            put("finetune.auxiliary", [{"objective": {"kind": "masked_item"}}])(data),
        ),
    ),
)

CASES = CASES + CASER_CASES + COMMAND_CASES

ERROR_CASES = tuple(case for case in CASES if case.error is not None)
ACCEPTED_CASES = tuple(case for case in CASES if case.error is None)


# ------------------------------------------------------------------------ the docs page

DOC_HEAD = """\
# Bad inputs

clue_fw answers every bad input a user can make (a recipe, a `--set` flag, a run
directory, a data or label file, a checkpoint) with a `ClueError` subclass whose
message names the file, line, recipe key or flag at fault. The CLI prints it as one
paragraph and exits with code 2, without a traceback.

The corpus in `tests/bad_inputs/cases.py` pins this down. Each case gives what it feeds
clue_fw (recipe text, `--set` flags, data or label file bytes, a damaged checkpoint in a
finished run), the exact error class and message fragments it must produce.
`tests/bad_inputs/test_bad_inputs.py` runs every case twice: through the library
(`load_recipe` and `clue_fw.run`, or a direct call for label files and
`load_checkpoint`, and `clue_fw.probing.probe_run` for the `clue probe` cases) and
through `clue_fw.cli.main`. It checks exit code 2, the
fragments on stderr, no `Traceback`, and that a failed run leaves no `metrics.json`
(a directory that fails before it is created is not created at all). A few cases
must be *accepted*: they guard behaviour that a stricter reader could break.

`tests/bad_inputs/test_fuzz.py` adds property-based fuzzing with Hypothesis: arbitrary
text and arbitrary structured YAML as a recipe, arbitrary `--set` flags, and arbitrary
bytes and text as a sequence file or interaction table must produce a valid object or a
`ClueError`, never any other exception.

Limits that guard the recipe loader: recipes over 1 MiB, more than 100 YAML aliases,
more than 100,000 nodes after alias expansion (YAML bombs), nesting deeper than 100
levels, recursive aliases and duplicate keys are refused.

Limits on every input path (issue 9, part 3): a recipe, data, label or target file must
be a regular file (a named pipe, a device such as `/dev/zero`, a socket or a directory
is refused without being read); recipes are capped at 1 MiB and data, label and target
files at 4 GiB (`CLUE_MAX_FILE_BYTES`), and no read goes past the cap. Every integer in
a recipe must fit in 64 bits, and recipe values are never coerced: `seed: true`,
`dim: "16"` and `epochs: 2.0` are errors. An installed plugin that breaks a rule (a hook
that raises or fails pluggy's validation, an entry-point name used by two distributions,
a component that returns the wrong type or shape) is an error naming the plugin.

Decisions the corpus records:

- A UTF-8 byte-order mark at the start of a data or label file is stripped.
- A sequence file splits on any whitespace, so tabs and spaces may be mixed.
- An interaction table whose separator is a tab (detected or set) refuses a line that
  also separates columns with spaces; `separator: whitespace` reads such a file.
- A header line in an interaction table is an error that suggests `skip_header: true`.
- Ids are ASCII digits with an optional leading minus: `1_0`, `+4` and non-ASCII digits
  are errors, and an error quotes at most 40 characters of a token.
- `1e-3` in a recipe or a `--set` value is a number (as in YAML 1.2), not a string.
- Messages are printed literally: `[bold]` or `:x:` in a path is not console markup or
  an emoji code.
- A `--set` that creates a key the recipe does not know names the flag in the error;
  a `--set` into a list that does not exist is refused instead of creating a mapping.

Other commands than `clue run` (issue 20): the `commands` cases run `clue ARGV` in a case
directory that also holds a finished run `R0`, and check that a refused command exits
with code 2 and one paragraph and leaves every file there as it was. No command may
replace a file of a run directory (`clue evaluate R0 --out R0/metrics.json`), write to a
named pipe, or trust a run's files without their identity (`clue compare R0 R0`, a
`recipe.yaml` edited by hand); `clue sweep` checks every grid point and seed, and every
run folder it reuses, before its first run starts. Processes and signals have tests of
their own: `tests/analysis/test_sweep.py` (SIGTERM to a sweep), `tests/distributed/
test_rank_crash.py` (an exception on one process of a data-parallel run, `slow`) and
`tests/bad_inputs/test_plugin_inference_errors.py` (a plugin's exception in `evaluate`,
`embed`, `analyze` and `run`).

This page is generated: `python tests/bad_inputs/cases.py > docs/bad-inputs.md`.
"""


def render_doc() -> str:
    lines = [
        DOC_HEAD,
        f"The corpus holds **{len(ERROR_CASES)} error cases** and "
        f"{len(ACCEPTED_CASES)} must-be-accepted cases.",
        "",
    ]
    groups: list[str] = []
    for case in CASES:
        if case.group not in groups:
            groups.append(case.group)
    for group in groups:
        members = [case for case in CASES if case.group == group]
        lines += [f"## {group.capitalize()} ({len(members)})", ""]
        lines += ["| case | input | expected |", "|---|---|---|"]
        for case in members:
            expected = "accepted"
            if case.error:
                fragments = " … ".join(f"`` {f} ``" for f in case.fragments)
                expected = f"`{case.error}`: {fragments.replace('|', '/')}"
            lines.append(f"| `{case.id}` | {case.summary.replace('|', '/')} | {expected} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_doc(), end="")
