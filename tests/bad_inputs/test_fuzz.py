"""Property-based fuzzing of the recipe loader and the data readers (Hypothesis).

Whatever text, YAML structure, ``--set`` flag or file bytes come in, the answer is a
valid object or a :class:`~clue_fw.errors.ClueError`, never any other exception.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cases import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clue_fw.data.dataset import SequenceData, build_sequence_data
from clue_fw.data.readers import RawSequences, read_interaction_table, read_sequence_file
from clue_fw.errors import ClueError, DataError, RecipeError
from clue_fw.recipe import load_recipe, parse_yaml, validate_recipe
from clue_fw.registry import reset_registry

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Keys a recipe really uses, so that structured inputs reach deep into validation.
KEYS = (
    "name seed device data format path max_len columns separator skip_header num_users "
    "num_items min_length max_length backbone kind transformer gru cnn dim heads blocks "
    "dropout ffn_dim dilations pretrain objective clue views probability train epochs "
    "batch_size lr history finetune head next_item ks exclude_seen patience monitor eval"
).split()
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(KEYS + ["synthetic", "sequences", "interactions", "auto", "cpu", "all"])
    | st.text(max_size=12)
)
KEY = st.sampled_from(KEYS) | st.text(max_size=8)
STRUCTURES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEY, children, max_size=5),
    max_leaves=30,
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A directory reused by every example (Hypothesis runs many examples per test)."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@pytest.fixture(autouse=True, scope="module")
def _one_registry() -> Iterator[None]:
    yield
    reset_registry()


def accepts_or_clue_error(call: Any, *args: Any) -> Any:
    """``call(*args)``, with a ClueError turned into None; any other exception fails."""
    try:
        return call(*args)
    except ClueError:
        return None


# --------------------------------------------------------------------------- recipes


# Text built from YAML syntax, tags, anchors and tricky scalars reaches PyYAML's
# constructors (which raise ValueError for `!!int x` or 2001-13-01) far more often than
# uniformly random text does.
YAML_PIECES = st.sampled_from(
    [
        "\n",
        "  ",
        "- ",
        ": ",
        ", ",
        "[",
        "]",
        "{",
        "}",
        "? ",
        "'",
        '"',
        "#",
        "|",
        ">",
        "&a ",
        "*a",
        "&b ",
        "*b",
        "<<: ",
        "!!int ",
        "!!float ",
        "!!bool ",
        "!!timestamp ",
        "!!binary ",
        "!!set ",
        "!!omap ",
        "!!python/name:os.system ",
        "!!str ",
        "---\n",
        "2001-13-01",
        "2001-02-03 25:61:00",
        "0x",
        "0b",
        "0o9",
        "1_0",
        "1:99",
        ".nan",
        ".inf",
        "~",
        "null",
        "yes",
        "0",
        "-1",
        "1e400",
        "9" * 30,
        "\t",
        "\ufeff",
        "\x85",
        "\u2028",
    ]
    + KEYS
)
YAML_TEXT = st.text() | st.lists(YAML_PIECES, max_size=40).map("".join)


@FUZZ
@given(text=YAML_TEXT)
def test_arbitrary_text_as_recipe(text: str) -> None:
    data = accepts_or_clue_error(parse_yaml, text, "fuzz.yaml")
    if data is not None:
        assert isinstance(data, dict)
        accepts_or_clue_error(validate_recipe, data, "fuzz.yaml")


@FUZZ
@given(text=YAML_TEXT)
def test_arbitrary_text_as_recipe_file(scratch: Path, text: str) -> None:
    path = scratch / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    accepts_or_clue_error(load_recipe, path)


@FUZZ
@given(payload=st.binary())
def test_arbitrary_bytes_as_recipe_file(scratch: Path, payload: bytes) -> None:
    path = scratch / "fuzz.yaml"
    path.write_bytes(payload)
    accepts_or_clue_error(load_recipe, path)


@FUZZ
@given(data=st.dictionaries(KEY, STRUCTURES, max_size=8))
def test_arbitrary_structured_yaml(data: dict[Any, Any]) -> None:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    try:
        parsed = parse_yaml(text, "fuzz.yaml")
    except RecipeError as error:
        # safe_dump does not always round-trip: it writes a key "\x85" as a quoted
        # scalar whose line break folds to " " on reading, so two distinct keys can come
        # back as one key twice, which the loader refuses (rightly) as a duplicate. And it
        # writes the string "08" plain (YAML 1.1 has no such octal), which the loader's
        # YAML 1.2 reading refuses as a number with a leading zero.
        assert "appears twice" in str(error) or "has a leading zero" in str(error)
        return
    accepts_or_clue_error(validate_recipe, parsed, "fuzz.yaml")


def _index(step: str | int, size: int) -> int:
    """A deterministic position for ``step`` in a container of ``size`` (no hash())."""
    return (step if isinstance(step, int) else sum(map(ord, step))) % size


def _mutate(recipe: dict[str, Any], path: list[str | int], value: Any, delete: bool) -> None:
    """Follow ``path`` (indices wrap) as far as the recipe goes; replace or delete there."""
    node: Any = recipe
    for step in path[:-1]:
        if isinstance(node, dict) and node:
            child = node[step] if step in node else list(node.values())[_index(step, len(node))]
        elif isinstance(node, list) and node:
            child = node[_index(step, len(node))]
        else:
            break
        if not isinstance(child, dict | list):
            break
        node = child
    if isinstance(node, dict):
        key = path[-1] if isinstance(path[-1], str) else "kind"
        if delete:
            node.pop(key, None)
        else:
            node[key] = value
    elif isinstance(node, list) and node:
        node[_index(path[-1], len(node))] = value


@FUZZ
@given(
    mutations=st.lists(
        st.tuples(
            st.lists(st.sampled_from(KEYS) | st.integers(0, 3), min_size=1, max_size=4),
            STRUCTURES,
            st.booleans(),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_mutated_tiny_recipe(mutations: list[tuple[list[str | int], Any, bool]]) -> None:
    recipe = copy.deepcopy(TINY)
    for path, value, delete in mutations:
        _mutate(recipe, path, value, delete)
    text = yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)
    accepts_or_clue_error(validate_recipe, parse_yaml(text, "fuzz.yaml"), "fuzz.yaml")


OVERRIDE = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda keys, value: ".".join(keys) + "=" + value,
        st.lists(st.sampled_from(KEYS) | st.sampled_from(["0", "1", "9", ""]), max_size=4),
        st.text(max_size=15) | st.sampled_from(["null", "[]", "{}", "-1", "0", "[1, 2]"]),
    ),
)


@FUZZ
@given(overrides=st.lists(OVERRIDE, max_size=3))
def test_arbitrary_set_flags(scratch: Path, overrides: list[str]) -> None:
    path = scratch / "tiny.yaml"
    if not path.exists():
        path.write_text(yaml.safe_dump(TINY, sort_keys=False), encoding="utf-8")
    accepts_or_clue_error(load_recipe, path, overrides)


# --------------------------------------------------------------------------- data readers

TOKENS = st.sampled_from(
    ["1", "2", "3", "17", "-4", "0", "007", "1e3", "x", "1.5", "nan", "inf", "::", ",", "\t"]
) | st.integers(-(2**70), 2**70).map(str)
SEPARATOR = st.sampled_from([" ", "\t", "::", ",", "  ", " \t"])
LINES = st.lists(
    st.builds(lambda tokens, sep: sep.join(tokens), st.lists(TOKENS, max_size=6), SEPARATOR),
    max_size=12,
).map(lambda lines: "\n".join(lines))
DATA_TEXT = LINES | st.text()


def build(raw: RawSequences | None) -> None:
    if raw is None:
        return
    assert isinstance(raw, RawSequences)
    for min_user, min_item in ((0, 1), (3, 2)):
        data = accepts_or_clue_error(build_sequence_data, raw, min_user, min_item, "fuzz")
        assert data is None or isinstance(data, SequenceData)


def read_bytes(scratch: Path, payload: bytes, reader: Any, *args: Any) -> RawSequences | None:
    path = scratch / "data.txt"
    path.write_bytes(payload)
    try:
        return reader(path, *args)  # type: ignore[no-any-return]
    except DataError:
        return None


@FUZZ
@given(payload=st.binary() | DATA_TEXT.map(lambda text: text.encode("utf-8")))
def test_arbitrary_sequence_file(scratch: Path, payload: bytes) -> None:
    build(read_bytes(scratch, payload, read_sequence_file))


@FUZZ
@given(
    payload=st.binary() | DATA_TEXT.map(lambda text: text.encode("utf-8")),
    separator=st.sampled_from(["auto", "::", "tab", "comma", "whitespace"]),
    columns=st.none()
    | st.lists(st.sampled_from(["user", "item", "timestamp", "rating", "x"]), max_size=5),
    skip_header=st.booleans(),
)
def test_arbitrary_interaction_table(
    scratch: Path, payload: bytes, separator: str, columns: list[str] | None, skip_header: bool
) -> None:
    build(read_bytes(scratch, payload, read_interaction_table, columns, separator, skip_header))


# --------------------------------------------------------------------------- id tokens

ID_TOKEN = st.text(
    st.characters(codec="utf-8", exclude_categories=("Zs", "Zl", "Zp", "Cc", "Cs")),
    min_size=1,
    max_size=60,
) | st.from_regex(r"[-+]?[0-9_\u0660-\u0669\uff10-\uff19]{1,30}", fullmatch=True)


@FUZZ
@given(token=ID_TOKEN)
def test_an_id_is_ascii_digits_or_an_error_naming_it(scratch: Path, token: str) -> None:
    """Any token as an item id: read as int(token) exactly when it is ``-?[0-9]+`` in 64
    bits; otherwise a DataError that quotes at most 40 of its characters."""
    import re

    if token.split() != [token]:
        return  # whitespace would split it into several tokens
    path = scratch / "ids.txt"
    path.write_text(f"1 2 {token}\n", encoding="utf-8")
    try:
        raw = read_sequence_file(path)
    except DataError as exc:
        message = str(exc)
        assert "line 1: item id" in message
        assert token[:41] not in message or len(token) <= 40
        return
    assert re.fullmatch(r"-?[0-9]+", token, flags=re.ASCII)
    assert raw.sequences == [[2, int(token)]]


def test_a_key_that_folds_into_another_is_a_duplicate_not_a_crash() -> None:
    """The example Hypothesis found: PyYAML dumps the key "\\x85" so that it reads back
    as " ", the same as the other key."""
    text = yaml.safe_dump({" ": 1, "\x85": 2}, allow_unicode=True)
    with pytest.raises(RecipeError, match="appears twice"):
        parse_yaml(text, "fuzz.yaml")
