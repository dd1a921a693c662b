"""The representation measures of a finished run's user vectors (``clue analyze``).

>>> from clue_fw import load_run
>>> run = load_run("runs/quickstart/20261130-120000-ab12", device="cpu")  # doctest: +SKIP
>>> analyze_run(run).measures["effective_rank"]                            # doctest: +SKIP
11.3

What is measured, exactly (formulas: :mod:`clue_fw.metrics.representation`):

* **users**: the run's own users, each encoded from the history its test split reads
  (:meth:`~clue_fw.inference.LoadedRun.embed_run_users`), with the vector the run's head
  reads (``[UR]`` output or mean of the item states), the encoder in eval mode.
* **effective rank**, **collapse monitor** (``z_std``), **uniformity** and the 2-D PCA
  are computed on those vectors (the effective rank on the raw vectors, the others on
  L2-normalised ones). Uniformity is exact over every pair of the (at most
  ``max_users``, a seeded sample) users.
* **alignment** needs positive pairs: each sampled user's window goes twice through the
  encoder in *train* mode, each time through the run's own pre-training views
  (``pretrain.views``, the same views pre-training drew from, e.g. ``dropout``: the two
  passes differ only by their dropout masks; ``mask``/``crop``/``permute``: two random
  views). Randomness comes from ``seed``, so the numbers repeat. The encoder is back in
  eval mode afterwards. A run that did not pre-train has no views: its alignment is
  ``None`` (``null``), and the other measures are of its fine-tuned encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.components import user_vectors
from clue_fw.data.csr import Csr
from clue_fw.metrics import representation as measures
from clue_fw.recipe import pretrains

DEFAULT_MAX_USERS = 10_000


@dataclass(frozen=True)
class RunAnalysis:
    """The measures (a JSON-ready mapping), the users' raw ids and vectors (``[U, d]``),
    and the singular values of the vectors (largest first)."""

    measures: dict[str, Any]
    users: list[int]
    vectors: torch.Tensor
    singular_values: torch.Tensor
    notes: dict[str, str] = field(default_factory=dict)


def sample_rows(count: int, limit: int, seed: int) -> torch.Tensor:
    """All of ``range(count)``, or a seeded sample of ``limit`` of them (sorted)."""
    if count <= limit:
        return torch.arange(count)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:limit].sort().values


def positive_pairs(
    run: Any, histories: Csr, rows: torch.Tensor, seed: int, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two train-mode encodings (``[R, d]`` each, float32, CPU) of the windows of
    ``rows`` of ``histories``, each through the run's pre-training views."""
    recipe = run.recipe
    encoder = run.encoder
    device = run.device
    views = ViewPipeline.from_specs(list(recipe.pretrain.views), run.context).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    lengths = histories.lengths
    firsts, seconds = [], []
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)  # the dropout masks
        encoder.train()
        try:
            for start in range(0, rows.numel(), batch_size):
                chosen = rows[start : start + batch_size]
                windows = histories.gather_windows(chosen, lengths[chosen], run.max_len)
                windows = windows.to(device)
                pair = []
                for _ in range(2):
                    view = views(windows, generator)
                    pair.append(user_vectors(encoder(view), view, run.user_vector).float().cpu())
                firsts.append(pair[0])
                seconds.append(pair[1])
        finally:
            encoder.eval()
    return torch.cat(firsts), torch.cat(seconds)


def analyze_run(
    run: Any,
    *,
    max_users: int = DEFAULT_MAX_USERS,
    seed: int = 0,
    batch_size: int | None = None,
) -> RunAnalysis:
    """Alignment, uniformity, effective rank and collapse monitor of ``run``'s users
    (``run``: a :class:`~clue_fw.inference.LoadedRun`)."""
    if type(max_users) is not int or max_users < 2:
        raise ValueError(f"max_users must be a whole number >= 2, not {max_users!r}")
    users, histories = run.run_user_histories()
    vectors = run.embed_run_users(batch_size=batch_size).vectors
    if vectors.shape[0] < 2:
        raise ValueError(f"the run has {vectors.shape[0]} user(s); the measures need two")
    rows = sample_rows(len(users), max_users, seed)
    sample = vectors[rows]
    singular = measures.singular_values(vectors)
    # Alignment needs the run's own pre-training views to make positive pairs; a run that
    # did not pre-train has none, and inventing views would measure something else.
    views = [view.kind for view in run.recipe.pretrain.views] if pretrains(run.recipe) else []
    alignment: float | None = None
    if views:
        first, second = positive_pairs(run, histories, rows, seed, batch_size or 512)
        alignment = measures.alignment(first, second)
    result = {
        "users": len(users),
        "users_sampled": int(rows.numel()),
        "dim": int(vectors.shape[1]),
        "user_vector": run.user_vector,
        "views": views,
        "alignment": alignment,
        "uniformity": measures.uniformity(sample),
        "effective_rank": measures.effective_rank(vectors),
        "collapse_std": measures.collapse_std(vectors),
        "seed": seed,
    }
    notes = {
        "alignment": "mean ||f(x) - f(y)||^2 of L2-normalised vectors; (x, y): two train-mode "
        f"passes of each sampled user through the run's pre-training views ({'+'.join(views)})"
        if views
        else "null: the run did not pre-train, so it has no views to make positive pairs with; "
        "the other measures are of its fine-tuned encoder",
        "uniformity": "log mean exp(-2 ||f(x_i) - f(x_j)||^2) over all pairs i < j of the "
        "sampled users' L2-normalised eval-mode vectors",
        "effective_rank": "exp of the entropy of the normalised singular values of the "
        "[users, dim] matrix of eval-mode vectors (not centred); 1 to dim",
        "collapse_std": "mean per-dimension std of the L2-normalised vectors times sqrt(dim), "
        "as z_std in clue_fw.objectives.clue; 0 is collapse",
    }
    return RunAnalysis(result, users, vectors, singular, notes)
