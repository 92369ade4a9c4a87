"""Score distributions, ROC curves and mass spectra per category, from hist objects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hist
import numpy as np

from coffea_ad._optional import require
from coffea_ad.atomic import atomic_path

__all__ = ["cms_figure", "plot_mass_by_category", "plot_roc", "plot_score_distributions"]


def cms_figure(**subplots: Any) -> tuple[Any, Any]:
    """A matplotlib figure in CMS style (Agg backend: no screen needed)."""
    mpl = require("matplotlib", purpose="plots")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot", purpose="plots")
    hep = require("mplhep", purpose="CMS-style plots")
    plt.style.use(hep.style.CMS)
    fig, ax = plt.subplots(**subplots)
    return fig, ax


def _save(fig: Any, path: str | Path, *, label: str = "") -> Path:
    # data=False already writes "Simulation" after "CMS"; label adds e.g. "Preliminary"
    hep = require("mplhep")
    import matplotlib.pyplot as plt

    axes = fig.axes
    hep.cms.label(label, data=False, ax=axes[0], loc=0, com=13.6)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight", dpi=110)
    plt.close(fig)
    return path


def plot_score_distributions(
    h: hist.Hist, path: str | Path, *, datasets: Sequence[str] | None = None,
    xlabel: str | None = None,
) -> Path:
    """Unit-normalized score distribution of each dataset (``h``: dataset × score)."""
    fig, ax = cms_figure(figsize=(9, 7))
    hep = require("mplhep")
    names = list(datasets) if datasets is not None else list(h.axes["dataset"])
    for name in names:
        sub = h[{"dataset": hist.loc(name)}]
        total = sub.sum(flow=True).value
        if total <= 0:
            continue
        hep.histplot(sub.values() / total, sub.axes[0].edges, ax=ax, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel or sub.axes[0].label)
    ax.set_ylabel("Fraction of jets")
    ax.legend()
    return _save(fig, path)


def plot_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: str | Path
) -> Path:
    """ROC curves: ``{label: (fpr, tpr, auc)}``, background efficiency on a log axis."""
    fig, ax = cms_figure(figsize=(8, 8))
    for label, (fpr, tpr, auc_value) in curves.items():
        ax.plot(tpr, fpr, label=f"{label} (AUC = {auc_value:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="random")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.0)
    ax.set_xlim(0, 1)
    ax.set_xlabel("Signal efficiency")
    ax.set_ylabel("Background efficiency")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_mass_by_category(
    h: hist.Hist, path: str | Path, *, mass: str = "mt", datasets: Sequence[str] | None = None,
    normalize: bool = False,
) -> Path:
    """Mass spectrum per category (one panel each), every dataset overlaid
    (``h``: dataset × systematic × category × score × mass; nominal, summed over score)."""
    cats = list(h.axes["category"])
    fig, axes = cms_figure(ncols=len(cats), figsize=(7 * len(cats), 7), sharey=False)
    axes = np.atleast_1d(axes)
    hep = require("mplhep")
    names = list(datasets) if datasets is not None else list(h.axes["dataset"])
    for ax, cat in zip(axes, cats, strict=True):
        for name in names:
            sub = h[{"dataset": hist.loc(name), "systematic": hist.loc("nominal"),
                     "category": hist.loc(cat), "score": sum}]
            vals = sub.values()
            if normalize and vals.sum() > 0:
                vals = vals / vals.sum()
            hep.histplot(vals, sub.axes[mass].edges, ax=ax, label=name,
                         yerr=np.sqrt(sub.variances()) if not normalize else None)
        ax.set_xlabel(h.axes[mass].label)
        ax.set_yscale("log")
        # the category goes in the legend title: a panel title would collide with the CMS label
        ax.legend(fontsize=14, title=f"{h.axes['category'].label}: {cat}", title_fontsize=15)
    axes[0].set_ylabel("Events (weighted)")
    return _save(fig, path)
