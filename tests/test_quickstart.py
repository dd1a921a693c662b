"""The quickstart recipe learns: recall@10 far above a random ranker, in a few seconds."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from clue_fw.recipe import apply_overrides, read_recipe_file, validate_recipe
from clue_fw.runner import run

QUICKSTART = Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml"


def test_quickstart_beats_random_ranker(tmp_path: Path) -> None:
    data = read_recipe_file(QUICKSTART)
    data = apply_overrides(
        data, ["device=cpu", "pretrain.train.epochs=1", "finetune.train.epochs=5"]
    )
    recipe = validate_recipe(data, str(QUICKSTART))
    assert recipe.data.format == "synthetic"  # needs no data root
    result = run(recipe, out=tmp_path / "run", console=Console(file=io.StringIO()))

    num_items = result.metrics["data"]["items"]
    random_recall = 10 / num_items
    assert num_items == recipe.data.num_items == 200
    for split in ("valid", "test"):
        assert result.metrics[split]["recall@10"] > 3 * random_recall, result.metrics
    assert result.metrics["epochs"] == 5
    assert (tmp_path / "run" / "metrics.json").is_file()
