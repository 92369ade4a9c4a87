"""Score distributions, ROC curves and mass spectra per category, from hist objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hist
import numpy as np

from coffea_ad._optional import require
from coffea_ad.atomic import atomic_path
from coffea_ad.plotting.labels import DatasetStyle, PlotLabel, dataset_styles

__all__ = [
    "cms_figure",
    "events_ylabel",
    "plot_mass_by_category",
    "plot_roc",
    "plot_score_distributions",
    "save_figure",
]


def cms_figure(**subplots: Any) -> tuple[Any, Any]:
    """A matplotlib figure in CMS style (Agg backend: no screen needed)."""
    mpl = require("matplotlib", purpose="plots")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot", purpose="plots")
    hep = require("mplhep", purpose="CMS-style plots")
    plt.style.use(hep.style.CMS)
    fig, ax = plt.subplots(**subplots)
    return fig, ax


def events_ylabel(label: PlotLabel | None, what: str = "Events") -> str:
    """``"Events"`` for yields normalised to a luminosity, otherwise a label that says the
    numbers are sums of generator weights (not events at any luminosity)."""
    if label is not None and label.lumi_fb is not None:
        return what
    return f"{what} (unnormalised, \u03a3 genWeight)"


def save_figure(fig: Any, path: str | Path | None, *, formats: Sequence[str] = ()) -> list[Path]:
    """Save ``fig`` at ``path`` (format by suffix) and once more per extra suffix in
    ``formats`` (e.g. ``("pdf",)`` beside a PNG), each through a temporary file renamed into
    place; close it in pyplot's registry. Returns the paths written."""
    plt = require("matplotlib.pyplot", purpose="plots")
    written: list[Path] = []
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        suffixes = [path.suffix.lstrip(".") or "png"]
        suffixes += [f.lstrip(".") for f in formats if f.lstrip(".") not in suffixes]
        for fmt in suffixes:
            target = path.with_suffix(f".{fmt}")
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format=fmt, bbox_inches="tight", dpi=110)
            written.append(target)
    plt.close(fig)  # drop from pyplot's registry; the Figure object stays usable
    return written


def _finish(fig: Any, path: str | Path | None, label: PlotLabel | None, *,
            right_ax: Any = None, formats: Sequence[str] = ()) -> Any:
    (label or PlotLabel()).draw(fig.axes[0], right_ax=right_ax)
    save_figure(fig, path, formats=formats)
    return fig


def _styles(names: Sequence[str], styles: Mapping[str, DatasetStyle] | None
            ) -> dict[str, DatasetStyle]:
    auto = dataset_styles(list(names))
    return {n: (styles or {}).get(n, auto[n]) for n in names}


def _trim_x(ax: Any, edges: np.ndarray, filled: np.ndarray) -> None:
    """x-range from the first to the last filled bin (one empty bin of margin each side):
    a wide fixed axis (AE loss from 1e-3 to 1e2, m_T to 6 TeV) left most of the plot empty."""
    idx = np.flatnonzero(filled)
    if idx.size == 0:
        return
    lo, hi = max(idx[0] - 1, 0), min(idx[-1] + 2, len(edges) - 1)
    ax.set_xlim(edges[lo], edges[hi])


def plot_score_distributions(
    h: hist.Hist, path: str | Path | None, *, datasets: Sequence[str] | None = None,
    xlabel: str | None = None, label: PlotLabel | None = None,
    styles: Mapping[str, DatasetStyle] | None = None, formats: Sequence[str] = (),
) -> Any:
    """Unit-normalized score distribution of each dataset (``h``: dataset × score).

    Args:
        h: histogram with a ``dataset`` axis and one score axis.
        path: where to save (PNG or PDF by suffix), or ``None``.
        datasets: which datasets (default: all).
        xlabel: x-axis label (default: the score axis label).
        label: the plot label (default: generated samples, see :mod:`.labels`).
        styles: display name and colour per dataset (default: the key, palette in order).
        formats: extra formats written beside ``path`` (e.g. ``("pdf",)``).

    Returns:
        The matplotlib ``Figure``.
    """
    fig, ax = cms_figure(figsize=(9, 7))
    hep = require("mplhep")
    names = list(datasets) if datasets is not None else list(h.axes["dataset"])
    style = _styles(list(h.axes["dataset"]), styles)
    sub = h[{"dataset": 0}]
    filled = np.zeros(sub.axes[0].size, dtype=bool)
    for name in names:
        sub = h[{"dataset": hist.loc(name)}]
        total = sub.sum(flow=True).value
        if total <= 0:
            continue
        filled |= sub.values() > 0
        hep.histplot(sub.values() / total, sub.axes[0].edges, ax=ax, label=style[name].label,
                     color=style[name].color)
    ax.set_xscale("log")
    _trim_x(ax, sub.axes[0].edges, filled)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel or sub.axes[0].label)
    ax.set_ylabel("Fraction of jets")
    ax.legend()
    return _finish(fig, path, label, formats=formats)


def plot_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: str | Path | None, *,
    label: PlotLabel | None = None, formats: Sequence[str] = (),
) -> Any:
    """ROC curves: ``{name: (fpr, tpr, auc)}``, background efficiency on a log axis.

    The random classifier (FPR = TPR) is drawn point by point so that it shows on the log
    axis; the legend sits outside the axes, so it never hides a curve.
    """
    fig, ax = cms_figure(figsize=(11, 8))
    for name, (fpr, tpr, auc_value) in curves.items():
        f, t = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
        ok = f > 0  # FPR = 0 has no place on a log axis
        ax.plot(t[ok], f[ok], label=f"{name}, AUC = {auc_value:.3f}")
    line = np.logspace(-4, 0, 200)
    ax.plot(line, line, ls="--", color="grey", label="Random, AUC = 0.5")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.0)
    ax.set_xlim(0, 1)
    ax.set_xlabel("Signal efficiency")
    ax.set_ylabel("Background efficiency")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=14, frameon=False)
    return _finish(fig, path, label, formats=formats)


def plot_mass_by_category(
    h: hist.Hist, path: str | Path | None, *, mass: str = "mt",
    datasets: Sequence[str] | None = None, normalize: bool = False,
    label: PlotLabel | None = None, styles: Mapping[str, DatasetStyle] | None = None,
    formats: Sequence[str] = (),
) -> Any:
    """Mass spectrum per category (one panel each), every dataset overlaid
    (``h``: dataset × systematic × category × score × mass; nominal, summed over score).

    The label spreads over the panels (experiment text above the first, luminosity and
    energy above the last) so that it fits however many categories there are.
    """
    cats = list(h.axes["category"])
    # wspace: each panel has its own y scale, whose tick labels need room from the neighbour
    fig, axes = cms_figure(ncols=len(cats), figsize=(7 * len(cats), 7), sharey=False,
                           gridspec_kw={"wspace": 0.3})
    axes = np.atleast_1d(axes)
    hep = require("mplhep")
    names = list(datasets) if datasets is not None else list(h.axes["dataset"])
    style = _styles(list(h.axes["dataset"]), styles)
    filled = np.zeros(h.axes[mass].size, dtype=bool)
    for ax, cat in zip(axes, cats, strict=True):
        panel_total = 0.0
        for name in names:
            sub = h[{"dataset": hist.loc(name), "systematic": hist.loc("nominal"),
                     "category": hist.loc(cat), "score": sum}]
            vals = sub.values()
            filled |= vals > 0
            panel_total += float(vals.sum())
            if normalize and vals.sum() > 0:
                vals = vals / vals.sum()
            hep.histplot(vals, sub.axes[mass].edges, ax=ax, label=style[name].label,
                         color=style[name].color,
                         yerr=np.sqrt(sub.variances()) if not normalize else None)
        ax.set_xlabel(h.axes[mass].label)
        if panel_total <= 0:  # an empty panel says so instead of showing blank axes
            ax.text(0.5, 0.5, "no events in this category", transform=ax.transAxes,
                    ha="center", va="center", fontsize=16, color="grey")
        ax.set_yscale("log")
        # headroom above the highest bin: the legend goes there instead of over a peak
        lo, hi = ax.get_ylim()
        if lo > 0 and hi > lo:
            ax.set_ylim(lo, hi * (hi / lo) ** 0.5)
        # the category goes in the legend title: a panel title would collide with the label
        ax.legend(fontsize=14, title=f"{h.axes['category'].label}: {cat}", title_fontsize=15)
    for ax in axes:  # one x-range for all panels, so that they compare by eye
        _trim_x(ax, np.asarray(h.axes[mass].edges), filled)
    axes[0].set_ylabel("Fraction of events" if normalize else events_ylabel(label))
    return _finish(fig, path, label, right_ax=axes[-1], formats=formats)
