"""The L-BFGS logistic regression reaches the optimum: checked against a Newton solve
written here (exact Hessian, float64) and by the gradient at the returned weights."""

from __future__ import annotations

import pytest
import torch

from clue_fw.probing.linear import (
    Standardizer,
    fit_logistic,
    objective,
    select_l2,
    threads_for,
)


def problem(n: int = 120, d: int = 4, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    true = torch.randn(d, classes, generator=generator, dtype=torch.float64)
    noise = torch.randn(n, classes, generator=generator, dtype=torch.float64)
    return x, (x @ true + noise).argmax(dim=1)


def newton(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float) -> torch.Tensor:
    """The minimiser of J, as one flat vector [W.reshape(-1), b], by damped Newton steps
    on the exact Hessian (from torch.autograd.functional.hessian)."""
    d = x.shape[1]

    def flat_objective(theta: torch.Tensor) -> torch.Tensor:
        weight = theta[: d * classes].reshape(d, classes)
        return objective(weight, theta[d * classes :], x, y, l2)

    theta = torch.zeros(d * classes + classes, dtype=torch.float64)
    with threads_for(0):  # small matrices: one thread
        for _ in range(50):
            grad = torch.autograd.functional.jacobian(flat_objective, theta)
            if float(grad.abs().max()) < 1e-13:
                break
            hessian = torch.autograd.functional.hessian(flat_objective, theta)
            # the bias direction shared by every class is flat (softmax is shift-invariant):
            # a tiny ridge keeps the system solvable without moving the optimum of W
            step = torch.linalg.solve(hessian + 1e-12 * torch.eye(theta.numel()), grad)
            size = 1.0
            while flat_objective(theta - size * step) > flat_objective(theta) and size > 1e-8:
                size /= 2
            theta = theta - size * step
    return theta


@pytest.mark.parametrize("l2", [1e-3, 0.1, 1.0])
def test_lbfgs_reaches_the_newton_optimum(l2: float) -> None:
    x, y = problem()
    fit = fit_logistic(x, y, 3, l2)
    theta = newton(x, y, 3, l2)
    reference_weight = theta[:12].reshape(4, 3)
    assert fit.converged and fit.grad_norm <= 1e-6
    assert torch.allclose(fit.weight, reference_weight, atol=1e-5)
    # the bias is unique only up to a shift common to every class
    assert torch.allclose(fit.bias - fit.bias.mean(), theta[12:] - theta[12:].mean(), atol=1e-5)
    assert fit.loss == pytest.approx(float(objective(reference_weight, theta[12:], x, y, l2)))


def test_gradient_at_the_fit_is_zero() -> None:
    x, y = problem(n=200, d=6, classes=4, seed=1)
    fit = fit_logistic(x, y, 4, 1e-4)
    weight = fit.weight.clone().requires_grad_(True)
    bias = fit.bias.clone().requires_grad_(True)
    grads = torch.autograd.grad(objective(weight, bias, x, y, 1e-4), [weight, bias])
    assert max(float(g.abs().max()) for g in grads) <= 1e-6


def test_an_unconverged_fit_says_so() -> None:
    x, y = problem()
    fit = fit_logistic(x, y, 3, 1e-3, max_iterations=2)
    assert not fit.converged and fit.grad_norm > 1e-6


def test_warm_start_reaches_the_same_optimum() -> None:
    x, y = problem(seed=2)
    cold = fit_logistic(x, y, 3, 0.01)
    warm = fit_logistic(x, y, 3, 0.01, start=fit_logistic(x, y, 3, 1.0))
    assert torch.allclose(cold.weight, warm.weight, atol=1e-5)


def test_against_scikit_learn() -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    x, y = problem(n=150, seed=3)
    l2 = 0.05
    ours = fit_logistic(x, y, 3, l2)
    # sklearn minimises 1/2 ||W||^2 + C sum_i loss_i, i.e. our J with C = 1 / (N l2)
    theirs = linear_model.LogisticRegression(C=1 / (150 * l2), tol=1e-12, max_iter=10_000)
    theirs.fit(x.numpy(), y.numpy())
    assert torch.allclose(ours.weight, torch.from_numpy(theirs.coef_.T), atol=1e-4)


def test_standardizer_uses_training_statistics() -> None:
    train = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    scale = Standardizer.fit(train)
    assert scale(train).tolist() == [[-1.0, 0.0], [1.0, 0.0]]  # constant column: centred
    assert scale(torch.tensor([[5.0, 7.0]])).tolist() == [[3.0, 2.0]]


def test_select_l2_prefers_validation_accuracy() -> None:
    x, y = problem(n=300, d=8, classes=3, seed=4)
    chosen, grid = select_l2(x[:200], y[:200], x[200:], y[200:], 3, [1e-4, 1e-2, 1.0, 100.0])
    assert [point.l2 for point in grid] == [1e-4, 1e-2, 1.0, 100.0]
    best = max(point.valid_acc for point in grid)
    assert {p.l2: p.valid_acc for p in grid}[chosen] == best
    # a penalty of 100 shrinks the weights to almost nothing: near-chance accuracy
    assert grid[-1].valid_acc < best


def test_bad_arguments() -> None:
    x, y = problem()
    with pytest.raises(ValueError, match="l2 must be > 0"):
        fit_logistic(x, y, 3, 0.0)
    with pytest.raises(ValueError, match="x must be"):
        fit_logistic(x[:, 0], y, 3, 0.1)
    with pytest.raises(ValueError, match="empty"):
        select_l2(x, y, x, y, 3, [])


def test_small_problems_run_on_one_thread() -> None:
    before = torch.get_num_threads()
    with threads_for(10):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_the_path_stops_once_weaker_penalties_only_overfit() -> None:
    # 40 training users in 30 dimensions, labels independent of x: weaker penalties fit
    # noise, so the validation loss rises along the path
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(80, 30, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 2, (80,), generator=generator)
    grid = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    _, full = select_l2(x[:40], y[:40], x[40:], y[40:], 2, grid, patience=None)
    _, stopped = select_l2(x[:40], y[:40], x[40:], y[40:], 2, grid, patience=2)
    assert len(full) == 8 and 3 <= len(stopped) < 8
    assert stopped == full[-len(stopped) :]  # the strongest penalties, fitted the same
    losses = [p.valid_log_loss for p in reversed(stopped)]  # strongest first
    assert losses[-1] > min(losses[:-2]) and losses[-2] > min(losses[:-2])
