"""Distance correlation against a slow O(n^2) reference from the Szekely definition."""

from __future__ import annotations

import numpy as np
import pytest

from coffea_ad.stats import distance_correlation, distance_covariance_sq, inverse_jsd


def _reference_dcor2(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """Szekely, Rizzo, Bakirov (2007), eq. 2.8-2.10, written with pair matrices and loops.

    Weighted as in the DisCo loss (Kasieczka and Shih, arXiv:2001.05310): every mean over
    events becomes a weighted mean with normalised weights.
    """
    n = x.size
    p = np.full(n, 1.0 / n) if w is None else w / w.sum()

    def centred(v: np.ndarray) -> np.ndarray:
        a = np.empty((n, n))
        for i in range(n):  # the plain definition, one row at a time
            for j in range(n):
                a[i, j] = abs(v[i] - v[j])
        row = a @ p
        return a - row[:, None] - row[None, :] + p @ row

    a, b = centred(x), centred(y)

    def v2(a: np.ndarray, b: np.ndarray) -> float:
        return float(p @ (a * b) @ p)

    return v2(a, b) / np.sqrt(v2(a, a) * v2(b, b))


@pytest.mark.parametrize("weighted", [False, True])
def test_matches_the_quadratic_definition(weighted: bool) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    y = np.sin(2 * x) + 0.3 * rng.normal(size=300)  # dependent but nearly uncorrelated
    y[::7] = y[3]  # ties in y exercise the rank handling
    x[::11] = x[5]  # and ties in x
    w = rng.uniform(0.1, 2.0, size=300) if weighted else None
    ref = _reference_dcor2(x, y, w)
    assert distance_correlation(x, y, weights=w, squared=True) == pytest.approx(ref, rel=1e-10)
    assert distance_correlation(x, y, weights=w) == pytest.approx(np.sqrt(ref), rel=1e-10)
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.3 < np.sqrt(ref)  # sees what Pearson misses


def test_dcov_by_hand_on_three_points() -> None:
    # x = (0, 1, 2), y = (0, 1, 0): a = |dx|, b = |dy|; A, B doubly centred by hand
    x = np.array([0.0, 1.0, 2.0])
    y = np.array([0.0, 1.0, 0.0])
    a = np.array([[0, 1, 2], [1, 0, 1], [2, 1, 0]], float)
    b = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], float)
    ca = a - a.mean(0) - a.mean(1)[:, None] + a.mean()
    cb = b - b.mean(0) - b.mean(1)[:, None] + b.mean()
    assert distance_covariance_sq(x, y) == pytest.approx((ca * cb).mean(), abs=1e-15)


def test_limits_independent_linear_and_invariances() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2, 50_000))
    # independent: dCor^2 is O(1/n) (V-statistic bias)
    assert distance_correlation(x, y, squared=True) < 5e-4
    assert distance_correlation(x, 3.0 * x - 1.0) == pytest.approx(1.0, rel=1e-9)
    assert distance_correlation(x, -x) == pytest.approx(1.0, rel=1e-9)
    z = x + 0.5 * y
    base = distance_correlation(x, z)
    # invariant under shifts, scales and swapping the arguments
    assert distance_correlation(10 * x + 3, 0.1 * z) == pytest.approx(base, rel=1e-9)
    assert distance_correlation(z, x) == pytest.approx(base, rel=1e-9)
    # a constant variable is independent of anything
    assert distance_correlation(x, np.ones_like(x)) == 0.0


def test_unit_weights_equal_no_weights_and_zero_weight_drops_an_event() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 1000))
    y = y + x**2
    plain = distance_correlation(x, y)
    assert distance_correlation(x, y, weights=np.full(1000, 2.5)) == pytest.approx(plain)
    w = np.ones(1000)
    w[0] = 0.0
    assert distance_correlation(x, y, weights=w) == pytest.approx(
        distance_correlation(x[1:], y[1:]), rel=1e-10
    )


def test_inverse_jsd_by_hand() -> None:
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4)
    # KL(p|m) = log2(4/3); KL(q|m) = 1/2 log2(2/3) + 1/2 log2(2)
    jsd = 0.5 * (np.log2(4 / 3) + 0.5 * np.log2(2 / 3) + 0.5)
    assert inverse_jsd([10.0, 0.0], [5.0, 5.0]) == pytest.approx(1 / jsd)
    assert inverse_jsd([1.0, 2.0], [2.0, 4.0]) == np.inf
    with pytest.raises(ValueError, match="equal binning"):
        inverse_jsd([1.0], [1.0, 2.0])
