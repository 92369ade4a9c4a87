"""Counting significance sigma = |BSM - SM| / sqrt(SM) across score cuts.

This is the figure of merit of the EFT-like VBS anomaly-detection studies (e.g. same-sign WW
with a VAE score): for each cut on the score, the expected yield under the BSM hypothesis
(SM plus the new-physics contribution) is compared with the SM-only yield, and the model is
called *sensitive* when the best cut reaches sigma >= 3 (Cowan et al., "Asymptotic formulae for
likelihood-based tests of new physics", arXiv:1007.1727, give the large-background limit
Z = s / sqrt(b) that this is).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from coffea_ad.errors import StatisticsInputError

__all__ = ["SignificanceScan", "significance", "significance_scan"]


def significance(n_bsm: ArrayLike, n_sm: ArrayLike) -> NDArray[np.float64]:
    """sigma = |N_BSM - N_SM| / sqrt(N_SM), element-wise.

    Args:
        n_bsm: expected yield(s) under the BSM hypothesis (SM + new physics).
        n_sm: expected SM yield(s).

    Returns:
        sigma with the broadcast shape of the inputs; NaN where ``n_sm <= 0`` (undefined, and
        not +inf, so that an empty cut never wins a scan).
    """
    bsm = np.asarray(n_bsm, dtype=np.float64)
    sm = np.asarray(n_sm, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sm > 0, np.abs(bsm - sm) / np.sqrt(np.where(sm > 0, sm, 1.0)), np.nan)


@dataclass(frozen=True)
class SignificanceScan:
    """Result of :func:`significance_scan`.

    Attributes:
        cuts: score thresholds scanned (events with ``score >= cut`` pass), ``n_cuts``.
        n_sm: SM yield passing each cut.
        n_bsm: BSM-hypothesis yield passing each cut.
        sigma: |BSM - SM| / sqrt(SM) at each cut (NaN where the SM yield is below ``min_sm``).
        best_index: index of the best cut (largest finite sigma).
        threshold: sigma needed to call the model sensitive.
    """

    cuts: NDArray[np.float64]
    n_sm: NDArray[np.float64]
    n_bsm: NDArray[np.float64]
    sigma: NDArray[np.float64]
    best_index: int
    threshold: float = 3.0

    @property
    def best_cut(self) -> float:
        """Score cut giving the largest sigma."""
        return float(self.cuts[self.best_index])

    @property
    def best_sigma(self) -> float:
        """sigma_max, the largest sigma over the scanned cuts."""
        return float(self.sigma[self.best_index])

    @property
    def sensitive(self) -> bool:
        """True when sigma_max >= ``threshold`` (3 by default)."""
        return bool(self.best_sigma >= self.threshold)


def _weighted_pass(
    scores: NDArray[np.float64], weights: NDArray[np.float64], cuts: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Sum of weights with ``score >= cut`` for each cut, by one sort (no loop over cuts)."""
    order = np.argsort(scores)
    s, w = scores[order], weights[order]
    tail = np.concatenate([np.cumsum(w[::-1])[::-1], [0.0]])  # tail[i] = sum w[i:]
    return tail[np.searchsorted(s, cuts, side="left")]


def _prepare(scores: ArrayLike, weights: ArrayLike | None, what: str):
    s = np.asarray(scores, dtype=np.float64).ravel()
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != s.shape:
        msg = f"{what}: expected one weight per score ({s.size}), found {w.size}"
        raise StatisticsInputError(msg)
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(w))):
        msg = f"{what}: expected finite scores and weights, found NaN/inf"
        raise StatisticsInputError(msg)
    return s, w


def significance_scan(
    scores_sm: ArrayLike,
    scores_bsm: ArrayLike,
    *,
    weights_sm: ArrayLike | None = None,
    weights_bsm: ArrayLike | None = None,
    cuts: ArrayLike | int = 100,
    min_sm: float = 0.0,
    min_sm_events: float = 0.0,
    threshold: float = 3.0,
) -> SignificanceScan:
    """Scan sigma = |BSM - SM| / sqrt(SM) over cuts ``score >= cut``.

    Args:
        scores_sm: scores of the SM sample.
        scores_bsm: scores of the sample representing the BSM hypothesis (SM + new physics,
            e.g. an EFT reweighted sample), weighted to the same luminosity as the SM one.
        weights_sm: per-event SM weights (cross section x luminosity / generated).
        weights_bsm: per-event BSM weights.
        cuts: explicit thresholds, or a number of thresholds placed at evenly spaced
            quantiles (0 ... 1 exclusive) of the SM scores.
        min_sm: cuts keeping an SM yield below this are not considered (sigma = NaN there).
        min_sm_events: cuts keeping fewer effective SM MC events, (sum w)^2 / sum w^2, are
            not considered either: a guard against the best cut being a handful of heavily
            weighted MC events (25 means a 20% statistical uncertainty on the SM yield).
        threshold: sigma at which the model is called sensitive (3 by default).

    Returns:
        A :class:`SignificanceScan` with the yields, sigma at each cut and the best cut.
    """
    s_sm, w_sm = _prepare(scores_sm, weights_sm, "SM")
    s_bsm, w_bsm = _prepare(scores_bsm, weights_bsm, "BSM")
    if np.ndim(cuts) == 0:
        n = int(cuts)  # type: ignore[arg-type]
        if n < 1:
            msg = f"significance_scan: expected cuts >= 1 or an array of cuts, found {cuts!s}"
            raise StatisticsInputError(msg)
        cut_values = np.unique(np.quantile(s_sm, np.arange(n) / n))
    else:
        cut_values = np.sort(np.asarray(cuts, dtype=np.float64).ravel())
    n_sm = _weighted_pass(s_sm, w_sm, cut_values)
    n_bsm = _weighted_pass(s_bsm, w_bsm, cut_values)
    sigma = significance(n_bsm, n_sm)
    sumw2_sm = _weighted_pass(s_sm, w_sm**2, cut_values)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(sumw2_sm > 0, n_sm**2 / sumw2_sm, 0.0)
    sigma[(n_sm < min_sm) | (n_eff < min_sm_events)] = np.nan
    if not np.any(np.isfinite(sigma)):
        msg = (
            f"significance_scan: no cut keeps an SM yield > 0, >= min_sm={min_sm} and "
            f">= min_sm_events={min_sm_events} effective events; "
            f"largest SM yield found {n_sm.max() if n_sm.size else 0.0:g}"
        )
        raise StatisticsInputError(msg)
    best = int(np.nanargmax(sigma))
    return SignificanceScan(
        cuts=cut_values, n_sm=n_sm, n_bsm=n_bsm, sigma=sigma, best_index=best, threshold=threshold
    )
