"""CMS-style (mplhep) plots of the statistics in :mod:`coffea_ad.stats`.

Each function takes the result object of a statistics function, draws it, saves it when a
``path`` is given (PNG or PDF by suffix) and returns the matplotlib ``Figure`` so that a
caller (or a test) can inspect or restyle it. Figures are closed in pyplot's registry after
saving, so loops over many plots do not accumulate memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from coffea_ad._optional import require
from coffea_ad.atomic import atomic_path
from coffea_ad.plotting.distributions import cms_figure
from coffea_ad.stats.abcd import ABCDClosure
from coffea_ad.stats.bumphunt import DijetFit, SignalFit
from coffea_ad.stats.quantile import QuantileThresholds

__all__ = ["plot_abcd_closure", "plot_bumphunt", "plot_qr_thresholds", "plot_roc_sic"]


def _finish(fig: Any, path: str | Path | None, *, label: str, com: float,
            right_ax: Any = None) -> Any:
    hep = require("mplhep", purpose="CMS-style plots")
    plt = require("matplotlib.pyplot", purpose="plots")
    # mplhep adds "Simulation" itself for data=False; the energy goes on its own (right-most)
    # axis so that the two labels do not overlap on narrow panels
    hep.cms.label(label, data=False, ax=fig.axes[0], loc=0, rlabel="", fontsize=22)
    ax = right_ax if right_ax is not None else fig.axes[0]
    ax.text(1.0, 1.01, f"({com:g} TeV)", transform=ax.transAxes, ha="right", va="bottom",
            fontsize=20)
    if path is not None:
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, bbox_inches="tight", dpi=110)
    plt.close(fig)  # drop from pyplot's registry; the Figure object stays usable
    return fig


def _ratio_figure() -> tuple[Any, Any, Any]:
    fig, (top, bottom) = cms_figure(
        nrows=2, figsize=(9, 9), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
    )
    return fig, top, bottom


def plot_roc_sic(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | Path | None = None,
    *,
    label: str = "Preliminary",
    com: float = 13.6,
) -> Any:
    """Background rejection 1/FPR versus TPR (left) and SIC = TPR/sqrt(FPR) (right).

    Args:
        curves: ``{name: (fpr, tpr)}`` as returned by :func:`coffea_ad.stats.roc_curve`.
        path: where to save the figure, or ``None``.
        label: text after "CMS Simulation" (mplhep adds "Simulation").
        com: centre-of-mass energy (TeV) in the label.

    Returns:
        The matplotlib ``Figure`` (axes: ROC, SIC). Points with FPR = 0 are not drawn.
    """
    fig, (ax_roc, ax_sic) = cms_figure(ncols=2, figsize=(16, 7.5))
    for name, (fpr, tpr) in curves.items():
        f = np.asarray(fpr, dtype=np.float64)
        t = np.asarray(tpr, dtype=np.float64)
        ok = f > 0
        ax_roc.plot(t[ok], 1.0 / f[ok], label=name)
        ax_sic.plot(t[ok], t[ok] / np.sqrt(f[ok]), label=name)
    t_line = np.linspace(1e-3, 1, 200)
    ax_roc.plot(t_line, 1.0 / t_line, ls=":", color="grey", label="random")
    ax_sic.axhline(1.0, ls=":", color="grey", label="random")
    ax_roc.set_yscale("log")
    ax_roc.set_xlabel("Signal efficiency (TPR)")
    ax_roc.set_ylabel("Background rejection (1/FPR)")
    ax_sic.set_xlabel("Signal efficiency (TPR)")
    ax_sic.set_ylabel("SIC = TPR/\u221aFPR")  # mathtext \sqrt has no glyph in the CMS font
    for ax in (ax_roc, ax_sic):
        ax.set_xlim(0, 1)
        ax.legend(fontsize=14)
    return _finish(fig, path, label=label, com=com, right_ax=ax_sic)


def plot_abcd_closure(
    closure: ABCDClosure,
    path: str | Path | None = None,
    *,
    mass_label: str = r"$m_{T}$ [GeV]",
    label: str = "Preliminary",
    com: float = 13.6,
) -> Any:
    """Observed N_A and the ABCD prediction per mass bin, with their ratio below.

    Args:
        closure: from :func:`coffea_ad.stats.abcd_closure` with a mass binning.
        path: where to save the figure, or ``None``.
        mass_label: x-axis label.
        label: text after "CMS Simulation" (mplhep adds "Simulation").
        com: centre-of-mass energy (TeV) in the label.

    Returns:
        The ``Figure`` (axes: yields, observed/predicted); chi2/ndf in the legend title.
    """
    pred = closure.prediction
    edges = pred.counts.mass_edges
    if edges is None:
        msg = "plot_abcd_closure: expected a closure with mass bins (mass_edges), found none"
        raise ValueError(msg)
    hep = require("mplhep", purpose="CMS-style plots")
    fig, top, bottom = _ratio_figure()
    centres = 0.5 * (edges[1:] + edges[:-1])
    hep.histplot(pred.predicted, edges, ax=top, label=r"Predicted $N_B N_C / N_D$")
    top.stairs(pred.predicted + pred.predicted_err, edges,
               baseline=pred.predicted - pred.predicted_err, fill=True, alpha=0.3,
               label="Prediction unc.")
    top.errorbar(centres, pred.observed, yerr=pred.observed_err, fmt="o", color="black",
                 label="Observed $N_A$")
    top.set_yscale("log")
    top.set_ylabel("Events (region A)")
    top.legend(title=rf"$\chi^2$/ndf = {closure.chi2:.1f}/{closure.ndf}, p = {closure.p_value:.2g}",
               fontsize=14, title_fontsize=14)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = pred.observed / pred.predicted
        r_err = np.sqrt(pred.observed_err**2 + pred.predicted_err**2) / pred.predicted
    bottom.errorbar(centres, ratio, yerr=r_err, fmt="o", color="black")
    bottom.axhline(1.0, ls="--", color="grey")
    bottom.set_ylabel("Obs. / pred.")
    bottom.set_xlabel(mass_label)
    return _finish(fig, path, label=label, com=com)


def plot_qr_thresholds(
    thresholds: QuantileThresholds,
    path: str | Path | None = None,
    *,
    score: ArrayLike | None = None,
    mjj: ArrayLike | None = None,
    mass_label: str = r"$m_{jj}$ [GeV]",
    score_label: str = "Anomaly score",
    label: str = "Preliminary",
    com: float = 13.6,
) -> Any:
    """Binned quantile thresholds (points) and their smooth fit (lines) versus m_jj.

    Args:
        thresholds: from :func:`coffea_ad.stats.quantile_thresholds`.
        path: where to save the figure, or ``None``.
        score: optional background scores drawn as a 2-d histogram behind the curves.
        mjj: their m_jj (GeV).
        mass_label: x-axis label.
        score_label: y-axis label.
        label: text after "CMS Simulation" (mplhep adds "Simulation").
        com: centre-of-mass energy (TeV) in the label.

    Returns:
        The ``Figure``: one error-bar series and one line per quantile.
    """
    fig, ax = cms_figure(figsize=(10, 8))
    edges = thresholds.mass_edges
    if score is not None and mjj is not None:
        s = np.asarray(score, dtype=np.float64)
        hi = np.nanmax(thresholds.binned) * 1.5
        ax.hist2d(np.asarray(mjj, dtype=np.float64), s, bins=[edges, np.linspace(s.min(), hi, 60)],
                  cmap="Greys", norm="log")
    centres = 0.5 * (edges[1:] + edges[:-1])
    m_fine = np.linspace(edges[0], edges[-1], 300)
    fine = thresholds.evaluate(m_fine)
    for k, q in enumerate(thresholds.quantiles):
        eb = ax.errorbar(centres, thresholds.binned[:, k], yerr=thresholds.binned_err[:, k],
                         xerr=0.5 * np.diff(edges), fmt="o", label=f"q = {q:g}")
        ax.plot(m_fine, fine[:, k], color=eb[0].get_color())
    ax.set_xlabel(mass_label)
    ax.set_ylabel(score_label)
    ax.legend(title=f"Threshold ({thresholds.fit} fit)", fontsize=14, title_fontsize=14)
    return _finish(fig, path, label=label, com=com)


def plot_bumphunt(
    fit: SignalFit | DijetFit,
    path: str | Path | None = None,
    *,
    mass_label: str = r"$m_{jj}$ [GeV]",
    label: str = "Preliminary",
) -> Any:
    """m_jj spectrum with the background-only (and S+B) fit, pulls below.

    The top panel shows events per GeV (counts / bin width) so that variable bins read
    correctly; the pulls are (data - background fit) / sqrt(background fit), the usual panel
    of dijet searches in which a signal shows up as a run of positive pulls.

    Args:
        fit: :func:`coffea_ad.stats.fit_dijet_background` or
            :func:`coffea_ad.stats.fit_signal_plus_background` result.
        path: where to save the figure, or ``None``.
        mass_label: x-axis label.
        label: text after "CMS Simulation" (mplhep adds "Simulation").

    Returns:
        The ``Figure`` (axes: spectrum, pulls).
    """
    bkg = fit.background_only if isinstance(fit, SignalFit) else fit
    hep = require("mplhep", purpose="CMS-style plots")
    fig, top, bottom = _ratio_figure()
    edges, n = bkg.edges, bkg.counts
    width = np.diff(edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    top.errorbar(centres, n / width, yerr=np.sqrt(n) / width, xerr=0.5 * width, fmt="o",
                 color="black", label="Data")
    hep.histplot(bkg.expected / width, edges, ax=top, color="tab:blue",
                 label=f"Dijet function ({bkg.params.size} par.), "
                 rf"$\chi^2$/ndf = {bkg.deviance:.1f}/{bkg.ndf}")
    if isinstance(fit, SignalFit):
        hep.histplot(fit.expected / width, edges, ax=top, color="tab:red",
                     label=rf"S+B: $\mu$ = {fit.mu:.3g} $\pm$ {fit.mu_err:.3g}, "
                     rf"$Z_{{loc}}$ = {fit.significance:.2f}")
    top.set_yscale("log")
    top.set_ylabel("Events / GeV")
    top.legend(fontsize=13)
    bottom.bar(centres, bkg.pulls, width=width, color="tab:blue", alpha=0.7)
    bottom.axhline(0.0, color="grey", lw=1)
    bottom.set_ylabel("(Data \u2212 Fit)/\u221aFit")
    bottom.set_xlabel(mass_label)
    return _finish(fig, path, label=label, com=bkg.sqrt_s / 1000.0)
