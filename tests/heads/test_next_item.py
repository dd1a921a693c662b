"""Tests for clue_fw.heads.next_item: windows, loss and full-ranking metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import BuildContext, EncoderOutput, SequenceEncoder, TaskData
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.heads.next_item import NextItemHead, NextItemSpec, next_item_windows
from clue_fw.metrics.ranking import finalize_sums, reference_metrics

NUM_ITEMS = 6
# next_item builds from the context alone; its task data is not read
NO_TASK_DATA = TaskData(SequenceData(Csr.from_lists([[1]]), 1, np.array([1]), np.array([1])))


class FixedScores(SequenceEncoder):
    """Scores item i with ``user_scores[i]`` (one-hot item embeddings), whatever the input."""

    def __init__(self, user_scores: list[float]) -> None:
        super().__init__()
        self.num_items = NUM_ITEMS
        self.dim = NUM_ITEMS + 2
        self.max_len = 4
        self.item_embedding = nn.Embedding(self.dim, self.dim)
        with torch.no_grad():
            self.item_embedding.weight.copy_(torch.eye(self.dim))
        self.user_scores = torch.tensor(user_scores + [0.0] * (self.dim - len(user_scores)))

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        user = self.user_scores.expand(items.shape[0], -1)
        return EncoderOutput(torch.zeros(*items.shape, self.dim), user)


def head(exclude_seen: str, ties: str = "pessimistic") -> NextItemHead:
    encoder = FixedScores([0.0])
    return NextItemSpec(exclude_seen=exclude_seen, ks=[1, 3], ties=ties).build(
        BuildContext(NUM_ITEMS, 4), encoder, NO_TASK_DATA
    )


# item:        0 (padding)  1    2    3    4    5    6
SCORES = [100.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


def metric_batch(target: int, seen: list[int]) -> dict[str, torch.Tensor]:
    return {
        "items": torch.tensor([[0, 1, 2, 3]]),
        "target": torch.tensor([target]),
        "seen_row": torch.zeros(len(seen), dtype=torch.long),
        "seen_value": torch.tensor(seen, dtype=torch.long),
    }


def rank_of(exclude_seen: str, target: int, seen: list[int]) -> float:
    h = head(exclude_seen)
    sums = h.metric_sums(FixedScores(SCORES), metric_batch(target, seen))
    assert float(sums["count"]) == 1
    mrr = float(sums["mrr@3"])
    return 1 / mrr if mrr else float("inf")


def test_padding_is_never_ranked() -> None:
    # item 0 scores 100 but is padding: item 1 is still first
    assert rank_of("none", target=1, seen=[]) == 1
    assert rank_of("none", target=3, seen=[]) == 3


def test_exclude_seen_masks_seen_items() -> None:
    assert rank_of("none", target=4, seen=[1, 2]) == float("inf")  # rank 4 > 3
    assert rank_of("history", target=4, seen=[1, 2]) == 2


def test_repeated_target_is_a_miss_under_history() -> None:
    # the target itself is in the history: `history` masks it like every other seen item
    assert rank_of("history", target=3, seen=[3, 1]) == float("inf")
    assert rank_of("history", target=1, seen=[1]) == float("inf")
    # `none` ranks everything, the seen items above the target included
    assert rank_of("none", target=3, seen=[3, 1]) == 3


def test_metric_sums_against_reference() -> None:
    h = head("history")
    batch = {
        "items": torch.zeros(4, 4, dtype=torch.long),
        "target": torch.tensor([1, 4, 6, 2]),
        # row 0 saw nothing, row 1 saw 2 and 3, row 2 saw 1, 2, 3, row 3 saw 2 (its target)
        "seen_row": torch.tensor([1, 1, 2, 2, 2, 3]),
        "seen_value": torch.tensor([2, 3, 1, 2, 3, 2]),
    }
    metrics = h.finalize(h.metric_sums(FixedScores(SCORES), batch))
    ranks = [1, 2, 3, float("inf")]  # row 2: 4 and 5 above 6; row 3: a masked repeat
    for k in (1, 3):
        for name in ("mrr", "recall", "ndcg"):
            expected = np.mean([reference_metrics(r, k)[name] for r in ranks])
            assert metrics[f"{name}@{k}"] == pytest.approx(expected)


def test_untied_output_layer_scores_num_items_plus_one() -> None:
    context = BuildContext(NUM_ITEMS, 4)
    encoder = TransformerSpec(dim=8, heads=2, blocks=1).build(context)
    h = NextItemSpec(tie_weights=False).build(context, encoder, NO_TASK_DATA)
    assert h.output is not None and h.output.out_features == NUM_ITEMS + 1
    scores = h.logits(encoder, torch.randn(2, 8))
    assert scores.shape == (2, NUM_ITEMS + 1)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()


# --------------------------------------------------------------------------- windows and tasks


def random_rows(seed: int, count: int = 25) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 40, size=int(rng.integers(1, 15))).tolist() for _ in range(count)]


@pytest.mark.parametrize("seed", [0, 1])
def test_all_history_every_position_pairs_each_transition_once(seed: int) -> None:
    rows = random_rows(seed)
    width = 5  # n + 1
    windows = next_item_windows(Csr.from_lists(rows), width, "all", every_position=True)
    pairs = [
        (w[j], w[j + 1]) for w in windows.tolist() for j in range(width - 1) if w[j] and w[j + 1]
    ]
    # every (input, target) transition of every user appears exactly once
    expected = [(row[t - 1], row[t]) for row in rows for t in range(1, len(row))]
    assert sorted(pairs) == sorted(expected)
    # and each window's real items are consecutive items of one user (no gaps)
    for w in windows.tolist():
        real = [v for v in w if v]
        assert w[-len(real) :] == real


@pytest.mark.parametrize("seed", [0, 1])
def test_all_history_ur_only_uses_every_prefix(seed: int) -> None:
    rows = random_rows(seed)
    width = 4
    windows = next_item_windows(Csr.from_lists(rows), width, "all", every_position=False)
    got = sorted(tuple(w) for w in windows.tolist())
    expected = sorted(
        tuple([0] * (width - len(row[max(0, e - width) : e])) + row[max(0, e - width) : e])
        for row in rows
        for e in range(2, len(row) + 1)
    )
    assert got == expected


def test_recent_history_one_window_per_user() -> None:
    rows = [[1, 2, 3, 4, 5, 6], [7, 8], [9]]
    windows = next_item_windows(Csr.from_lists(rows), 4, "recent", every_position=True)
    # the one-item user has no (input, target) pair and is dropped
    assert windows.tolist() == [[3, 4, 5, 6], [0, 0, 7, 8]]


def test_make_task_leave_one_out_examples() -> None:
    data = SequenceData(
        Csr.from_lists([[1, 2, 3, 4, 5], [6, 1, 2]]),
        num_items=6,
        user_ids=np.array([10, 20]),
        item_ids=np.arange(1, 7),
    )
    context = BuildContext(num_items=6, max_len=3)
    task = NextItemSpec().make_task(TaskData(data), context, "recent")
    assert task.valid.tensors["target"].tolist() == [4, 1]
    assert task.test.tensors["target"].tolist() == [5, 2]
    assert task.valid.tensors["items"].tolist() == [[1, 2, 3], [0, 0, 6]]
    assert task.test.tensors["items"].tolist() == [[2, 3, 4], [0, 6, 1]]
    assert task.train.tensors["window"].tolist() == [[0, 1, 2, 3]]  # user 2 has one train item
    valid_batch = next(task.valid.batches(10))
    assert valid_batch["seen_row"].tolist() == [0, 0, 0, 1]
    assert valid_batch["seen_value"].tolist() == [1, 2, 3, 6]  # validation item not seen yet
    no_seen = NextItemSpec(exclude_seen="none").make_task(TaskData(data), context, "recent")
    assert "seen_row" not in next(no_seen.valid.batches(10))


@pytest.mark.parametrize("positions", ["all", "ur"])
def test_loss_trains(positions: str) -> None:
    torch.manual_seed(0)
    context = BuildContext(num_items=12, max_len=5)
    encoder = TransformerSpec(dim=16, heads=2, blocks=1, dropout=0.0).build(context)
    h = NextItemSpec(loss_positions=positions).build(context, encoder, NO_TASK_DATA)
    windows = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6]])
    optimizer = torch.optim.Adam(encoder.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = h.loss(encoder, {"window": windows}).loss
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_ks_validation_and_monitor() -> None:
    spec = NextItemSpec(ks=[20, 5, 5])
    assert spec.ks == [5, 20]
    assert spec.monitor_default == "ndcg@5"
    with pytest.raises(ValueError):
        NextItemSpec(ks=[0])
    with pytest.raises(ValueError):
        NextItemSpec(ks=[])


def test_finalize_matches_ranking_module() -> None:
    sums = {"count": torch.tensor(2.0), "recall@10": torch.tensor(1.0)}
    assert head("history").finalize(sums) == finalize_sums(sums) == {"recall@10": 0.5}


# --------------------------------------------------------------------------- protocol (issue 9)


class SeenOracle(SequenceEncoder):
    """Scores the items of its input window 1 (the most recent highest), all else 0.

    "Predict a seen item": on data where targets repeat, it finds the target among the
    few items it scores above the rest; exclusion must not hand it the answer.
    """

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.dim = num_items + 1
        self.max_len = 4
        self.item_embedding = nn.Embedding(num_items + 2, self.dim)
        with torch.no_grad():
            self.item_embedding.weight.copy_(torch.eye(num_items + 2, self.dim))

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        recency = torch.linspace(1.0, 2.0, items.shape[1]).expand_as(items)
        user = torch.zeros(items.shape[0], self.dim).scatter_reduce(
            1, items, recency, reduce="amax"
        )
        user[:, 0] = 0.0
        return EncoderOutput(torch.zeros(*items.shape, self.dim), user)


class Constant(SequenceEncoder):
    """Scores every item ``value`` (NaN for a NaN model)."""

    def __init__(self, num_items: int, value: float) -> None:
        super().__init__()
        self.num_items = num_items
        self.dim = 1
        self.max_len = 4
        self.item_embedding = nn.Embedding(num_items + 2, 1)
        with torch.no_grad():
            self.item_embedding.weight.fill_(1.0)
        self.value = value

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        user = torch.full((items.shape[0], 1), self.value)
        return EncoderOutput(torch.zeros(*items.shape, 1), user)


REPEAT_ITEMS = 30


def repeat_data(users: int = 40, seed: int = 0) -> SequenceData:
    """Sequences whose validation and test targets both repeat an earlier item."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(users):
        history = rng.choice(np.arange(1, REPEAT_ITEMS + 1), size=6, replace=False).tolist()
        # valid target repeats a training item; test target repeats one too
        rows.append(history + [history[int(rng.integers(0, 6))], history[int(rng.integers(0, 6))]])
    return SequenceData(
        Csr.from_lists(rows),
        REPEAT_ITEMS,
        np.arange(users),
        np.arange(1, REPEAT_ITEMS + 1),
    )


def protocol_metrics(
    encoder: SequenceEncoder, data: SequenceData, split: str = "test", **fields: object
) -> dict[str, float]:
    from clue_fw.training.loop import evaluate

    spec = NextItemSpec(ks=[1, 5, 10], **fields)
    context = BuildContext(data.num_items, 4)
    task = spec.make_task(TaskData(data), context, "recent")
    h = spec.build(context, encoder, TaskData(data))
    return evaluate(h, encoder, task.split(split), batch_size=7, split=split)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_every_repeated_target_is_a_miss_under_history(split: str) -> None:
    data = repeat_data()
    torch.manual_seed(0)
    models = {
        "oracle": SeenOracle(REPEAT_ITEMS),
        "transformer": TransformerSpec(dim=8, heads=2, blocks=1).build(
            BuildContext(REPEAT_ITEMS, 4)
        ),
    }
    for name, encoder in models.items():
        metrics = protocol_metrics(encoder, data, split, exclude_seen="history")
        assert set(metrics.values()) == {0.0}, (name, metrics)
    # the oracle predicts seen items, so without exclusion it scores well
    assert protocol_metrics(models["oracle"], data, split, exclude_seen="none")["recall@10"] > 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_gains_nothing_from_exclusion(seed: int) -> None:
    """On data mixing repeated and new targets, masking the history never helps an
    oracle that ranks seen items first: every metric under `history` <= under `none`."""
    data = repeat_data(seed=seed)
    rng = np.random.default_rng(seed)
    rows = [data.sequences.row(u).tolist() for u in range(data.num_users)]
    for row in rows[::2]:  # every other user: a new, unseen test target
        unseen = sorted(set(range(1, REPEAT_ITEMS + 1)) - set(row))
        row[-1] = int(rng.choice(unseen))
    mixed = SequenceData(Csr.from_lists(rows), REPEAT_ITEMS, data.user_ids, data.item_ids)
    for ties in ("pessimistic", "average"):
        history = protocol_metrics(
            SeenOracle(REPEAT_ITEMS), mixed, exclude_seen="history", ties=ties
        )
        everything = protocol_metrics(
            SeenOracle(REPEAT_ITEMS), mixed, exclude_seen="none", ties=ties
        )
        for name, value in history.items():
            assert value <= everything[name] + 1e-12, (ties, name, history, everything)


def test_constant_model_gets_nothing_or_chance() -> None:
    data = repeat_data()
    encoder = Constant(REPEAT_ITEMS, 0.5)
    pessimistic = protocol_metrics(encoder, data, exclude_seen="none")
    assert set(pessimistic.values()) == {0.0}
    average = protocol_metrics(encoder, data, exclude_seen="none", ties="average")
    for k in (1, 5, 10):
        assert average[f"recall@{k}"] == pytest.approx(k / REPEAT_ITEMS, abs=1e-12)
        expected_mrr = sum(1 / r for r in range(1, k + 1)) / REPEAT_ITEMS
        assert average[f"mrr@{k}"] == pytest.approx(expected_mrr, rel=1e-12)
    # under `history`, N = the items the user has not seen; non-repeating targets
    fresh = SequenceData(
        Csr.from_lists([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]), 10, np.arange(2), np.arange(1, 11)
    )
    average = protocol_metrics(Constant(10, 0.5), fresh, exclude_seen="history", ties="average")
    # test inputs: 4 seen items each, 6 candidates (the target among them)
    assert average["recall@5"] == pytest.approx(5 / 6, abs=1e-12)
    assert average["recall@1"] == pytest.approx(1 / 6, abs=1e-12)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_nan_model_is_refused_naming_split_and_batch(split: str) -> None:
    from clue_fw.errors import EvaluationError

    with pytest.raises(EvaluationError) as info:
        protocol_metrics(Constant(REPEAT_ITEMS, float("nan")), repeat_data(), split)
    message = str(info.value)
    assert f"NaN scores in the {split} split" in message
    assert "batch 1/6" in message  # 40 users, batches of 7
    assert "learning rate" in message and "checkpoint" in message


def test_one_nan_batch_is_found() -> None:
    """Only the users of the third batch score NaN: the error names batch 3."""
    from clue_fw.errors import EvaluationError

    class NanForOne(SeenOracle):
        """The oracle, but NaN for the one user whose input window is ``poison``."""

        poison = torch.zeros(4, dtype=torch.long)

        def forward(self, items: torch.Tensor) -> EncoderOutput:
            output = super().forward(items)
            user = output.user.clone()
            user[(items == self.poison).all(dim=1)] = float("nan")
            return EncoderOutput(output.states, user)

    data = repeat_data()
    task = NextItemSpec().make_task(TaskData(data), BuildContext(REPEAT_ITEMS, 4), "recent")
    windows = task.test.tensors["items"]
    encoder = NanForOne(REPEAT_ITEMS)
    encoder.poison = windows[16]  # in the third batch of 7
    assert int((windows == windows[16]).all(dim=1).sum()) == 1
    with pytest.raises(EvaluationError, match=r"test split: batch 3/6 \(batch size 7\) has 1 row"):
        protocol_metrics(encoder, data, "test")


def test_old_boolean_spellings_load_with_a_warning() -> None:
    for old, new in ((True, "history"), (False, "none")):
        with pytest.warns(FutureWarning, match=f"exclude_seen: {new}"):
            assert NextItemSpec(exclude_seen=old).exclude_seen == new
    with pytest.raises(ValueError, match="'history' or 'none'"):
        NextItemSpec(exclude_seen="maybe")
    with pytest.raises(ValueError, match="'pessimistic' or 'average'"):
        NextItemSpec(ties="random")


def test_old_recipe_file_loads_with_a_warning(
    tmp_path: Path, tiny_recipe: dict[str, object]
) -> None:
    from clue_fw.recipe import load_recipe

    tiny_recipe["finetune"]["head"]["exclude_seen"] = True  # type: ignore[index]
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe), encoding="utf-8")
    with pytest.warns(
        FutureWarning, match="exclude_seen: true is deprecated; write exclude_seen: history"
    ):
        recipe = load_recipe(path)
    assert recipe.finetune.head.exclude_seen == "history"
    assert recipe.finetune.head.model_dump()["exclude_seen"] == "history"


def test_end_to_end_repeated_targets_score_zero_under_history(
    tmp_path: Path, tiny_recipe: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole run on a sequence file whose every target repeats: test metrics are 0."""
    import io

    from rich.console import Console

    from clue_fw import run, validate_recipe

    data = repeat_data(users=60)
    lines = [
        " ".join(map(str, [u + 1, *data.sequences.row(u).tolist()])) for u in range(data.num_users)
    ]
    (tmp_path / "seq.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("CLUE_DATA_DIR", str(tmp_path))
    tiny_recipe["data"] = {"format": "sequences", "path": "seq.txt", "max_len": 6}
    del tiny_recipe["pretrain"]
    tiny_recipe["finetune"]["train"]["epochs"] = 1  # type: ignore[index]
    tiny_recipe["finetune"]["head"] = {"kind": "next_item", "exclude_seen": "history"}  # type: ignore[index]
    result = run(
        validate_recipe(tiny_recipe), out=tmp_path / "run", console=Console(file=io.StringIO())
    )
    for split in ("valid", "test"):
        assert set(result.metrics[split].values()) == {0.0}, result.metrics[split]


# --------------------------------------------------------------------------- item blocks, bf16


class IntegerModel(SequenceEncoder):
    """Small-integer item embeddings; the user vector is the sum of the window's. Every
    score is a small integer, exact in any summation order, and many of them tie."""

    def __init__(self, num_items: int, seed: int = 0) -> None:
        super().__init__()
        self.num_items = num_items
        self.dim = 5
        self.max_len = 4
        generator = torch.Generator().manual_seed(seed)
        self.item_embedding = nn.Embedding(num_items + 2, self.dim)
        with torch.no_grad():
            weight = torch.randint(-2, 3, (num_items + 2, self.dim), generator=generator)
            self.item_embedding.weight.copy_(weight.float())

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        user = self.item_embedding(items).sum(dim=1)
        return EncoderOutput(torch.zeros(*items.shape, self.dim), user)


@pytest.mark.parametrize("exclude_seen", ["history", "none"])
@pytest.mark.parametrize("ties", ["pessimistic", "average"])
@pytest.mark.parametrize("model", ["integer", "oracle", "constant"])
def test_item_blocks_give_the_metrics_of_one_score_matrix(
    exclude_seen: str, ties: str, model: str
) -> None:
    """Ties everywhere, seen items (repeated targets among them), batches of 7 users and
    blocks narrower than a batch: every metric is the same, to the bit."""
    data = repeat_data()
    encoders = {
        "integer": IntegerModel(REPEAT_ITEMS),
        "oracle": SeenOracle(REPEAT_ITEMS),
        "constant": Constant(REPEAT_ITEMS, 0.5),
    }
    encoder = encoders[model]
    fields = {"exclude_seen": exclude_seen, "ties": ties}
    for split in ("valid", "test"):
        expected = protocol_metrics(encoder, data, split, **fields)
        for item_block in (1, 4, 7, 30, 31):  # 31 columns: one block, the matrix path
            found = protocol_metrics(encoder, data, split, item_block=item_block, **fields)
            assert found == expected, (split, item_block)


def test_item_blocks_with_an_output_layer() -> None:
    """tie_weights: false scores with the head's own layer, in blocks too."""
    data = repeat_data()
    encoder = IntegerModel(REPEAT_ITEMS)
    spec = NextItemSpec(ks=[1, 5], tie_weights=False)
    context = BuildContext(data.num_items, 4)
    task = spec.make_task(TaskData(data), context, "recent")
    whole = spec.build(context, encoder, TaskData(data))
    with torch.no_grad():
        whole.output.weight.copy_(torch.randint(-3, 4, whole.output.weight.shape).float())
    blocked = NextItemSpec(ks=[1, 5], tie_weights=False, item_block=6).build(
        context, encoder, TaskData(data)
    )
    blocked.load_state_dict(whole.state_dict())
    batch = next(iter(task.test.batches(40)))
    expected = whole.metric_sums(encoder, batch)
    found = blocked.metric_sums(encoder, batch)
    assert found.keys() == expected.keys()
    assert all(torch.equal(found[name], expected[name]) for name in expected)


def test_a_nan_model_is_refused_in_blocks_too() -> None:
    from clue_fw.errors import EvaluationError

    with pytest.raises(EvaluationError, match=r"NaN scores in the test split: batch 1/6"):
        protocol_metrics(Constant(REPEAT_ITEMS, float("nan")), repeat_data(), item_block=4)


def test_bf16_scores_keep_the_order_of_well_separated_scores() -> None:
    """The oracle's scores (0 and recencies 1, 4/3, 5/3, 2) move by less than their gaps
    when rounded to bf16, so every metric is the float32 one."""
    data = repeat_data()
    for fields in ({}, {"item_block": 5}):
        expected = protocol_metrics(SeenOracle(REPEAT_ITEMS), data, exclude_seen="none")
        found = protocol_metrics(
            SeenOracle(REPEAT_ITEMS), data, exclude_seen="none", score_precision="bf16", **fields
        )
        assert found == expected


def test_scoring_options_stay_out_of_dumps_at_their_defaults() -> None:
    """Recipes that do not set item_block or score_precision keep their recipe sha256."""
    dumped = NextItemSpec().model_dump(mode="json")
    assert "item_block" not in dumped and "score_precision" not in dumped
    chosen = NextItemSpec(item_block=65_536, score_precision="bf16").model_dump(mode="json")
    assert chosen["item_block"] == 65_536 and chosen["score_precision"] == "bf16"
    assert NextItemSpec.model_validate(chosen) == NextItemSpec(
        item_block=65_536, score_precision="bf16"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"item_block": 0}, "item_block"),
        ({"item_block": 2.5}, "item_block"),
        ({"score_precision": "fp16"}, "score_precision"),
    ],
)
def test_bad_scoring_options_name_the_field(fields: dict[str, object], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        NextItemSpec(**fields)  # type: ignore[arg-type]


def test_item_blocks_shrink_the_evaluation_memory_estimate() -> None:
    from clue_fw.memory import StepSizes

    sizes = StepSizes(1_000_000, 50, 1024, torch.device("cpu"), "finetune.eval.batch_size", False)
    (whole,) = NextItemSpec().eval_parts(sizes)
    (blocked,) = NextItemSpec(item_block=65_536).eval_parts(sizes)
    assert whole.bytes == 1024 * 1_000_001 * 13
    assert blocked.bytes == 1024 * 65_536 * 13
    assert "finetune.head.item_block (set one)" in whole.lower
    assert "finetune.head.item_block" in blocked.lower
