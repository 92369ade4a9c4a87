"""Losses against independent references: hand loops from the formulas, torch.distributions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from coffea_ad.nn.losses import (
    chamfer,
    distance_correlation,
    kl_divergence,
    mae,
    mse,
    pinball,
)

RNG = np.random.default_rng(11)


def test_mae_mse_per_row():
    x = RNG.normal(size=(7, 5))
    y = RNG.normal(size=(7, 5))
    np.testing.assert_allclose(mae(torch.tensor(x), torch.tensor(y)).numpy(),
                               [np.mean([abs(a - b) for a, b in zip(r, s, strict=True)])
                                for r, s in zip(x, y, strict=True)])
    np.testing.assert_allclose(mse(torch.tensor(x), torch.tensor(y)).numpy(),
                               ((x - y) ** 2).mean(axis=1))


def test_kl_matches_torch_distributions():
    mu = torch.tensor(RNG.normal(size=(6, 3)))
    logvar = torch.tensor(RNG.normal(scale=0.5, size=(6, 3)))
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(dim=1)
    np.testing.assert_allclose(kl_divergence(mu, logvar).numpy(), ref.numpy(), rtol=1e-12)
    assert float(kl_divergence(torch.zeros(1, 3), torch.zeros(1, 3))[0]) == 0.0


def _chamfer_loop(x, xm, y, ym):
    xs = [p for p, m in zip(x, xm, strict=False) if m]
    ys = [p for p, m in zip(y, ym, strict=False) if m]
    if not xs or not ys:
        return 0.0
    a = np.mean([min(np.sum((p - q) ** 2) for q in ys) for p in xs])
    b = np.mean([min(np.sum((p - q) ** 2) for p in xs) for q in ys])
    return a + b


def test_chamfer_against_loop_with_masks():
    x = RNG.normal(size=(5, 6, 3))
    y = RNG.normal(size=(5, 4, 3))
    xm = (RNG.random((5, 6)) < 0.7).astype(float)
    ym = (RNG.random((5, 4)) < 0.8).astype(float)
    xm[0] = 0  # empty input set -> 0, not NaN
    ym[1] = 1
    x[xm == 0] = 1e4  # padding far away must not be anyone's nearest neighbour
    got = chamfer(torch.tensor(x), torch.tensor(y), x_mask=torch.tensor(xm),
                  y_mask=torch.tensor(ym)).numpy()
    ref = [_chamfer_loop(*a) for a in zip(x, xm, y, ym, strict=False)]
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    assert got[0] == 0.0


def test_chamfer_is_zero_for_a_permuted_copy():
    x = torch.tensor(RNG.normal(size=(2, 5, 3)))
    perm = x[:, torch.tensor([3, 1, 4, 0, 2])]
    np.testing.assert_allclose(chamfer(x, perm).numpy(), 0.0, atol=1e-12)


def _dcorr2_loop(x, y, w):
    """Weighted squared distance correlation from the definition, with explicit loops."""
    n = len(x)
    w = w / w.mean()

    def centred(v):
        a = [[abs(v[j] - v[k]) for k in range(n)] for j in range(n)]
        row = [sum(a[j][k] * w[k] for k in range(n)) / n for j in range(n)]
        tot = sum(row[j] * w[j] for j in range(n)) / n
        return [[a[j][k] - row[j] - row[k] + tot for k in range(n)] for j in range(n)]

    A, B = centred(x), centred(y)

    def cov(P, Q):
        pairs = itertools.product(range(n), range(n))
        return sum(P[j][k] * Q[j][k] * w[j] * w[k] for j, k in pairs) / n**2

    return cov(A, B) / np.sqrt(cov(A, A) * cov(B, B))


@pytest.mark.parametrize("weighted", [False, True])
def test_distance_correlation_against_loop(weighted):
    x = RNG.normal(size=30)
    y = x**2 + 0.3 * RNG.normal(size=30)  # dependent but not linearly correlated
    w = RNG.uniform(0.5, 2.0, size=30) if weighted else np.ones(30)
    got = float(distance_correlation(torch.tensor(x), torch.tensor(y),
                                     weights=torch.tensor(w) if weighted else None))
    assert got == pytest.approx(_dcorr2_loop(x, y, w), rel=1e-10)


def test_distance_correlation_limits_and_gradient():
    x = torch.tensor(RNG.normal(size=400), requires_grad=True)
    xd = x.detach()
    assert float(distance_correlation(xd, 3 * xd + 1)) == pytest.approx(1.0, rel=1e-10)
    indep = float(distance_correlation(xd, torch.tensor(RNG.normal(size=400))))
    assert indep < 0.02  # the unweighted V-statistic of independent samples is O(1/n)
    d = distance_correlation(x, x.detach().abs())
    d.backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    # a constant sample: 0, not NaN
    assert float(distance_correlation(torch.ones(10), torch.arange(10.0))) == 0.0


def test_pinball_against_loop_and_minimized_by_the_quantile():
    pred = RNG.normal(size=(8, 3))
    y = RNG.normal(size=8)
    taus = [0.1, 0.5, 0.9]
    ref = [sum(t * (yi - q) if yi >= q else (t - 1) * (yi - q)
               for t, q in zip(taus, row, strict=True))
           for yi, row in zip(y, pred, strict=False)]
    np.testing.assert_allclose(pinball(torch.tensor(pred), torch.tensor(y), taus).numpy(), ref)
    # the constant minimizing the mean pinball loss is the sample quantile
    sample = torch.tensor(RNG.exponential(size=2001))
    grid = torch.linspace(0, 4, 4001).reshape(-1, 1)
    losses = [float(pinball(g.expand(len(sample), 1), sample, [0.8]).mean()) for g in grid]
    best = float(grid[int(np.argmin(losses))])
    assert best == pytest.approx(float(np.quantile(sample.numpy(), 0.8)), abs=2e-3)


def test_distance_correlation_matches_the_stats_implementation():
    """The O(n²) torch penalty against coffea_ad.stats' exact O(n log n) estimator."""
    from coffea_ad.stats.decorrelation import distance_correlation as reference

    x = RNG.normal(size=500)
    y = np.abs(x) + RNG.normal(scale=0.5, size=500)
    w = RNG.uniform(0.2, 3.0, size=500)
    got = float(distance_correlation(torch.tensor(x), torch.tensor(y), weights=torch.tensor(w)))
    assert got == pytest.approx(reference(x, y, weights=w, squared=True), rel=1e-8)
