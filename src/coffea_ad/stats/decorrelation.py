"""Decorrelation metrics: distance correlation (the DisCo penalty) and the JSD of mass shapes.

Distance correlation (Szekely, Rizzo, Bakirov, Ann. Statist. 35 (2007) 2769) is zero if and
only if two variables are independent; DisCo (Kasieczka and Shih, arXiv:2001.05310) adds its
square, between the anomaly score and the mass, to the training loss. Checking a trained
model on a full evaluation sample needs it for 10^5-10^6 events, where the O(n^2) pair
matrices of the training loss do not fit in memory. Here it is computed exactly in
O(n log n) for 1-d variables: the row sums of |x_i - x_j| come from one sort and cumulative
sums, and the pair sum sum_ij w_i w_j |x_i - x_j| |y_i - y_j| from a sweep in x with Fenwick
trees over the ranks of y (Huo and Szekely, Technometrics 58 (2016) 435; Chaudhuri and Hu,
Comput. Stat. Data Anal. 135 (2019) 15). Weights enter as in the DisCo paper: each event
counts with its normalised weight in every mean.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from coffea_ad.errors import StatisticsInputError

__all__ = ["distance_correlation", "distance_covariance_sq", "inverse_jsd"]


def _row_sums(x: NDArray[np.float64], p: NDArray[np.float64]) -> NDArray[np.float64]:
    """a_i = sum_j p_j |x_i - x_j| for all i, from one sort (O(n log n))."""
    order = np.argsort(x, kind="stable")
    xs, ps = x[order], p[order]
    cp = np.cumsum(ps)  # sum_{j <= k} p_j
    cpx = np.cumsum(ps * xs)  # sum_{j <= k} p_j x_j
    # sum_{j<=k} p_j (x_k - x_j) + sum_{j>k} p_j (x_j - x_k); ties contribute 0 either way
    sums = xs * (2 * cp - cp[-1]) - 2 * cpx + cpx[-1]
    out = np.empty_like(sums)
    out[order] = sums
    return out


@numba.njit(cache=True)
def _pair_sum(xs: np.ndarray, ys_rank: np.ndarray, ys: np.ndarray, ps: np.ndarray,
              n_rank: int) -> float:  # pragma: no cover - compiled
    """sum_{i != j} p_i p_j |x_i - x_j| |y_i - y_j| with events sorted by x.

    For j before i (x_j <= x_i): |x_i - x_j| |y_i - y_j| = (x_i - x_j)(y_i - y_j) s_ij with
    s_ij = +1 if y_j < y_i else -1 (a tie in y contributes 0). Expanding the product leaves
    sums of p_j {1, x_j, y_j, x_j y_j} over earlier events, split by y_j < y_i, which four
    Fenwick trees over the y ranks answer in O(log n) each.
    """
    n = xs.size
    t0 = np.zeros(n_rank + 1)
    tx = np.zeros(n_rank + 1)
    ty = np.zeros(n_rank + 1)
    txy = np.zeros(n_rank + 1)
    a0 = 0.0
    ax = 0.0
    ay = 0.0
    axy = 0.0
    total = 0.0
    for i in range(n):
        xi = xs[i]
        yi = ys[i]
        # prefix sums over ranks < rank(y_i): earlier events with y_j < y_i
        l0 = 0.0
        lx = 0.0
        ly = 0.0
        lxy = 0.0
        k = ys_rank[i]  # 1-based rank; query ranks 1 .. k-1
        k -= 1
        while k > 0:
            l0 += t0[k]
            lx += tx[k]
            ly += ty[k]
            lxy += txy[k]
            k -= k & (-k)
        # sum_j s_ij p_j g_j = 2 * (sum over y_j < y_i) - (sum over all earlier j)
        s0 = 2.0 * l0 - a0
        sx = 2.0 * lx - ax
        sy = 2.0 * ly - ay
        sxy = 2.0 * lxy - axy
        total += ps[i] * (xi * yi * s0 - xi * sy - yi * sx + sxy)
        k = ys_rank[i]
        pi = ps[i]
        while k <= n_rank:
            t0[k] += pi
            tx[k] += pi * xi
            ty[k] += pi * yi
            txy[k] += pi * xi * yi
            k += k & (-k)
        a0 += pi
        ax += pi * xi
        ay += pi * yi
        axy += pi * xi * yi
    return 2.0 * total  # each unordered pair once above; the double sum counts it twice


def _prepare(x: ArrayLike, y: ArrayLike, weights: ArrayLike | None):
    xv = np.asarray(x, dtype=np.float64).ravel()
    yv = np.asarray(y, dtype=np.float64).ravel()
    if xv.shape != yv.shape or xv.size < 2:
        msg = (
            "distance correlation: expected x and y of equal length >= 2, "
            f"found {xv.size}, {yv.size}"
        )
        raise StatisticsInputError(msg)
    w = np.ones_like(xv) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != xv.shape or np.any(w < 0) or not w.sum() > 0:
        msg = "distance correlation: expected one non-negative weight per event with a positive sum"
        raise StatisticsInputError(msg)
    if not (np.all(np.isfinite(xv)) and np.all(np.isfinite(yv)) and np.all(np.isfinite(w))):
        msg = "distance correlation: expected finite x, y and weights, found NaN/inf"
        raise StatisticsInputError(msg)
    return xv, yv, w / w.sum()


def _dcov_sq(x: NDArray, y: NDArray, p: NDArray) -> float:
    """Weighted V-statistic dCov^2 = S1 - 2 S3 + S2 (Szekely et al. 2007, eq. 2.8)."""
    ax, ay = _row_sums(x, p), _row_sums(y, p)
    order = np.argsort(x, kind="stable")
    xs, ys, ps = x[order], y[order], p[order]
    uniq, inv = np.unique(ys, return_inverse=True)
    s1 = _pair_sum(xs, (inv + 1).astype(np.int64), ys, ps, uniq.size)
    s2 = float(p @ ax) * float(p @ ay)
    s3 = float(p @ (ax * ay))
    return s1 - 2.0 * s3 + s2


def distance_covariance_sq(
    x: ArrayLike, y: ArrayLike, *, weights: ArrayLike | None = None
) -> float:
    """Squared (V-statistic) distance covariance of two 1-d variables, in O(n log n).

    Args:
        x: first variable, ``n * float``.
        y: second variable, ``n * float``.
        weights: optional non-negative per-event weights.

    Returns:
        dCov^2_n = sum_ij p_i p_j A_ij B_ij with p the normalised weights and A, B the
        doubly centred distance matrices.
    """
    xv, yv, p = _prepare(x, y, weights)
    return _dcov_sq(xv, yv, p)


def distance_correlation(
    x: ArrayLike, y: ArrayLike, *, weights: ArrayLike | None = None, squared: bool = False
) -> float:
    """Distance correlation of two 1-d variables (exact, O(n log n)).

    Args:
        x: first variable (e.g. the anomaly score), ``n * float``.
        y: second variable (e.g. m_T or m_jj), ``n * float``.
        weights: optional non-negative per-event weights (normalised internally, as in the
            DisCo loss).
        squared: return dCor^2 (the DisCo penalty) instead of dCor.

    Returns:
        dCor in [0, 1]: 0 for independent variables (in the large-n limit), 1 when one is a
        linear function of the other; 0 if either variable is constant.
    """
    xv, yv, p = _prepare(x, y, weights)
    vxy = _dcov_sq(xv, yv, p)
    vxx = _dcov_sq(xv, xv, p)
    vyy = _dcov_sq(yv, yv, p)
    den = np.sqrt(vxx * vyy)
    r2 = max(vxy, 0.0) / den if den > 0 else 0.0
    return float(r2 if squared else np.sqrt(r2))


def inverse_jsd(
    selected: ArrayLike, rejected: ArrayLike
) -> float:
    """1 / JSD between the mass histograms of events passing and failing a cut.

    The background-sculpting metric of decorrelation studies (e.g. Kitouni et al.,
    "Enhancing searches for resonances with machine learning and moment decomposition",
    arXiv:2010.09745): the Jensen-Shannon divergence (base 2) between the normalised
    histograms; larger means less sculpting.

    Args:
        selected: mass histogram (counts per bin) of background events passing the cut.
        rejected: the same binning for events failing it.

    Returns:
        1 / JSD (inf for identical shapes).
    """
    a = np.asarray(selected, dtype=np.float64).ravel()
    b = np.asarray(rejected, dtype=np.float64).ravel()
    if a.shape != b.shape or not (a.sum() > 0 and b.sum() > 0):
        msg = "inverse_jsd: expected two histograms with equal binning and positive totals"
        raise StatisticsInputError(msg)
    pa, pb = a / a.sum(), b / b.sum()
    mid = 0.5 * (pa + pb)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_a = np.where(pa > 0, pa * np.log2(pa / mid), 0.0).sum()
        kl_b = np.where(pb > 0, pb * np.log2(pb / mid), 0.0).sum()
    jsd = 0.5 * (kl_a + kl_b)
    return float(1.0 / jsd) if jsd > 0 else float("inf")
