"""Tests for clue_fw.recipe: shipped recipes, validation messages, --set overrides, YAML errors."""

from __future__ import annotations

import contextlib
import copy
import importlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clue_fw.errors import RecipeError
from clue_fw.recipe import (
    apply_overrides,
    load_recipe,
    parse_yaml,
    read_recipe_file,
    recipe_to_yaml,
    validate_recipe,
)
from clue_fw.registry import build_registry, reset_registry

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))
TABLE2_TASKS = ("coldrec3", "coldrec5", "gender", "age", "occupation")
TABLE2_MODELS = ("nfm", "deepfm", "zero", "masked_item", "clue_paper", "clue", "item_mean")
#: Shipped recipes that need a plugin of plugins/ (the suite loads no entry points, so it is
#: registered in code): recipe file name -> plugin module, on pytest's pythonpath.
PLUGIN_RECIPES = {
    name: "clue_s3rec" for name in ("beauty50_s3rec.yaml", "ml30_s3rec.yaml", "ml50_s3rec.yaml")
}


@contextlib.contextmanager
def plugins_for(path: Path) -> Iterator[None]:
    """Register the plugin ``path`` needs, if any, for the duration of the block."""
    module = PLUGIN_RECIPES.get(path.name)
    if module is None:
        yield
        return
    reset_registry(build_registry(extra_plugins=[(importlib.import_module(module), module)]))
    try:
        yield
    finally:
        reset_registry(None)


def test_table2_grid_is_complete_and_consistent() -> None:
    """Every (model, task) cell of Table II has a recipe, and the cells differ only where
    the model or the task says so."""
    folder = REPO / "recipes" / "table2"
    names = {p.stem for p in folder.glob("*.yaml")}
    assert names == {f"{t}_{m}" for t in TABLE2_TASKS for m in TABLE2_MODELS}
    for task in TABLE2_TASKS:
        recipes = {m: load_recipe(folder / f"{task}_{m}.yaml") for m in TABLE2_MODELS}
        heads = {r.finetune.model_dump_json() for r in recipes.values()}
        assert len(heads) == 1, f"{task}: fine-tuning differs between models"
        assert (
            recipes["zero"].backbone
            == recipes["clue_paper"].backbone
            == recipes["masked_item"].backbone
        )
        assert recipes["clue"].backbone == recipes["item_mean"].backbone
        assert recipes["clue"].backbone.kind == "item_mean"
        for untrained in ("zero", "nfm", "deepfm", "item_mean"):
            assert recipes[untrained].pretrain is None
        assert recipes["clue_paper"].pretrain.objective.kind == "clue"
        # the fix: InfoNCE over split views; otherwise the paper's pre-training schedule
        fixed, paper = recipes["clue"].pretrain, recipes["clue_paper"].pretrain
        assert fixed.objective.kind == "infonce" and [v.kind for v in fixed.views] == ["split"]
        assert [v.kind for v in paper.views] == ["dropout"] and fixed.train == paper.train
        assert recipes["masked_item"].pretrain.objective.kind == "masked_item"
        assert recipes["nfm"].backbone.kind == "nfm"
        assert recipes["deepfm"].backbone.kind == "deepfm"
    for model in TABLE2_MODELS:
        g3 = load_recipe(folder / f"coldrec3_{model}.yaml").finetune.head
        g5 = load_recipe(folder / f"coldrec5_{model}.yaml").finetune.head
        assert (g3.max_per_user, g5.max_per_user) == (3, 5)
        for column in ("gender", "age", "occupation"):
            head = load_recipe(folder / f"{column}_{model}.yaml").finetune.head
            assert head.labels.column == column


def test_recipes_exist() -> None:
    names = {p.name for p in RECIPES}
    assert "quickstart.yaml" in names
    assert len(RECIPES) >= 5


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(REPO)) for p in RECIPES])
def test_shipped_recipe_validates(path: Path) -> None:
    with plugins_for(path):
        _check_shipped_recipe(path)


def _check_shipped_recipe(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    expected_head = "next_item"
    if path.parent.name in ("table2", "synth_transfer"):
        task = path.stem.split("_")[0]
        expected_head = "cold_start" if task.startswith("cold") else "profile"
    assert recipe.finetune.head.kind == expected_head
    # the resolved YAML validates again to the same recipe
    again = validate_recipe(parse_yaml(recipe_to_yaml(recipe), "resolved"))
    assert again == recipe


def test_ml_recipes_point_at_ml1m() -> None:
    for path in RECIPES:
        if path.name.startswith("ml"):
            with plugins_for(path):
                recipe = load_recipe(path)
            assert recipe.data.format == "sequences"
            assert recipe.data.path == "ml-1m/ml-1m_sequences.txt"
            length = re.match(r"ml(\d+)_", path.stem)
            if length is None:  # ml1m_best: written by benchmarks/quality.py
                continue
            assert recipe.data.max_len == int(length.group(1))
            pretrains = recipe.pretrain is not None and recipe.pretrain.objective.kind != "none"
            # CLUEZero recipes (ml50_zero, ml50_fast_zero, ml50_zero_aux) skip pre-training
            assert pretrains != ("zero" in path.stem.split("_"))


def invalid(data: dict[str, Any]) -> str:
    with pytest.raises(RecipeError) as info:
        validate_recipe(data, "tiny.yaml")
    return str(info.value)


def test_misspelt_key_quotes_its_path(tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["pretrain"]["objective"]["predictor_hiden"] = 32
    message = invalid(tiny_recipe)
    assert "pretrain.objective.predictor_hiden: Extra inputs are not permitted" in message
    assert message.startswith("Recipe tiny.yaml is invalid (1 problem)")


def test_misspelt_keys_in_every_section(tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["data"]["max_lenght"] = 5
    tiny_recipe["backbone"]["block"] = 2
    tiny_recipe["finetune"]["train"]["epoch"] = 2
    tiny_recipe["pretrain"]["views"][0]["rate"] = 0.1
    tiny_recipe["seeed"] = 1
    message = invalid(tiny_recipe)
    assert "(5 problems)" in message
    for where in (
        "data.max_lenght",
        "backbone.block",
        "finetune.train.epoch",
        "pretrain.views.0.rate",
        "seeed",
    ):
        assert f"{where}: Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("section", "kind", "where"),
    [
        (("backbone",), "transfomer", "backbone"),
        (("pretrain", "objective"), "clu", "pretrain.objective"),
        (("finetune", "head"), "next_itme", "finetune.head"),
    ],
)
def test_unknown_kind(
    tiny_recipe: dict[str, Any], section: tuple[str, ...], kind: str, where: str
) -> None:
    node = tiny_recipe
    for key in section:
        node = node[key]
    node["kind"] = kind
    message = invalid(tiny_recipe)
    assert f"{where}: unknown kind {kind!r}" in message
    assert "clue list" in message


def test_unknown_view_and_data_format(tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["pretrain"]["views"] = [{"kind": "dropout"}, {"kind": "rotate"}]
    assert "pretrain.views.1: unknown kind 'rotate'" in invalid(tiny_recipe)
    data = copy.deepcopy(tiny_recipe)
    data["pretrain"]["views"] = [{}]
    assert "missing `kind`" in invalid(data)
    tiny_recipe["data"] = {"format": "parquet", "path": "x"}
    assert "data: unknown kind 'parquet'" in invalid(tiny_recipe)


def test_missing_sections_and_values(tiny_recipe: dict[str, Any]) -> None:
    del tiny_recipe["finetune"]["train"]["epochs"]
    del tiny_recipe["backbone"]
    message = invalid(tiny_recipe)
    assert "backbone: required field is missing" in message
    assert "finetune.train.epochs: required field is missing" in message


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("finetune.train.epochs=0", "finetune.train.epochs: Input should be greater than 0"),
        ("backbone.dropout=1.0", "backbone.dropout: Input should be less than 1"),
        ("device=gpu", "device must be auto, cpu, mps, cuda or cuda:N"),
        ("finetune.head.ks=[10, 0]", "every k must be positive"),
        ("seed=many", "seed: Input should be a valid integer"),
        ("finetune.train.history=everything", "finetune.train.history"),
    ],
)
def test_value_errors(tiny_recipe: dict[str, Any], override: str, fragment: str) -> None:
    assert fragment in invalid(apply_overrides(tiny_recipe, [override]))


def test_defaults(tiny_recipe: dict[str, Any]) -> None:
    del tiny_recipe["pretrain"]["views"]
    recipe = validate_recipe(tiny_recipe)
    assert [v.kind for v in recipe.pretrain.views] == ["dropout"]
    assert recipe.finetune.monitor is None
    assert recipe.finetune.eval.batch_size == 1024
    assert recipe.name is None
    tiny_recipe.pop("pretrain")
    assert validate_recipe(tiny_recipe).pretrain is None  # CLUEZero


def test_recipe_is_frozen(tiny_recipe: dict[str, Any]) -> None:
    recipe = validate_recipe(tiny_recipe)
    with pytest.raises(Exception, match="frozen"):
        recipe.seed = 3


# --------------------------------------------------------------------------- overrides


def test_override_value_types(tiny_recipe: dict[str, Any]) -> None:
    data = apply_overrides(
        tiny_recipe,
        [
            "seed=7",
            "finetune.train.lr=0.003",
            "pretrain.objective.predictor=false",
            "finetune.head.exclude_seen=True",
            "name=my run",
            "finetune.head.ks=[5, 10]",
        ],
    )
    assert data["seed"] == 7 and isinstance(data["seed"], int)
    assert data["finetune"]["train"]["lr"] == 0.003 and isinstance(
        data["finetune"]["train"]["lr"], float
    )
    assert data["pretrain"]["objective"]["predictor"] is False
    assert data["finetune"]["head"]["exclude_seen"] is True
    assert data["name"] == "my run"
    assert data["finetune"]["head"]["ks"] == [5, 10]
    recipe = validate_recipe(data)
    assert (recipe.seed, recipe.finetune.train.lr, recipe.pretrain.objective.predictor) == (
        7,
        0.003,
        False,
    )


def test_override_scientific_notation_validates(tiny_recipe: dict[str, Any]) -> None:
    recipe = validate_recipe(apply_overrides(tiny_recipe, ["finetune.train.lr=1e-4"]))
    assert recipe.finetune.train.lr == pytest.approx(1e-4)


def test_overrides_do_not_mutate_input(tiny_recipe: dict[str, Any]) -> None:
    before = copy.deepcopy(tiny_recipe)
    apply_overrides(tiny_recipe, ["seed=9", "backbone.dim=32", "pretrain.views.0.kind=x"])
    assert tiny_recipe == before


def test_override_list_index(tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["pretrain"]["views"] = [{"kind": "dropout"}, {"kind": "dropout"}]
    data = apply_overrides(tiny_recipe, ["pretrain.views.1.kind=mask"])
    assert data["pretrain"]["views"] == [{"kind": "dropout"}, {"kind": "mask"}]
    data = apply_overrides(tiny_recipe, ["finetune.head.ks=[1, 5]", "finetune.head.ks.0=3"])
    assert data["finetune"]["head"]["ks"] == [3, 5]
    with pytest.raises(RecipeError, match=r"pretrain\.views\.2 does not exist \(list of 2\)"):
        apply_overrides(tiny_recipe, ["pretrain.views.2.kind=dropout"])
    with pytest.raises(RecipeError, match="does not exist"):
        apply_overrides(tiny_recipe, ["pretrain.views.first.kind=dropout"])


def test_override_creates_nested_mappings(tiny_recipe: dict[str, Any]) -> None:
    data = apply_overrides(tiny_recipe, ["finetune.eval.batch_size=64", "a.b.c=1"])
    assert data["finetune"]["eval"] == {"batch_size": 64}
    assert data["a"] == {"b": {"c": 1}}
    tiny_recipe["pretrain"] = None
    data = apply_overrides(tiny_recipe, ["pretrain.train.epochs=2"])
    assert data["pretrain"] == {"train": {"epochs": 2}}


def test_override_can_replace_and_remove_sections(tiny_recipe: dict[str, Any]) -> None:
    data = apply_overrides(tiny_recipe, ["pretrain=null"])
    assert validate_recipe(data).pretrain is None
    data = apply_overrides(tiny_recipe, ["backbone={kind: transformer, dim: 8, heads: 2}"])
    assert validate_recipe(data).backbone.dim == 8


@pytest.mark.parametrize("override", ["seed.x=1", "seed.x.y=1", "data.format.z=3"])
def test_override_through_a_scalar(tiny_recipe: dict[str, Any], override: str) -> None:
    with pytest.raises(RecipeError, match="is not a mapping"):
        apply_overrides(tiny_recipe, [override])


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("seed", "key.path=value"),
        ("a..b=1", "empty key"),
        ("=1", "empty key"),
        ("seed=[1", "not valid YAML"),
    ],
)
def test_malformed_overrides(tiny_recipe: dict[str, Any], override: str, fragment: str) -> None:
    with pytest.raises(RecipeError, match=fragment):
        apply_overrides(tiny_recipe, [override])


def test_override_value_with_equals_sign(tiny_recipe: dict[str, Any]) -> None:
    assert apply_overrides(tiny_recipe, ["name=a=b"])["name"] == "a=b"


# --------------------------------------------------------------------------- files and YAML


def test_load_recipe_with_overrides(
    tiny_recipe: dict[str, Any], write_recipe: Callable[..., Path]
) -> None:
    path = write_recipe(tiny_recipe, "small_run.yaml")
    recipe = load_recipe(path, ["backbone.dim=32", "finetune.train.epochs=2"])
    assert recipe.name == "small_run"
    assert (recipe.backbone.dim, recipe.finetune.train.epochs) == (32, 2)
    tiny_recipe["name"] = "explicit"
    assert load_recipe(write_recipe(tiny_recipe)).name == "explicit"


def test_yaml_syntax_error_has_line_number(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 0\ndata:\n  format: synthetic\n  max_len: [10\nbackbone: {}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message and "not valid YAML" in message
    assert "line 5" in message


def test_yaml_indentation_error(tmp_path: Path) -> None:
    path = tmp_path / "indent.yaml"
    path.write_text("seed: 0\n  device: cpu\n")
    with pytest.raises(RecipeError, match=r"line 2, column \d+"):
        read_recipe_file(path)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "", "42\n"])
def test_recipe_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match="must be a YAML mapping"):
        read_recipe_file(path)


def test_missing_and_unreadable_recipe_files(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RecipeError):
        load_recipe(binary)


def test_set_flag_is_named_only_in_its_own_errors(
    tiny_recipe: dict[str, Any], write_recipe: Callable[..., Path]
) -> None:
    tiny_recipe["backbone"]["kind"] = "transfomer"
    path = write_recipe(tiny_recipe)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["backbone.dim=32", "finetune.train.lr=fast", "finetune.eval.k=1"])
    message = str(info.value)
    assert "(3 problems)" in message
    assert "(3 problems): backbone: unknown kind 'transfomer'" in message  # the file's fault
    assert "backbone.dim=32" not in message
    assert "--set 'finetune.train.lr=fast': finetune.train.lr: Input should be" in message
    assert "--set 'finetune.eval.k=1': finetune.eval.k: Extra inputs are not permitted" in message


def test_set_flag_is_named_for_a_section_it_created(
    tiny_recipe: dict[str, Any], write_recipe: Callable[..., Path]
) -> None:
    tiny_recipe["pretrain"] = None
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(tiny_recipe), ["pretrain.train.epochs=2"])
    assert "--set 'pretrain.train.epochs=2': pretrain.objective: required field is missing" in str(
        info.value
    )


def test_set_into_an_absent_list_is_refused(tiny_recipe: dict[str, Any]) -> None:
    del tiny_recipe["pretrain"]["views"]
    with pytest.raises(RecipeError, match=r"pretrain\.views does not exist, so it has no item 0"):
        apply_overrides(tiny_recipe, ["pretrain.views.0.kind=mask"])


# --------------------------------------------------------------------------- no coercion, 64 bits


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("seed=true", "seed: Input should be a valid integer, not the boolean true"),
        ("seed='7'", "seed: Input should be a valid integer, not the string '7'"),
        ("backbone.dim=16.0", "backbone.dim: Input should be a valid integer, not the float 16.0"),
        ("finetune.train.epochs=2.5", "got a number with a fractional part"),
        ("finetune.train.lr=true", "finetune.train.lr: Input should be a valid number"),
        ("finetune.train.lr='0.1'", "not the string '0.1'"),
        ("finetune.head.tie_weights=1", "Input should be a valid boolean, not the number 1"),
        ("finetune.head.tie_weights=yes_please", "Input should be a valid boolean"),
        ("data.stickiness=false", "data.stickiness: Input should be a valid number"),
    ],
)
def test_values_are_not_coerced(tiny_recipe: dict[str, Any], override: str, fragment: str) -> None:
    with pytest.raises(RecipeError) as info:
        validate_recipe(apply_overrides(tiny_recipe, [override]))
    assert fragment in str(info.value)


def test_integers_are_valid_floats_and_exponents_are_numbers(tiny_recipe: dict[str, Any]) -> None:
    recipe = validate_recipe(
        apply_overrides(tiny_recipe, ["finetune.train.lr=1", "data.stickiness=1"])
    )
    assert recipe.finetune.train.lr == 1.0 and isinstance(recipe.finetune.train.lr, float)
    for text, value in [("1e-3", 1e-3), ("1.5E+2", 150.0), ("-2e0", -2.0), (".5e1", 5.0)]:
        assert parse_yaml(f"x: {text}\n", "t")["x"] == value
    assert parse_yaml("x: 1_0\ny: 0x10\nz: e5\n", "t") == {"x": "1_0", "y": 16, "z": "e5"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10),
        ("-5", -5),
        ("+3", 3),
        ("0", 0),
        ("0o17", 15),
        ("0x1F", 31),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("1:30", "1:30"),  # YAML 1.1: sexagesimal 90
        ("1:0", "1:0"),
        ("1:30.5", "1:30.5"),
        ("0b101", "0b101"),  # YAML 1.1: 5
        ("1_0", "1_0"),  # YAML 1.1: 10
        ("1_000.5", "1_000.5"),
        ("-0x10", "-0x10"),
    ],
)
def test_numbers_follow_the_yaml_1_2_core_schema(text: str, value: Any) -> None:
    got = parse_yaml(f"x: {text}\n", "t")["x"]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text", ["010", "-007", "00", "!!int 010"])
def test_integers_with_leading_zeros_are_refused(text: str) -> None:
    # YAML 1.1 reads 010 as octal 8, YAML 1.2 as 10: refused, never silently either.
    with pytest.raises(RecipeError, match=r"line 1, column 4: the integer .* has a leading zero"):
        parse_yaml(f"x: {text}\n", "t")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("seed=010", "--set 'seed=010': the value is not valid YAML"),
        ("seed=1:30", "seed: Input should be a valid integer, not the string '1:30'"),
        ("finetune.train.lr=1:0", "finetune.train.lr: Input should be a valid number"),
        ("seed=0b101", "recipe numbers follow YAML 1.2"),
        ("finetune.train.epochs=1_0", "finetune.train.epochs: Input should be a valid integer"),
    ],
)
def test_yaml_1_1_numbers_in_overrides_are_refused(
    tiny_recipe: dict[str, Any], override: str, fragment: str
) -> None:
    with pytest.raises(RecipeError) as info:
        validate_recipe(apply_overrides(tiny_recipe, [override]))
    assert fragment in str(info.value)


def test_yaml_1_1_numbers_in_a_recipe_file_are_refused(
    tmp_path: Path, tiny_recipe: dict[str, Any]
) -> None:
    text = yaml.safe_dump(tiny_recipe, sort_keys=False)
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("seed: 0\n", "seed: 1:30\n", 1), encoding="utf-8")
    with pytest.raises(RecipeError, match=r"seed: Input should be a valid integer.*'1:30'"):
        load_recipe(path)
    path.write_text(text.replace("seed: 0\n", "seed: 010\n", 1), encoding="utf-8")
    with pytest.raises(RecipeError, match=r"line \d+, column 7: the integer 010 has a leading"):
        load_recipe(path)
    path.write_text(text.replace("seed: 0\n", "seed: 0o10\n", 1), encoding="utf-8")
    assert load_recipe(path).seed == 8


def test_nested_models_are_strict_too(tiny_recipe: dict[str, Any]) -> None:
    data = copy.deepcopy(tiny_recipe)
    data["finetune"]["head"] = {
        "kind": "cold_start",
        "target": {"format": "pairs", "path": "t.txt", "drop_unknown_users": "yes"},
    }
    with pytest.raises(RecipeError, match=r"target\.drop_unknown_users: Input should be a valid"):
        validate_recipe(data)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("seed",), 2**63),
        (("seed",), -(2**63) - 1),
        (("data", "seed"), 10**30),
        (("finetune", "train", "batch_size"), 2**64),
        (("finetune", "train", "lr"), 2**64),  # a float field: refused all the same
        (("finetune", "head", "ks"), [10, 2**70]),
    ],
)
def test_integers_beyond_64_bits_are_refused(
    tiny_recipe: dict[str, Any], path: tuple[str, ...], value: Any
) -> None:
    data = copy.deepcopy(tiny_recipe)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(RecipeError, match="does not fit in 64 bits") as info:
        validate_recipe(data)
    where = ".".join(path) + (".1" if isinstance(value, list) else "")
    assert f"{where}: the integer" in str(info.value)
    assert str(info.value).count("does not fit") == 1  # not reported twice


def test_64_bit_limits_are_accepted(tiny_recipe: dict[str, Any]) -> None:
    data = apply_overrides(tiny_recipe, [f"seed={2**63 - 1}", f"finetune.train.epochs={2**63 - 1}"])
    recipe = validate_recipe(data)
    assert (recipe.seed, recipe.finetune.train.epochs) == (2**63 - 1, 2**63 - 1)
    # data.seed feeds a 32-bit generator seed: see test_generator_seeds_are_32_bit


def test_huge_integers_and_other_problems_are_reported_together(
    tiny_recipe: dict[str, Any], write_recipe: Callable[..., Path]
) -> None:
    path = write_recipe(tiny_recipe)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["seed=" + "9" * 25, "backbone.dimm=3"])
    message = str(info.value)
    assert "(2 problems)" in message
    assert f"--set 'seed={'9' * 25}': seed: the integer (25 digits) does not fit" in message
    assert "--set 'backbone.dimm=3': backbone.dimm: Extra inputs" in message


def test_huge_keys_and_kinds_are_clipped(tiny_recipe: dict[str, Any]) -> None:
    data = copy.deepcopy(tiny_recipe)
    data["k" * 5000] = 1
    data["backbone"]["kind"] = "t" * 5000
    with pytest.raises(RecipeError) as info:
        validate_recipe(data)
    assert len(str(info.value)) < 1000
    assert "'" + "t" * 40 + "'... (5,000 characters)" in str(info.value)


# --------------------------------------------------------------------------- review findings


def test_duplicate_table_columns_are_refused(tiny_recipe: dict[str, Any]) -> None:
    """[user, user, item, timestamp] would read column 2 as the user and item silently."""
    tiny_recipe["data"] = {
        "format": "interactions",
        "path": "r.dat",
        "columns": ["user", "user", "item", "timestamp"],
    }
    message = invalid(tiny_recipe)
    assert "data.columns" in message and "column 'user' is named more than once" in message
    tiny_recipe["data"]["columns"] = ["user", "item", "rating", "timestamp"]
    validate_recipe(tiny_recipe)


def test_duplicate_target_genres_are_refused(tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["finetune"]["head"] = {
        "kind": "cold_start",
        "target": {"format": "genres", "target_genres": ["Action", "Action"]},
    }
    assert "genre 'Action' is listed more than once" in invalid(tiny_recipe)


@pytest.mark.parametrize(
    "device",
    ["cuda:2147483648", "cuda:01", "cuda:128", "cuda:-1", "cuda:", "CPU", " cpu", "cuda:٣"],
)
def test_device_must_be_canonical(tiny_recipe: dict[str, Any], device: str) -> None:
    tiny_recipe["device"] = device
    assert "device must be auto, cpu, mps, cuda or cuda:N" in invalid(tiny_recipe)


@pytest.mark.parametrize("device", ["auto", "cpu", "mps", "cuda", "cuda:0", "cuda:7", "cuda:127"])
def test_canonical_devices_validate(tiny_recipe: dict[str, Any], device: str) -> None:
    tiny_recipe["device"] = device
    assert validate_recipe(tiny_recipe).device == device


def test_objective_min_batch_size_is_checked(tiny_recipe: dict[str, Any]) -> None:
    """The clue objective's BatchNorm needs two rows; the objective declares it."""
    tiny_recipe["pretrain"]["train"]["batch_size"] = 1
    message = invalid(tiny_recipe)
    assert "objective 'clue' needs batches of at least 2 sequences" in message
    tiny_recipe["pretrain"]["objective"] = {"kind": "masked_item"}
    validate_recipe(tiny_recipe)  # no BatchNorm: a batch of one is fine


@pytest.mark.parametrize("where", ["name", "data.format", "backbone.kind", "key"])
def test_strings_utf8_cannot_encode_are_refused(tiny_recipe: dict[str, Any], where: str) -> None:
    if where == "key":
        tiny_recipe["data"]["\udc80"] = 1
    else:
        section, _, key = where.rpartition(".")
        node = tiny_recipe[section] if section else tiny_recipe
        node[key] = "x\udc80"
    message = invalid(tiny_recipe)
    assert "not valid text" in message and "lone surrogate" in message
    message.encode("utf-8")  # the message itself can be printed


def test_lone_surrogate_from_set_names_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text((REPO / "recipes" / "quickstart.yaml").read_text())
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ['name="\\udc80"'])
    assert "--set 'name=\"\\\\udc80\"': name: the value is not valid text" in str(info.value)


@pytest.mark.parametrize("key", ["init_from", "monitor"])
@pytest.mark.parametrize("value", ["", "  "])
def test_empty_strings_are_not_unset(tiny_recipe: dict[str, Any], key: str, value: str) -> None:
    tiny_recipe["finetune"][key] = value
    message = invalid(tiny_recipe)
    assert f"finetune.{key}" in message and "an empty string is not a value" in message


def test_max_len_is_bounded(tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["data"]["max_len"] = 4611686018427387904
    assert "data.max_len: Input should be less than or equal to 1000000" in invalid(tiny_recipe)


def test_cold_start_max_per_user_is_bounded(tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["finetune"]["head"] = {"kind": "cold_start", "max_per_user": 2**63 - 1}
    assert "finetune.head.max_per_user" in invalid(tiny_recipe)
    tiny_recipe["finetune"]["head"]["max_per_user"] = 1_000_000
    validate_recipe(tiny_recipe)


@pytest.mark.parametrize("probability", [0.0, 0.5])
def test_dropout_view_probability_must_be_one(
    tiny_recipe: dict[str, Any], probability: float
) -> None:
    """The dropout view never changes items, so its probability would be ignored."""
    tiny_recipe["pretrain"]["views"] = [{"kind": "dropout", "probability": probability}]
    message = invalid(tiny_recipe)
    assert "pretrain.views.0.probability" in message and "has no effect" in message
    tiny_recipe["pretrain"]["views"] = [{"kind": "dropout", "probability": 1.0}]
    validate_recipe(tiny_recipe)


def test_long_set_values_are_clipped_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text((REPO / "recipes" / "quickstart.yaml").read_text())
    for flag in ("seed=" + "x" * 5000, "x" * 5000, "y" * 5000 + "=1", "seed.0=" + "z" * 5000):
        with pytest.raises(RecipeError) as info:
            load_recipe(path, [flag])
        message = str(info.value)
        assert len(message) < 600, message
        assert "x" * 41 not in message and "y" * 41 not in message and "z" * 41 not in message


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("backbone.blocks=100000000", "backbone.blocks: Input should be less than or equal to 256"),
        ("backbone.heads=32", "heads (32) must divide dim (16)"),
        (
            "pretrain.objective.projector_dim=1099511627776",
            "pretrain.objective.projector_dim must be at most 65536",
        ),
        ("pretrain.objective.predictor_dim=65537", "predictor_dim must be at most 65536"),
    ],
)
def test_model_sizes_are_bounded(tiny_recipe: dict[str, Any], override: str, fragment: str) -> None:
    with pytest.raises(RecipeError) as info:
        validate_recipe(apply_overrides(tiny_recipe, [override]))
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("backbone", "field"),
    [
        ({"kind": "gru", "dim": 16, "layers": 10**9}, "layers"),
        ({"kind": "cnn", "dim": 16, "repeats": 10**8}, "repeats"),
        ({"kind": "cnn", "dim": 16, "dilations": [1] * 514}, "dilations"),
    ],
)
def test_recurrent_and_convolutional_depth_is_bounded(
    tiny_recipe: dict[str, Any], backbone: dict[str, Any], field: str
) -> None:
    tiny_recipe["backbone"] = backbone
    with pytest.raises(RecipeError, match=rf"backbone\.{field}: "):
        validate_recipe(tiny_recipe)


def test_largest_model_sizes_are_accepted(tiny_recipe: dict[str, Any]) -> None:
    recipe = validate_recipe(
        apply_overrides(
            tiny_recipe, ["backbone.blocks=256", "pretrain.objective.projector_dim=65536"]
        )
    )
    assert recipe.backbone.blocks == 256


@pytest.mark.parametrize(
    "override",
    [
        "data.seed=4294967296",
        "data.seed=-1",
        "finetune.head={kind: profile, labels: {path: l.csv}, split_seed: 4294967296}",
        "finetune.head={kind: cold_start, target: {format: pairs, path: t.txt}, split_seed: -2}",
    ],
)
def test_generator_seeds_are_32_bit(tiny_recipe: dict[str, Any], override: str) -> None:
    with pytest.raises(RecipeError) as info:
        validate_recipe(apply_overrides(tiny_recipe, [override]))
    assert "seeds for data generation and splits must lie in 0 .. 4294967295" in str(info.value)


def test_32_bit_generator_seeds_and_large_run_seeds_are_accepted(
    tiny_recipe: dict[str, Any],
) -> None:
    recipe = validate_recipe(
        apply_overrides(tiny_recipe, ["data.seed=4294967295", "seed=1099511627776"])
    )
    assert recipe.data.seed == 4294967295


def test_the_split_view_must_come_first(tiny_recipe: dict[str, Any]) -> None:
    tiny_recipe["pretrain"]["views"] = [{"kind": "mask", "rho": 0.2}, {"kind": "split"}]
    message = invalid(tiny_recipe)
    assert "pretrain.views.1: the 'split' view makes the two branches" in message
    assert "move it to the top" in message
    tiny_recipe["pretrain"]["views"] = [{"kind": "split"}, {"kind": "mask", "rho": 0.2}]
    validate_recipe(tiny_recipe)


def test_switching_a_kind_from_the_command_line_shows_the_form_that_works(
    tiny_recipe: dict[str, Any],
) -> None:
    from clue_fw.recipe import _apply_overrides, _validate

    data, applied = _apply_overrides(tiny_recipe, ["backbone.kind=gru"])
    with pytest.raises(RecipeError) as info:
        _validate(data, "tiny.yaml", None, applied)
    message = str(info.value)
    assert "backbone.heads: Extra inputs are not permitted" in message
    assert "replace the whole section instead" in message
    assert "--set 'backbone={kind: gru}'" in message and "clue show gru" in message
    # the advised form validates
    fixed, applied = _apply_overrides(tiny_recipe, ["backbone={kind: gru, dim: 16}"])
    _validate(fixed, "tiny.yaml", None, applied)
