"""What pre-training does to the encoder's own user vectors, measured every epoch.

>>> monitor = RepresentationMonitor.from_sequences(sequences, 50, views)  # doctest: +SKIP
>>> monitor.measure(encoder)                                              # doctest: +SKIP
{'rep_erank': 31.4, 'rep_std': 0.81, 'rep_align': 0.42, 'rep_uniform': -2.9}

An objective's own loss and its ``z_std`` (the spread of the *projector* output) cannot see a
collapsed encoder: the projector ends in a BatchNorm that standardises every output
dimension, so ``z_std`` stays near 1 while the vectors the encoder hands to the downstream
tasks shrink to a few directions. This monitor looks at those vectors themselves: the user
vectors the run's head reads (``[UR]`` output or the mean of the item states,
``finetune.head.user_vector``) of a fixed, seeded sample of users, each encoded from the last
``max_len`` items of its pre-training sequence.

Measured (formulas: :mod:`clue_fw.metrics.representation`), each a column of ``history.csv``:

* ``rep_erank``: the effective rank of the L2-normalised vectors, centred (1 to ``dim``):
  how many directions the users' differences use. Dimensional collapse drives it towards 1;
  0 when every user gets the same vector.
* ``rep_std``: the collapse monitor ``mean_k std_i(z_ik) * sqrt(dim)`` of the L2-normalised
  vectors; 0 when every user gets the same vector, about 1 when they spread evenly.
* ``rep_align``: alignment (Wang and Isola, ICML 2020): the mean squared distance of the
  two L2-normalised vectors of each user drawn through the recipe's pre-training views in
  train mode (both passes also differ by their dropout masks); 0 to 4, lower is better.
* ``rep_uniform``: uniformity: ``log mean exp(-2 ||x_i - x_j||^2)`` over every pair of the
  sample's L2-normalised eval-mode vectors; 0 when all are equal, lower is more uniform.

The encoder goes to eval mode and back; the two views draw their randomness from a fixed
seed inside :func:`torch.random.fork_rng`, so measuring changes neither the training run's
random stream nor its results, and every process of a data-parallel run measures the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from clue_fw.components import SequenceEncoder, user_vectors, view_pair
from clue_fw.data.csr import Csr
from clue_fw.metrics import representation as measures

DEFAULT_SAMPLE_USERS = 1024
COLLAPSE_SHARE = 0.1
"""An effective rank below this share of the dimension is reported as collapse."""
MEASURES = ("rep_erank", "rep_std", "rep_align", "rep_uniform")


def sample_windows(sequences: Csr, max_len: int, sample_users: int, seed: int) -> torch.Tensor:
    """``[S, max_len]``: the last ``max_len`` items of a seeded sample of at most
    ``sample_users`` non-empty rows of ``sequences`` (all of them when there are fewer)."""
    if sample_users < 2:
        raise ValueError(f"sample_users must be at least 2, not {sample_users}")
    lengths = sequences.lengths
    rows = torch.nonzero(lengths > 0).flatten()
    if rows.numel() > sample_users:
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(rows.numel(), generator=generator)[:sample_users]
        rows = rows[chosen.to(rows.device)].sort().values
    return sequences.gather_windows(rows, lengths[rows], max_len)


def view_pairs(
    encoder: SequenceEncoder,
    windows: torch.Tensor,
    view: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    how: str,
    seed: int,
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two train-mode user vectors (``[R, d]`` each, float32, on ``windows``' device) of every
    window, each pass through ``view`` and its own dropout masks; seeded by ``seed``, without
    touching the caller's random stream. The encoder's mode is restored afterwards."""
    device = windows.device
    generator = torch.Generator(device=device).manual_seed(seed)
    devices = [device.index or 0] if device.type == "cuda" else []
    was_training = encoder.training
    firsts, seconds = [], []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)  # the dropout masks
        encoder.train()
        try:
            for start in range(0, windows.shape[0], batch_size):
                batch = windows[start : start + batch_size]
                first, second = view_pair(view, batch, generator)
                firsts.append(user_vectors(encoder(first), first, how).float())
                seconds.append(user_vectors(encoder(second), second, how).float())
        finally:
            encoder.train(was_training)
    return torch.cat(firsts), torch.cat(seconds)


def eval_vectors(
    encoder: SequenceEncoder, windows: torch.Tensor, how: str, batch_size: int = 512
) -> torch.Tensor:
    """Eval-mode user vectors ``[R, d]`` (float32) of ``windows``; the mode is restored."""
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            parts = [
                user_vectors(encoder(windows[s : s + batch_size]), windows[s : s + batch_size], how)
                for s in range(0, windows.shape[0], batch_size)
            ]
    finally:
        encoder.train(was_training)
    return torch.cat(parts).float()


@dataclass
class RepresentationMonitor:
    """The per-epoch measures of a fixed sample of users (see the module docstring).

    ``windows``: ``[S, n]`` left-padded item windows (S >= 2); ``view``: the pre-training
    views (a callable ``(items, generator) -> items``); ``how``: ``"ur"`` or ``"mean"``.
    """

    windows: torch.Tensor
    view: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    how: str = "ur"
    seed: int = 0

    @classmethod
    def from_sequences(
        cls,
        sequences: Csr,
        max_len: int,
        view: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
        how: str = "ur",
        seed: int = 0,
        sample_users: int = DEFAULT_SAMPLE_USERS,
    ) -> RepresentationMonitor:
        return cls(sample_windows(sequences, max_len, sample_users, seed), view, how, seed)

    def measure(self, encoder: SequenceEncoder) -> dict[str, float]:
        """``rep_erank``, ``rep_std``, ``rep_align`` and ``rep_uniform`` of ``encoder`` now."""
        windows = self.windows.to(next(encoder.parameters()).device)
        vectors = eval_vectors(encoder, windows, self.how)
        first, second = view_pairs(encoder, windows, self.view, self.how, self.seed)
        normalised = measures.normalize(vectors)
        differences = normalised - normalised.mean(dim=0, keepdim=True)
        found = {
            # Every user the same vector: no direction of difference at all.
            "rep_erank": measures.effective_rank(normalised, centre=True)
            if bool(differences.abs().amax() > 0)
            else 0.0,
            "rep_std": measures.collapse_std(vectors),
            "rep_align": measures.alignment(first, second),
            "rep_uniform": measures.uniformity(vectors),
        }
        return {key: round(value, 4) for key, value in found.items()}


def collapse_warning(row: dict[str, Any], dim: int, stage: str = "pretrain") -> str | None:
    """The warning for a history row whose ``rep_erank`` is below a tenth of ``dim``."""
    erank = row.get("rep_erank")
    if not isinstance(erank, (int, float)) or erank >= COLLAPSE_SHARE * dim:
        return None
    return (
        f"warning: {stage} epoch {row.get('epoch')}: the user vectors have collapsed to an "
        f"effective rank of {erank:.1f} of {dim} dimensions (below {COLLAPSE_SHARE:.0%}); they "
        "carry little the downstream tasks can use. The objective's own loss and z_std do not "
        "show this. See docs/results.md (collapse) for the causes and the objectives that "
        "avoid it."
    )
