"""Separation beyond kinematics: AUC in bins of a kinematic variable and with the background
reweighted to the signal's spectrum of it.

A jet tagger trained on QCD can separate a heavy-resonance signal from QCD through jet p_T or
mass alone, because the signal's jets are harder. What it measures *beyond* those kinematics is
the AUC at fixed jet p_T: :func:`binned_auc` gives it in p_T windows, and :func:`reweighted_auc`
folds them into one number by weighting the background to the signal's p_T spectrum (histogram
ratio), so that both samples have the same p_T distribution and p_T alone gives AUC 0.5.

Conventions as in :mod:`coffea_ad.stats.roc` (higher score = more signal-like).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from coffea_ad.errors import StatisticsInputError
from coffea_ad.stats.roc import auc

__all__ = ["BinnedAUC", "binned_auc", "reweight_to", "reweighted_auc"]


def _weights(values: NDArray, weights: ArrayLike | None, what: str) -> NDArray[np.float64]:
    if weights is None:
        return np.ones(len(values))
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != values.shape:
        raise StatisticsInputError(f"{what}: expected one weight per value ({values.size}), found "
                         f"{w.size}")
    return w


def _edges(edges: ArrayLike) -> NDArray[np.float64]:
    e = np.asarray(edges, dtype=np.float64).ravel()
    if e.size < 2 or not np.all(np.diff(e) > 0):
        raise StatisticsInputError(f"bin edges: expected at least two increasing values, found {e.tolist()}")
    return e


def reweight_to(
    values_bkg: ArrayLike,
    values_sig: ArrayLike,
    edges: ArrayLike,
    *,
    weights_bkg: ArrayLike | None = None,
    weights_sig: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Background weights that give the background the signal's distribution of a variable.

    Each background event in bin ``i`` of ``edges`` gets ``w_bkg * (S_i / S) / (B_i / B)``,
    with ``S_i, B_i`` the weighted signal and background yields in the bin and ``S, B`` their
    totals inside the edges: the reweighted background histogram is then the signal histogram
    scaled to the background total. Background outside the edges, or in a bin without signal,
    gets weight 0; signal in a bin without background cannot be matched (check
    :func:`reweighted_auc`'s ``coverage``).

    Args:
        values_bkg: per-event variable of the background (e.g. jet p_T).
        values_sig: the same for the signal.
        edges: bin edges (increasing).
        weights_bkg: background weights (default 1).
        weights_sig: signal weights (default 1).

    Returns:
        ``[n_bkg]`` weights.
    """
    vb = np.asarray(values_bkg, dtype=np.float64).ravel()
    vs = np.asarray(values_sig, dtype=np.float64).ravel()
    e = _edges(edges)
    wb, ws = _weights(vb, weights_bkg, "weights_bkg"), _weights(vs, weights_sig, "weights_sig")
    hb = np.histogram(vb, e, weights=wb)[0]
    hs = np.histogram(vs, e, weights=ws)[0]
    if not hb.sum() > 0 or not hs.sum() > 0:
        raise StatisticsInputError("reweight_to: expected background and signal inside the bin edges "
                         f"[{e[0]}, {e[-1]}], found totals {hb.sum()!r} and {hs.sum()!r}")
    ratio = np.divide(hs / hs.sum(), hb / hb.sum(), out=np.zeros(len(hb)), where=hb > 0)
    idx = np.searchsorted(e, vb, side="right") - 1
    inside = (idx >= 0) & (idx < len(hb))
    out = np.zeros(len(vb))
    out[inside] = wb[inside] * ratio[idx[inside]]
    return out


def reweighted_auc(
    scores_bkg: ArrayLike,
    scores_sig: ArrayLike,
    values_bkg: ArrayLike,
    values_sig: ArrayLike,
    edges: ArrayLike,
    *,
    weights_bkg: ArrayLike | None = None,
    weights_sig: ArrayLike | None = None,
) -> tuple[float, float]:
    """AUC with the background reweighted to the signal's distribution of a variable.

    Signal outside the edges, or in bins without background, is dropped (it has no background
    at the same kinematics to be compared with).

    Returns:
        ``(auc, coverage)``: the AUC, and the weighted fraction of signal that was kept.
    """
    vs = np.asarray(values_sig, dtype=np.float64).ravel()
    e = _edges(edges)
    ws = _weights(vs, weights_sig, "weights_sig")
    w = reweight_to(values_bkg, vs, e, weights_bkg=weights_bkg, weights_sig=ws)
    vb = np.asarray(values_bkg, dtype=np.float64).ravel()
    hb = np.histogram(vb, e, weights=w)[0]
    idx = np.searchsorted(e, vs, side="right") - 1
    keep = (idx >= 0) & (idx < len(hb))
    keep[keep] = hb[idx[keep]] > 0
    coverage = float(ws[keep].sum() / ws.sum())
    sb = np.asarray(scores_bkg, dtype=np.float64).ravel()
    ss = np.asarray(scores_sig, dtype=np.float64).ravel()
    return auc(sb[w > 0], ss[keep], weights_bkg=w[w > 0], weights_sig=ws[keep]), coverage


@dataclass(frozen=True)
class BinnedAUC:
    """AUC per bin of a variable.

    Attributes:
        edges: the bin edges.
        auc: ``[n_bins]`` AUC per bin (NaN where a sample has fewer than ``min_events``).
        n_bkg, n_sig: ``[n_bins]`` unweighted counts per bin.
    """

    edges: NDArray[np.float64]
    auc: NDArray[np.float64]
    n_bkg: NDArray[np.int64]
    n_sig: NDArray[np.int64]


def binned_auc(
    scores_bkg: ArrayLike,
    scores_sig: ArrayLike,
    values_bkg: ArrayLike,
    values_sig: ArrayLike,
    edges: ArrayLike,
    *,
    weights_bkg: ArrayLike | None = None,
    weights_sig: ArrayLike | None = None,
    min_events: int = 20,
) -> BinnedAUC:
    """AUC of background against signal in each bin ``[edges[i], edges[i+1])`` of a variable.

    Args:
        scores_bkg, scores_sig: scores.
        values_bkg, values_sig: the binning variable (e.g. jet p_T).
        edges: bin edges.
        weights_bkg, weights_sig: weights (default 1).
        min_events: bins where either sample has fewer events get NaN.
    """
    e = _edges(edges)
    sb = np.asarray(scores_bkg, dtype=np.float64).ravel()
    ss = np.asarray(scores_sig, dtype=np.float64).ravel()
    vb = np.asarray(values_bkg, dtype=np.float64).ravel()
    vs = np.asarray(values_sig, dtype=np.float64).ravel()
    if sb.shape != vb.shape or ss.shape != vs.shape:
        raise StatisticsInputError("binned_auc: expected one binning value per score, found "
                         f"{sb.size}/{vb.size} (background), {ss.size}/{vs.size} (signal)")
    wb, ws = _weights(vb, weights_bkg, "weights_bkg"), _weights(vs, weights_sig, "weights_sig")
    ib = np.searchsorted(e, vb, side="right") - 1
    is_ = np.searchsorted(e, vs, side="right") - 1
    n = len(e) - 1
    out = np.full(n, np.nan)
    nb = np.array([np.count_nonzero(ib == i) for i in range(n)], np.int64)
    ns = np.array([np.count_nonzero(is_ == i) for i in range(n)], np.int64)
    for i in range(n):
        if nb[i] >= min_events and ns[i] >= min_events:
            mb, ms = ib == i, is_ == i
            out[i] = auc(sb[mb], ss[ms], weights_bkg=wb[mb], weights_sig=ws[ms])
    return BinnedAUC(edges=e, auc=out, n_bkg=nb, n_sig=ns)
