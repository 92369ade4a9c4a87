"""ROC curve, AUC, significance improvement characteristic (SIC) and working points.

Convention used throughout :mod:`coffea_ad.stats`: a *higher* score is more anomalous (more
signal-like), and an event passes a threshold ``t`` when ``score >= t``. Background efficiency
is the false-positive rate (FPR), signal efficiency the true-positive rate (TPR).

All functions take per-event scores as 1-d arrays and optional per-event weights (cross
section x luminosity / generated events, or MC weights); negative weights are allowed as long
as each sample's total is positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from coffea_ad.errors import StatisticsInputError

__all__ = [
    "WorkingPoint",
    "auc",
    "binned_roc",
    "histogram_score_bins",
    "max_sic",
    "roc_curve",
    "sic_curve",
    "working_point",
]


def _scores_weights(
    scores: ArrayLike, weights: ArrayLike | None, what: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        msg = f"{what}: expected at least one score, found an empty array"
        raise StatisticsInputError(msg)
    if not np.all(np.isfinite(s)):
        bad = int(np.count_nonzero(~np.isfinite(s)))
        msg = f"{what}: expected finite scores, found {bad} NaN/inf of {s.size}"
        raise StatisticsInputError(msg)
    if weights is None:
        w = np.ones_like(s)
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != s.shape:
            msg = f"{what}: expected one weight per score ({s.size}), found {w.size} weights"
            raise StatisticsInputError(msg)
        if not np.all(np.isfinite(w)):
            msg = f"{what}: expected finite weights, found NaN/inf"
            raise StatisticsInputError(msg)
    if not w.sum() > 0:
        msg = f"{what}: expected a positive sum of weights, found {w.sum()!r}"
        raise StatisticsInputError(msg)
    return s, w


def _cumulative_passing(
    scores_bkg: ArrayLike,
    scores_sig: ArrayLike,
    weights_bkg: ArrayLike | None,
    weights_sig: ArrayLike | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Weighted background/signal sums passing each distinct threshold, plus bkg sum(w^2).

    Returns ``(thresholds, bkg_pass, sig_pass, bkg_pass_w2)`` with thresholds decreasing.
    """
    sb, wb = _scores_weights(scores_bkg, weights_bkg, "background")
    ss, ws = _scores_weights(scores_sig, weights_sig, "signal")
    score = np.concatenate([sb, ss])
    is_sig = np.concatenate([np.zeros(sb.size, bool), np.ones(ss.size, bool)])
    w = np.concatenate([wb, ws])
    order = np.argsort(-score, kind="stable")
    score, is_sig, w = score[order], is_sig[order], w[order]
    # the last entry of each run of equal scores closes one threshold (events tied at a
    # threshold all pass together), as in sklearn.metrics._binary_clf_curve
    last = np.flatnonzero(np.diff(score) != 0)
    last = np.append(last, score.size - 1)
    sig_cum = np.cumsum(np.where(is_sig, w, 0.0))[last]
    bkg_cum = np.cumsum(np.where(is_sig, 0.0, w))[last]
    bkg_w2 = np.cumsum(np.where(is_sig, 0.0, w * w))[last]
    return score[last], bkg_cum, sig_cum, bkg_w2


def roc_curve(
    scores_bkg: ArrayLike,
    scores_sig: ArrayLike,
    *,
    weights_bkg: ArrayLike | None = None,
    weights_sig: ArrayLike | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """ROC curve at every distinct score value.

    Args:
        scores_bkg: background scores, ``n_bkg * float``.
        scores_sig: signal scores, ``n_sig * float``.
        weights_bkg: optional background weights (same length as ``scores_bkg``).
        weights_sig: optional signal weights (same length as ``scores_sig``).

    Returns:
        ``(fpr, tpr, thresholds)``, each ``n_thresholds + 1``: the first point is
        ``(0, 0)`` at threshold ``+inf`` (nothing passes), then one point per distinct score,
        thresholds decreasing, ending at ``(1, 1)``. Same convention as
        ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
    """
    thr, bkg, sig, _ = _cumulative_passing(scores_bkg, scores_sig, weights_bkg, weights_sig)
    fpr = np.concatenate([[0.0], bkg / bkg[-1]])
    tpr = np.concatenate([[0.0], sig / sig[-1]])
    thresholds = np.concatenate([[np.inf], thr])
    return fpr, tpr, thresholds


def auc(
    scores_bkg: ArrayLike,
    scores_sig: ArrayLike,
    *,
    weights_bkg: ArrayLike | None = None,
    weights_sig: ArrayLike | None = None,
) -> float:
    """Area under the ROC curve (trapezoidal rule over every distinct threshold).

    Equals the probability that a random signal event scores above a random background
    event, ties counting one half (the Mann-Whitney U statistic divided by n_sig n_bkg).

    Args:
        scores_bkg: background scores.
        scores_sig: signal scores.
        weights_bkg: optional background weights.
        weights_sig: optional signal weights.

    Returns:
        AUC in [0, 1]; 0.5 for a score that does not separate.
    """
    fpr, tpr, _ = roc_curve(
        scores_bkg, scores_sig, weights_bkg=weights_bkg, weights_sig=weights_sig
    )
    return float(np.trapezoid(tpr, fpr))


def sic_curve(
    scores_bkg: ArrayLike,
    scores_sig: ArrayLike,
    *,
    weights_bkg: ArrayLike | None = None,
    weights_sig: ArrayLike | None = None,
    max_rel_bkg_uncertainty: float | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Significance improvement characteristic SIC = TPR / sqrt(FPR) versus TPR.

    SIC is the factor by which a cut multiplies S/sqrt(B) (Gallicchio et al., "Energy flow
    in the hunt for quark jets", arXiv:1012.2077). Points with FPR = 0 are left out (SIC is
    undefined there).

    Args:
        scores_bkg: background scores.
        scores_sig: signal scores.
        weights_bkg: optional background weights.
        weights_sig: optional signal weights.
        max_rel_bkg_uncertainty: if given, keep only thresholds where the relative
            statistical uncertainty of the passing background, 1/sqrt(N_eff) with
            N_eff = (sum w)^2 / sum w^2, is at most this value; 0.2 is the usual choice in
            weakly supervised anomaly searches (Hallin et al., CATHODE, arXiv:2109.00546),
            which keeps the tail of SIC from being a fluctuation of a handful of events.

    Returns:
        ``(tpr, sic, thresholds)`` for the kept thresholds, thresholds decreasing.
    """
    tpr, _, sic, thr = _sic_points(
        scores_bkg, scores_sig, weights_bkg, weights_sig, max_rel_bkg_uncertainty
    )
    return tpr, sic, thr


def _sic_points(
    scores_bkg: ArrayLike,
    scores_sig: ArrayLike,
    weights_bkg: ArrayLike | None,
    weights_sig: ArrayLike | None,
    max_rel_bkg_uncertainty: float | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``(tpr, fpr, sic, thresholds)`` at the thresholds :func:`sic_curve` keeps."""
    thr, bkg, sig, bkg_w2 = _cumulative_passing(
        scores_bkg, scores_sig, weights_bkg, weights_sig
    )
    fpr = bkg / bkg[-1]
    tpr = sig / sig[-1]
    keep = fpr > 0
    if max_rel_bkg_uncertainty is not None:
        if not max_rel_bkg_uncertainty > 0:
            msg = f"expected max_rel_bkg_uncertainty > 0, found {max_rel_bkg_uncertainty}"
            raise StatisticsInputError(msg)
        with np.errstate(divide="ignore", invalid="ignore"):
            n_eff = np.where(bkg_w2 > 0, bkg * bkg / bkg_w2, 0.0)
        keep &= n_eff >= 1.0 / max_rel_bkg_uncertainty**2
    sic = tpr[keep] / np.sqrt(fpr[keep])
    return tpr[keep], fpr[keep], sic, thr[keep]


@dataclass(frozen=True)
class WorkingPoint:
    """One threshold on the score with its efficiencies.

    Attributes:
        threshold: events with ``score >= threshold`` pass.
        tpr: signal efficiency at the threshold.
        fpr: background efficiency at the threshold.
        sic: TPR / sqrt(FPR) (NaN when FPR = 0).
    """

    threshold: float
    tpr: float
    fpr: float
    sic: float


def max_sic(
    scores_bkg: ArrayLike,
    scores_sig: ArrayLike,
    *,
    weights_bkg: ArrayLike | None = None,
    weights_sig: ArrayLike | None = None,
    max_rel_bkg_uncertainty: float | None = 0.2,
) -> WorkingPoint:
    """The threshold with the largest SIC (the headline number of resonant AD studies).

    Args:
        scores_bkg: background scores.
        scores_sig: signal scores.
        weights_bkg: optional background weights.
        weights_sig: optional signal weights.
        max_rel_bkg_uncertainty: see :func:`sic_curve`; the default 0.2 means at least 25
            (effective) background events pass. ``None`` scans every threshold with FPR > 0.

    Returns:
        The :class:`WorkingPoint` at maximum SIC.
    """
    tpr, fpr, sic, thr = _sic_points(
        scores_bkg, scores_sig, weights_bkg, weights_sig, max_rel_bkg_uncertainty
    )
    if sic.size == 0:
        msg = (
            "max_sic: no threshold with FPR > 0 keeps enough background for "
            f"max_rel_bkg_uncertainty={max_rel_bkg_uncertainty} (needs N_eff >= "
            f"{1 / max_rel_bkg_uncertainty**2:g} passing background events)"
            if max_rel_bkg_uncertainty
            else "max_sic: no threshold with FPR > 0"
        )
        raise StatisticsInputError(msg)
    i = int(np.argmax(sic))
    return WorkingPoint(
        threshold=float(thr[i]), tpr=float(tpr[i]), fpr=float(fpr[i]), sic=float(sic[i])
    )


def working_point(
    scores_bkg: ArrayLike,
    scores_sig: ArrayLike,
    *,
    fpr: float | None = None,
    tpr: float | None = None,
    weights_bkg: ArrayLike | None = None,
    weights_sig: ArrayLike | None = None,
) -> WorkingPoint:
    """The loosest threshold whose background efficiency is at most ``fpr``, or the
    tightest whose signal efficiency is at least ``tpr`` (give exactly one).

    Args:
        scores_bkg: background scores.
        scores_sig: signal scores.
        fpr: target background efficiency (e.g. 0.01 for a 1% mistag rate).
        tpr: target signal efficiency.
        weights_bkg: optional background weights.
        weights_sig: optional signal weights.

    Returns:
        The :class:`WorkingPoint` reached.
    """
    if (fpr is None) == (tpr is None):
        msg = f"working_point: expected exactly one of fpr= or tpr=, found fpr={fpr}, tpr={tpr}"
        raise StatisticsInputError(msg)
    f, t, thr = roc_curve(scores_bkg, scores_sig, weights_bkg=weights_bkg, weights_sig=weights_sig)
    if fpr is not None:
        if not 0.0 <= fpr <= 1.0:
            msg = f"working_point: expected 0 <= fpr <= 1, found {fpr}"
            raise StatisticsInputError(msg)
        # fpr is non-decreasing along the curve: last index with f <= target
        i = int(np.searchsorted(f, fpr, side="right")) - 1
    else:
        if not 0.0 <= tpr <= 1.0:  # type: ignore[operator]
            msg = f"working_point: expected 0 <= tpr <= 1, found {tpr}"
            raise StatisticsInputError(msg)
        i = int(np.searchsorted(t, tpr, side="left"))
        i = min(i, t.size - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sic = float(t[i] / np.sqrt(f[i])) if f[i] > 0 else float("nan")
    return WorkingPoint(threshold=float(thr[i]), tpr=float(t[i]), fpr=float(f[i]), sic=sic)


# ----------------------------------------------------------------------------- histograms
# One convention for ROC curves from score histograms: every bin, flow bins included, is one
# score value at its lower edge (a bin passes a cut at its lower edge), so events in the same
# bin tie and count one half in the AUC. Any increasing choice of one value per bin (bin
# centres, ranks) gives the same curve; lower edges also serve as cut values.
def histogram_score_bins(h1: Any) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                           NDArray[np.float64]]:
    """(lower edge, sum w, sum w^2) of each bin of a 1-d score histogram, flow included.

    The underflow bin gets a value below the first edge; the overflow bin the last edge.
    Without stored variances, sum w^2 is taken equal to sum w (unweighted counts).
    """
    ax = h1.axes[0]
    edges = np.asarray(ax.edges, dtype=np.float64)
    lower = edges[:-1]
    if ax.traits.underflow:
        # any value below the first edge orders the underflow correctly
        lower = np.concatenate([[edges[0] - abs(edges[0]) - 1.0], lower])
    if ax.traits.overflow:
        lower = np.concatenate([lower, [edges[-1]]])
    vals = np.asarray(h1.values(flow=True), dtype=np.float64)
    var = h1.variances(flow=True)
    var = vals.copy() if var is None else np.asarray(var, dtype=np.float64)
    return lower, vals, var


def binned_roc(h_bkg: Any, h_sig: Any) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """ROC curve ``(fpr, tpr)`` and AUC of two 1-d score histograms with the same binning.

    The AUC is P(signal bin > background bin) + 1/2 P(same bin), flow bins included (see
    :func:`histogram_score_bins`).
    """
    xb, wb, _ = histogram_score_bins(h_bkg)
    xs, ws, _ = histogram_score_bins(h_sig)
    fpr, tpr, _ = roc_curve(xb, xs, weights_bkg=wb, weights_sig=ws)
    return fpr, tpr, float(np.trapezoid(tpr, fpr))
