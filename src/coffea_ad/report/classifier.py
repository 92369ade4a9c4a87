"""The signal-region classifier of the resonant (CATHODE-like) analysis: data versus the
cVAE background template, one implementation for the report and the validation study."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from coffea_ad._optional import require
from coffea_ad.errors import InvalidArgumentError
from coffea_ad.stats.roc import auc, max_sic, roc_curve

__all__ = ["fit_data_vs_template", "sr_classifier"]


def fit_data_vs_template(x_data: ArrayLike, x_template: ArrayLike, *,
                         weights_data: ArrayLike | None = None,
                         weights_template: ArrayLike | None = None, seed: int = 0,
                         **options: Any) -> Any:
    """A gradient-boosted classifier (``sklearn.ensemble.HistGradientBoostingClassifier``)
    of data (label 1) versus template (label 0).

    Each class carries half of the weight, whatever the number of template draws. ``options``
    go to the classifier (default ``max_iter=100``). Score rows with
    ``clf.predict_proba(x)[:, 1]``: above 0.5 where the data exceed the template.
    """
    ensemble = require("sklearn.ensemble", purpose="the signal-region classifier")
    xd, xt = np.asarray(x_data, dtype=np.float64), np.asarray(x_template, dtype=np.float64)
    wd = np.ones(len(xd)) if weights_data is None else np.asarray(weights_data, np.float64)
    wt = (np.ones(len(xt)) if weights_template is None
          else np.asarray(weights_template, np.float64))
    x = np.concatenate([xd, xt])
    y = np.concatenate([np.ones(len(xd)), np.zeros(len(xt))])
    w = np.concatenate([wd / wd.sum(), wt / wt.sum()])
    clf = ensemble.HistGradientBoostingClassifier(**({"max_iter": 100} | options),
                                                  random_state=seed)
    clf.fit(x, y, sample_weight=w)
    return clf


def sr_classifier(
    arrays: Mapping[str, Mapping[str, Any]],
    signals: Sequence[str],
    *,
    folds: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """Classifier of data versus the cVAE template in the signal region (CATHODE strategy,
    Hallin et al., arXiv:2109.00546), from the resonant processor's ``arrays``.

    "Data" is every dataset's signal-region rows (features and m_jj); the template is the
    cVAE samples drawn at the same m_jj. The classifier of :func:`fit_data_vs_template` is
    trained ``folds``-fold, each data row scored by the fold that did not see it; its score then separates the signal datasets'
    rows from the others (truth labels the classifier never saw).

    Returns:
        ``{"auc_data_vs_template", "n_data", "n_template", "curves": {signal: (fpr, tpr)},
        "signals": {signal: {"auc", "max_sic", "max_sic_tpr", "max_sic_fpr"}}}``.

    Raises:
        ValueError: no template rows (the run had no sampler) or too few rows to split.
    """
    selection = require("sklearn.model_selection", purpose="the signal-region classifier")

    def rows(kind: str, names: Sequence[str]) -> tuple[Any, Any, Any]:
        def col(n: str, name: str) -> np.ndarray:
            value = arrays[n][name]  # numpy (run directory) or a coffea column_accumulator
            return np.asarray(getattr(value, "value", value))

        x = [np.column_stack([col(n, f"{kind}_x"), col(n, f"{kind}_mjj")]) for n in names]
        w = [col(n, f"{kind}_weight") for n in names]
        owner = [np.full(len(v), i) for i, v in enumerate(w)]
        return np.concatenate(x), np.concatenate(w), np.concatenate(owner)

    names = list(arrays)
    xd, wd, owner = rows("data", names)
    xt, wt, _ = rows("cvae", names)
    if len(xt) == 0:
        raise InvalidArgumentError("no cVAE template rows: run the resonant processor with its sampler")
    if min(len(xd), len(xt)) < 2 * folds:
        raise InvalidArgumentError(f"too few signal-region rows for {folds} folds: {len(xd)} data, "
                         f"{len(xt)} template")
    x = np.concatenate([xd, xt])
    y = np.concatenate([np.ones(len(xd)), np.zeros(len(xt))])
    w = np.concatenate([wd, wt])
    pred = np.zeros(len(x))
    kfold = selection.StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in kfold.split(x, y):
        is_data = y[train] == 1
        clf = fit_data_vs_template(x[train][is_data], x[train][~is_data],
                                   weights_data=w[train][is_data],
                                   weights_template=w[train][~is_data], seed=seed)
        pred[test] = clf.predict_proba(x[test])[:, 1]
    out: dict[str, Any] = {
        "auc_data_vs_template": auc(pred[len(xd):], pred[:len(xd)], weights_bkg=wt,
                                    weights_sig=wd),
        "n_data": len(xd), "n_template": len(xt), "curves": {}, "signals": {},
    }
    is_sig = np.isin(owner, [names.index(n) for n in signals if n in names])
    score = pred[:len(xd)]
    for name in signals:
        if name not in names:
            continue
        mine = owner == names.index(name)
        if not mine.any() or not (~is_sig).any():
            continue
        fpr, tpr, _ = roc_curve(score[~is_sig], score[mine], weights_bkg=wd[~is_sig],
                                weights_sig=wd[mine])
        out["curves"][name] = (fpr, tpr)
        entry = {"auc": auc(score[~is_sig], score[mine], weights_bkg=wd[~is_sig],
                            weights_sig=wd[mine])}
        try:
            wp = max_sic(score[~is_sig], score[mine], weights_bkg=wd[~is_sig],
                         weights_sig=wd[mine])
            entry.update(max_sic=wp.sic, max_sic_tpr=wp.tpr, max_sic_fpr=wp.fpr)
        except ValueError:  # too little background left for a SIC within 20 %
            entry.update(max_sic=float("nan"), max_sic_tpr=float("nan"),
                         max_sic_fpr=float("nan"))
        out["signals"][name] = entry
    return out
