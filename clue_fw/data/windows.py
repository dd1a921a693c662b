"""Training windows: which part of each user's history a training stage sees.

Pre-training and next-item fine-tuning both train on fixed-width windows cut from
each user's (training) sequence; ``train.history`` picks which windows:

- ``recent``: one window per user, its ``width`` most recent items (the paper);
- ``all``: windows ending every ``stride`` items from the end of the sequence, so
  that every interaction lies in at least one window.

Both stages call :func:`training_windows`, so a recipe's ``history`` means the same
thing in both.

>>> from clue_fw.data.csr import Csr
>>> rows = Csr.from_lists([[1, 2, 3, 4, 5], [6]])
>>> training_windows(rows, 3, "recent", stride=3, min_items=1).tolist()
[[3, 4, 5], [0, 0, 6]]
>>> training_windows(rows, 3, "all", stride=3, min_items=2).tolist()
[[3, 4, 5], [0, 1, 2]]
"""

from __future__ import annotations

import torch

from clue_fw.data.csr import Csr

HISTORIES = ("recent", "all")


def training_windows(
    sequences: Csr, width: int, history: str, *, stride: int, min_items: int
) -> torch.Tensor:
    """``[E, width]`` left-padded windows of ``sequences`` that hold ``>= min_items`` items.

    ``history="recent"`` gives each row's last ``width`` values (rows with fewer than
    ``min_items`` values are dropped). ``history="all"`` gives the windows ending at
    ``len, len - stride, len - 2*stride, ...`` down to ``min_items``
    (:meth:`Csr.covering_windows`): ``stride == width`` puts every value in exactly one
    window, ``stride == 1`` makes every prefix end one window.
    """
    if history not in HISTORIES:
        raise ValueError(f"history must be one of {HISTORIES}, got {history!r}")
    if width < 1 or stride < 1 or min_items < 1:
        raise ValueError(
            f"width, stride and min_items must be positive, got {width}, {stride}, {min_items}"
        )
    if history == "recent":
        windows = sequences.recent_windows(width)
    else:
        windows = sequences.covering_windows(width, stride=stride, min_end=min_items)
    return windows[(windows != 0).sum(dim=1) >= min_items]
