"""A converged linear probe: multinomial logistic regression fitted by L-BFGS.

The objective, for features ``x_i`` (``[N, d]``), classes ``y_i`` and L2 strength
``l2``, is the mean cross-entropy plus a ridge penalty on the weights (not the bias)::

    J(W, b) = 1/N sum_i -log softmax(x_i W + b)_{y_i} + l2 / 2 * ||W||_F^2

It is strictly convex for ``l2 > 0``, so it has one minimum, which
:func:`fit_logistic` reaches with :class:`torch.optim.LBFGS` (strong-Wolfe line search,
full batch, float64) and certifies by the gradient: :attr:`LogisticFit.grad_norm` is the
largest absolute entry of the gradient of ``J`` at the returned weights, and
:attr:`LogisticFit.converged` says whether it is below the tolerance. This is the
standard linear evaluation of frozen representations (scikit-learn's
``LogisticRegression(solver="lbfgs")`` solves the same problem with ``C = 1 / (N l2)``).

>>> import torch
>>> x = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
>>> fit = fit_logistic(x, torch.tensor([0, 0, 1, 1]), 2, l2=0.1)
>>> fit.converged, fit.predict(torch.tensor([[3.0]])).tolist()
(True, [1])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DEFAULT_L2_GRID: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""L2 strengths tried on the validation split (strongest first in the search)."""
GRADIENT_TOLERANCE = 1e-6
"""A fit is converged when no entry of the objective's gradient exceeds this."""
MAX_ITERATIONS = 1000
PATH_PATIENCE = 2
"""The L2 path stops after this many strengths in a row that raise the validation loss."""
SMALL_PROBLEM = 1_000_000_000
"""Below this many multiply-adds per pass (N x d x C), fits run on one thread. L-BFGS
makes thousands of small passes, and torch's thread pool costs more than it saves on
them: a 4,832 x 64 x 21 fit took 17 times longer on two threads than on one, on a busy
2-core machine. ML-1M's largest probe (tf-idf of 3,706 items, 21 classes) is 376
million."""


@contextmanager
def threads_for(work: int) -> Iterator[None]:
    """One intra-op thread while inside when ``work`` is below :data:`SMALL_PROBLEM`."""
    before = torch.get_num_threads()
    if work >= SMALL_PROBLEM or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / scale`` with the mean and standard deviation of training rows; a
    constant feature (standard deviation 0) is only centred."""

    mean: torch.Tensor  # [d] float64
    scale: torch.Tensor  # [d] float64

    @classmethod
    def fit(cls, x: torch.Tensor) -> Standardizer:
        """Fit to ``x`` (``[N, d]``, the training users)."""
        x = x.double()
        mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False) if x.shape[0] > 1 else torch.zeros_like(mean)
        return cls(mean, torch.where(std > 0, std, torch.ones_like(std)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() - self.mean) / self.scale


@dataclass(frozen=True)
class LogisticFit:
    """Weights ``[d, C]`` and bias ``[C]`` (float64) of a fitted multinomial logistic
    regression, with what certifies the fit."""

    weight: torch.Tensor
    bias: torch.Tensor
    l2: float
    loss: float
    grad_norm: float
    iterations: int
    converged: bool

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C]`` float64 logits of ``x`` (``[N, d]``)."""
        return x.double() @ self.weight + self.bias

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).argmax(dim=1)


def objective(
    weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor, l2: float
) -> torch.Tensor:
    """``J(W, b)`` of the module docstring (a 0-d tensor)."""
    return F.cross_entropy(x @ weight + bias, y) + 0.5 * l2 * (weight * weight).sum()


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    l2: float,
    *,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = GRADIENT_TOLERANCE,
    start: LogisticFit | None = None,
) -> LogisticFit:
    """Minimise ``J`` for ``x`` (``[N, d]``) and ``y`` (``[N]`` indices < ``num_classes``).

    ``start`` warm-starts from another fit of the same shapes (a neighbour on the L2
    grid), which saves iterations and does not change the optimum.
    """
    if x.dim() != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(
            f"x must be [N, d] with N >= 1 and y [N], got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0 (the objective is then strictly convex), got {l2}")
    x = x.double()
    y = y.long()
    d = x.shape[1]
    if start is not None:
        weight = start.weight.clone().requires_grad_(True)
        bias = start.bias.clone().requires_grad_(True)
    else:
        weight = torch.zeros(d, num_classes, dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iterations,
        max_eval=max_iterations * 2,
        tolerance_grad=tolerance / 10,
        tolerance_change=1e-15,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective(weight, bias, x, y, l2)
        loss.backward()
        return loss

    with torch.enable_grad(), threads_for(x.shape[0] * d * num_classes):
        optimizer.step(closure)
        loss = objective(weight, bias, x, y, l2)
        grad_w, grad_b = torch.autograd.grad(loss, [weight, bias])
    grad_norm = float(torch.cat([grad_w.reshape(-1), grad_b]).abs().max())
    iterations = int(optimizer.state[optimizer._params[0]].get("n_iter", 0))
    return LogisticFit(
        weight.detach(),
        bias.detach(),
        float(l2),
        float(loss.detach()),
        grad_norm,
        iterations,
        grad_norm <= tolerance,
    )


@dataclass(frozen=True)
class GridPoint:
    """One L2 strength of the search: its validation accuracy and log-loss."""

    l2: float
    valid_acc: float
    valid_log_loss: float
    converged: bool


def select_l2(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_valid: torch.Tensor,
    y_valid: torch.Tensor,
    num_classes: int,
    grid: Sequence[float] = DEFAULT_L2_GRID,
    *,
    max_iterations: int = MAX_ITERATIONS,
    patience: int | None = PATH_PATIENCE,
) -> tuple[float, list[GridPoint]]:
    """The L2 strength of ``grid`` with the best validation accuracy (ties: the lower
    validation log-loss, then the stronger penalty), and the scores of every grid point
    fitted.

    Fits go from the strongest penalty to the weakest, each warm-started from the one
    before (the regularisation path). The path stops once ``patience`` strengths in a
    row have a validation log-loss above the best so far (None: never): weaker penalties
    only overfit more, and they are the slow fits.
    """
    if not grid:
        raise ValueError("the L2 grid is empty")
    points: list[GridPoint] = []
    previous: LogisticFit | None = None
    worse = 0
    for l2 in sorted(grid, reverse=True):
        if patience is not None and worse >= patience:
            break
        fit = fit_logistic(
            x_train, y_train, num_classes, l2, max_iterations=max_iterations, start=previous
        )
        previous = fit
        logits = fit.logits(x_valid)
        points.append(
            GridPoint(
                l2,
                float((logits.argmax(dim=1) == y_valid).double().mean()),
                float(F.cross_entropy(logits, y_valid.long())),
                fit.converged,
            )
        )
        best_loss = min(p.valid_log_loss for p in points[:-1]) if len(points) > 1 else None
        worse = worse + 1 if best_loss is not None and points[-1].valid_log_loss > best_loss else 0
    best = max(points, key=lambda p: (p.valid_acc, -p.valid_log_loss, p.l2))
    return best.l2, sorted(points, key=lambda p: p.l2)


__all__ = [
    "DEFAULT_L2_GRID",
    "GRADIENT_TOLERANCE",
    "GridPoint",
    "LogisticFit",
    "Standardizer",
    "fit_logistic",
    "objective",
    "select_l2",
]
