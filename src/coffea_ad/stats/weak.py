"""Weakly supervised resonant anomaly detection: regions, k-folded classifiers, SIC at a given S/B.

The CATHODE procedure (Hallin et al., arXiv:2109.00546): a density estimator of the background
conditioned on m_jj is fitted in the sidebands (SB) and sampled in the signal region (SR); a
classifier of SR data (label 1) versus that template (label 0) approximates the likelihood
ratio p_data / p_bkg, monotonic in S/B, and is the anomaly score. References on the same
events: the *idealized* classifier (data versus true background) and the *supervised* one
(signal versus background).

Every score here is out-of-fold: an event is scored only by a classifier that never saw it
(k-fold), so that no number is measured on training events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from coffea_ad.errors import StatisticsInputError

__all__ = [
    "KFoldResult",
    "kfold_classifier",
    "region_masks",
    "sic_at_background_efficiency",
]


def region_masks(mjj: ArrayLike, signal_region: Sequence[float],
                 window: Sequence[float] | None = None) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """``(in_sr, in_sb)``: SR is ``low <= m_jj < high``; SB is every other m_jj inside
    ``window`` (``(lo, hi)``, ``lo <= m_jj < hi``; None: unbounded). Half-open intervals, so
    an event at an edge belongs to exactly one region.
    """
    m = np.asarray(mjj, dtype=np.float64)
    low, high = (float(v) for v in signal_region)
    if not low < high:
        raise StatisticsInputError(f"signal_region: expected (low, high) with low < high, found {tuple(signal_region)}")
    in_sr = (m >= low) & (m < high)
    inside = np.ones(m.shape, bool)
    if window is not None:
        lo, hi = (float(v) for v in window)
        if not (lo <= low and high <= hi):
            raise StatisticsInputError(f"window {tuple(window)} must contain the signal region {(low, high)}")
        inside = (m >= lo) & (m < hi)
    return in_sr, inside & ~in_sr


@dataclass
class KFoldResult:
    """Out-of-fold scores of a k-folded classifier.

    Attributes:
        score1, score0: score of every label-1 and label-0 row, each from the fold model that
            did not train on it.
        extra: score of each extra sample, every row by one fold model chosen at random
            (those rows are never trained on).
        auc: out-of-fold AUC of label 1 versus label 0.
    """

    score1: NDArray[np.float64]
    score0: NDArray[np.float64]
    extra: dict[str, NDArray[np.float64]]
    auc: float


def _folds(n: int, k: int, rng: np.random.Generator, groups: ArrayLike | None) -> NDArray[np.intp]:
    if groups is None:
        return rng.permutation(np.arange(n) % k)
    g = np.asarray(groups)
    uniq, inverse = np.unique(g, return_inverse=True)
    return rng.permutation(np.arange(len(uniq)) % k)[inverse]


def kfold_classifier(
    x1: ArrayLike,
    x0: ArrayLike,
    *,
    k: int = 5,
    seed: int = 0,
    groups1: ArrayLike | None = None,
    groups0: ArrayLike | None = None,
    extra: Mapping[str, ArrayLike] | None = None,
    ensemble: int = 1,
    max_iter: int = 200,
    learning_rate: float = 0.1,
    max_leaf_nodes: int = 31,
    min_samples_leaf: int = 20,
) -> KFoldResult:
    """Train ``k`` classifiers of ``x1`` (label 1) versus ``x0`` (label 0) and score every row
    out of fold (scikit-learn ``HistGradientBoostingClassifier`` with early stopping on an
    internal validation split; the classes are weighted to equal sums).

    Args:
        x1, x0: ``[n, F]`` rows of the two classes.
        k: folds.
        seed: fold assignment and classifier seeds.
        groups1, groups0: optional group labels: rows with the same label (in either class)
            are put in the same fold, e.g. an event present in both classes.
        extra: name -> rows scored by the fold models only (never trained on).
        ensemble: classifiers per fold, averaged (reduces the variance of the score at small
            S/B, as CATHODE's ensemble of the best epochs).
        max_iter, learning_rate, max_leaf_nodes, min_samples_leaf: boosted-tree settings.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    x1 = np.asarray(x1, dtype=np.float64)
    x0 = np.asarray(x0, dtype=np.float64)
    if len(x1) < k or len(x0) < k:
        raise StatisticsInputError(f"kfold_classifier: need at least k={k} rows per class, found "
                         f"{len(x1)} and {len(x0)}")
    rng = np.random.default_rng(seed)
    if (groups1 is None) != (groups0 is None):
        raise StatisticsInputError("kfold_classifier: give groups for both classes or for neither")
    if groups1 is not None:
        g = np.concatenate([np.asarray(groups1), np.asarray(groups0)])
        f = _folds(len(g), k, rng, g)
        f1, f0 = f[: len(x1)], f[len(x1):]
    else:
        f1, f0 = _folds(len(x1), k, rng, None), _folds(len(x0), k, rng, None)
    s1, s0 = np.zeros(len(x1)), np.zeros(len(x0))
    extra = {name: np.asarray(v, dtype=np.float64) for name, v in (extra or {}).items()}
    ex_fold = {name: rng.integers(0, k, len(v)) for name, v in extra.items()}
    ex_score = {name: np.zeros(len(v)) for name, v in extra.items()}
    for fold in range(k):
        tr1, tr0 = f1 != fold, f0 != fold
        x = np.concatenate([x1[tr1], x0[tr0]])
        y = np.concatenate([np.ones(tr1.sum()), np.zeros(tr0.sum())])
        w = np.where(y == 1, 1.0 / tr1.sum(), 1.0 / tr0.sum()) * len(y) / 2.0
        models = []
        for member in range(ensemble):
            clf = HistGradientBoostingClassifier(
                max_iter=max_iter, learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes,
                min_samples_leaf=min_samples_leaf, early_stopping=True, validation_fraction=0.2,
                n_iter_no_change=10, random_state=int(seed) * 1000 + fold * 10 + member)
            clf.fit(x, y, sample_weight=w)
            models.append(clf)

        def score(rows: NDArray[np.float64], models=models) -> NDArray[np.float64]:
            if len(rows) == 0:
                return np.zeros(0)
            return np.mean([m.predict_proba(rows)[:, 1] for m in models], axis=0)

        s1[~tr1] = score(x1[~tr1])
        s0[~tr0] = score(x0[~tr0])
        for name, rows in extra.items():
            sel = ex_fold[name] == fold
            ex_score[name][sel] = score(rows[sel])
    auc = float(roc_auc_score(np.r_[np.ones(len(s1)), np.zeros(len(s0))], np.r_[s1, s0]))
    return KFoldResult(score1=s1, score0=s0, extra=ex_score, auc=auc)


def sic_at_background_efficiency(scores_bkg: ArrayLike, scores_sig: ArrayLike,
                                 efficiencies: Sequence[float]) -> NDArray[np.float64]:
    """SIC = ε_S / sqrt(ε_B) at cuts keeping the fractions ``efficiencies`` of the background
    (the cut is the background score quantile; ties at the cut count as passing)."""
    b = np.sort(np.asarray(scores_bkg, dtype=np.float64))
    s = np.asarray(scores_sig, dtype=np.float64)
    out = []
    for eff in efficiencies:
        n_pass = max(round(eff * len(b)), 1)
        cut = b[len(b) - n_pass]
        eb = np.mean(b >= cut)
        out.append(np.mean(s >= cut) / np.sqrt(eb))
    return np.asarray(out)
