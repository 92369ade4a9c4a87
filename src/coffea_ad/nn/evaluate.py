"""Figures of merit measured on held-out samples: ROC AUC, significance improvement.

Larger score = more signal-like everywhere. Weighted where weights are given.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auc", "max_sic", "roc_curve"]


def roc_curve(background: np.ndarray, signal: np.ndarray, *,
              background_weights: np.ndarray | None = None,
              signal_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Background and signal efficiencies of the cut ``score > t`` for every distinct ``t``.

    Returns:
        ``(fpr, tpr)`` increasing arrays starting at ``(0, 0)`` and ending at ``(1, 1)``.
    """
    b = np.asarray(background, np.float64)
    s = np.asarray(signal, np.float64)
    wb = np.ones_like(b) if background_weights is None else np.asarray(background_weights, float)
    ws = np.ones_like(s) if signal_weights is None else np.asarray(signal_weights, float)
    if len(b) == 0 or len(s) == 0:
        raise ValueError(f"roc_curve: expected non-empty samples, found {len(b)} background "
                         f"and {len(s)} signal rows")
    scores = np.concatenate([b, s])
    label = np.concatenate([np.zeros(len(b)), np.ones(len(s))])
    w = np.concatenate([wb, ws])
    order = np.argsort(-scores, kind="mergesort")
    scores, label, w = scores[order], label[order], w[order]
    tp = np.cumsum(w * label)
    fp = np.cumsum(w * (1 - label))
    # one point per distinct threshold: ties move together
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tpr = np.r_[0.0, tp[last] / tp[-1]]
    fpr = np.r_[0.0, fp[last] / fp[-1]]
    return fpr, tpr


def auc(background: np.ndarray, signal: np.ndarray, *,
        background_weights: np.ndarray | None = None,
        signal_weights: np.ndarray | None = None) -> float:
    """Area under the ROC curve (probability that a signal row outscores a background row).

    Ties count one half (trapezoidal rule over the ROC points).
    """
    fpr, tpr = roc_curve(background, signal, background_weights=background_weights,
                         signal_weights=signal_weights)
    return float(np.trapezoid(tpr, fpr))


def max_sic(background: np.ndarray, signal: np.ndarray, *, min_background: int = 20,
            background_weights: np.ndarray | None = None,
            signal_weights: np.ndarray | None = None) -> float:
    """Largest significance improvement ``SIC = TPR / sqrt(FPR)`` over the cuts.

    Cuts that keep fewer than ``min_background`` background rows are skipped (their FPR is
    too noisy; the LHC Olympics papers use a similar floor, e.g. arXiv:2001.04990 fig. 4).
    """
    fpr, tpr = roc_curve(background, signal, background_weights=background_weights,
                         signal_weights=signal_weights)
    floor = min_background / max(len(background), 1)
    ok = fpr >= floor
    if not ok.any():
        return float("nan")
    return float(np.max(tpr[ok] / np.sqrt(fpr[ok])))
