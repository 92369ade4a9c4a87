"""CMS-style (mplhep) plots of the statistics in :mod:`coffea_ad.stats`.

Each function takes the result object of a statistics function, draws it, saves it when a
``path`` is given (PNG or PDF by suffix; ``formats`` adds others beside it) and returns the
matplotlib ``Figure`` so that a caller (or a test) can inspect or restyle it. Figures are
closed in pyplot's registry after saving, so loops over many plots do not accumulate memory.
The label above the axes is a :class:`~coffea_ad.plotting.labels.PlotLabel` (default: a
generated-sample label, never a CMS one; see :mod:`coffea_ad.plotting.labels`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from coffea_ad._optional import require
from coffea_ad.errors import StatisticsInputError
from coffea_ad.plotting.distributions import _finish, cms_figure, events_ylabel
from coffea_ad.plotting.labels import PlotLabel
from coffea_ad.stats.abcd import ABCDClosure
from coffea_ad.stats.bumphunt import DijetFit, SignalFit
from coffea_ad.stats.quantile import QuantileThresholds

__all__ = [
    "closure_ratio_limits",
    "plot_abcd_closure",
    "plot_bumphunt",
    "plot_qr_thresholds",
    "plot_roc_sic",
]


def closure_ratio_limits(ratio: ArrayLike, err: ArrayLike, *, min_half: float = 0.25,
                         max_half: float = 1.0) -> tuple[float, float]:
    """y-range of a ratio panel centred on 1: wide enough for the points and their errors
    (half-width at least ``min_half``), never wider than ``1 ± max_half``, so that a closure
    near 1 stays readable when one bin with few events is far off (it is drawn as an arrow).
    """
    r = np.asarray(ratio, dtype=np.float64)
    e = np.asarray(err, dtype=np.float64)
    ok = np.isfinite(r) & np.isfinite(e)
    reach = np.abs(r[ok] - 1.0) + e[ok]
    # the median bin sets the scale so that one outlier does not flatten the others
    half = float(np.clip(1.2 * np.max(reach[reach <= 3 * np.median(reach)], initial=0.0)
                         if reach.size else min_half, min_half, max_half))
    return 1.0 - half, 1.0 + half


def _ratio_figure() -> tuple[Any, Any, Any]:
    fig, (top, bottom) = cms_figure(
        nrows=2, figsize=(9, 9), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
    )
    return fig, top, bottom


def plot_roc_sic(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | Path | None = None,
    *,
    label: PlotLabel | None = None,
    formats: Sequence[str] = (),
) -> Any:
    """Background rejection 1/FPR versus TPR (left) and SIC = TPR/sqrt(FPR) (right).

    Args:
        curves: ``{name: (fpr, tpr)}`` as returned by :func:`coffea_ad.stats.roc_curve`.
        path: where to save the figure, or ``None``.
        label: the plot label (luminosity and energy included).
        formats: extra formats written beside ``path`` (e.g. ``("pdf",)``).

    Returns:
        The matplotlib ``Figure`` (axes: ROC, SIC). Points with FPR = 0 are not drawn. The
        random classifier (TPR = FPR) is the dashed line: 1/TPR and SIC = sqrt(TPR).
    """
    fig, (ax_roc, ax_sic) = cms_figure(ncols=2, figsize=(16, 7.5))
    for name, (fpr, tpr) in curves.items():
        f = np.asarray(fpr, dtype=np.float64)
        t = np.asarray(tpr, dtype=np.float64)
        ok = f > 0
        ax_roc.plot(t[ok], 1.0 / f[ok], label=name)
        ax_sic.plot(t[ok], t[ok] / np.sqrt(f[ok]), label=name)
    t_line = np.logspace(-3, 0, 200)
    ax_roc.plot(t_line, 1.0 / t_line, ls="--", color="grey", label="Random")
    ax_sic.plot(t_line, np.sqrt(t_line), ls="--", color="grey", label="Random")
    ax_roc.set_yscale("log")
    ax_roc.set_xlabel("Signal efficiency (TPR)")
    ax_roc.set_ylabel("Background rejection (1/FPR)")
    ax_sic.set_xlabel("Signal efficiency (TPR)")
    ax_sic.set_ylabel("SIC = TPR/\u221aFPR")  # mathtext \sqrt has no glyph in the CMS font
    for ax in (ax_roc, ax_sic):
        ax.set_xlim(0, 1)
    # one legend for both panels, outside them on the right: inside it hid the curves
    ax_sic.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=14, frameon=False)
    return _finish(fig, path, label, right_ax=ax_sic, formats=formats)


def plot_abcd_closure(
    closure: ABCDClosure,
    path: str | Path | None = None,
    *,
    mass_label: str = r"$m_{T}$ [GeV]",
    label: PlotLabel | None = None,
    formats: Sequence[str] = (),
) -> Any:
    """Observed N_A and the ABCD prediction per mass bin, with their ratio below.

    Args:
        closure: from :func:`coffea_ad.stats.abcd_closure` with a mass binning.
        path: where to save the figure, or ``None``.
        mass_label: x-axis label.
        label: the plot label (luminosity and energy included).
        formats: extra formats written beside ``path`` (e.g. ``("pdf",)``).

    Returns:
        The ``Figure`` (axes: yields, observed/predicted); chi2/ndf in the legend title.
    """
    pred = closure.prediction
    edges = pred.counts.mass_edges
    if edges is None:
        msg = "plot_abcd_closure: expected a closure with mass bins (mass_edges), found none"
        raise StatisticsInputError(msg)
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
    top.set_ylabel(events_ylabel(label, "Region A events"))
    top.legend(title=rf"$\chi^2$/ndf = {closure.chi2:.1f}/{closure.ndf}, p = {closure.p_value:.2g}",
               fontsize=14, title_fontsize=14)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = pred.observed / pred.predicted
        band = pred.predicted_err / pred.predicted
        obs_rel = pred.observed_err / pred.predicted
    # the prediction's uncertainty as a band around 1, the observed statistical error on the
    # points: a closure reads as points inside the band
    bottom.stairs(1.0 + band, edges, baseline=1.0 - band, fill=True, alpha=0.3,
                  color="tab:blue", label="Prediction unc.")
    bottom.axhline(1.0, ls="--", color="grey")
    lo, hi = closure_ratio_limits(ratio, np.sqrt(obs_rel**2 + band**2))
    shown = np.isfinite(ratio)
    inside = shown & (ratio >= lo) & (ratio <= hi)
    bottom.errorbar(centres[inside], ratio[inside], yerr=obs_rel[inside], fmt="o",
                    color="black")
    # points beyond the range stay visible as arrows at the edge, with their value
    for x, r in zip(centres[shown & ~inside], ratio[shown & ~inside], strict=True):
        y = hi if r > hi else lo
        bottom.annotate(f"{r:.2g}", xy=(x, y), xytext=(x, y - 0.12 * (hi - lo) * np.sign(r - 1)),
                        ha="center", va="center", fontsize=11,
                        arrowprops={"arrowstyle": "->", "color": "black"})
    bottom.set_ylim(lo, hi)
    bottom.set_ylabel("Obs. / pred.")
    bottom.set_xlabel(mass_label)
    return _finish(fig, path, label, formats=formats)


def plot_qr_thresholds(
    thresholds: QuantileThresholds,
    path: str | Path | None = None,
    *,
    score: ArrayLike | None = None,
    mjj: ArrayLike | None = None,
    mass_label: str = r"$m_{jj}$ [GeV]",
    score_label: str = "Anomaly score",
    label: PlotLabel | None = None,
    formats: Sequence[str] = (),
) -> Any:
    """Binned quantile thresholds (points) and their smooth fit (lines) versus m_jj.

    Args:
        thresholds: from :func:`coffea_ad.stats.quantile_thresholds`.
        path: where to save the figure, or ``None``.
        score: optional background scores drawn as a 2-d histogram behind the curves.
        mjj: their m_jj (GeV).
        mass_label: x-axis label.
        score_label: y-axis label.
        label: the plot label (luminosity and energy included).
        formats: extra formats written beside ``path`` (e.g. ``("pdf",)``).

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
    return _finish(fig, path, label, formats=formats)


def plot_bumphunt(
    fit: SignalFit | DijetFit,
    path: str | Path | None = None,
    *,
    mass_label: str = r"$m_{jj}$ [GeV]",
    label: PlotLabel | None = None,
    formats: Sequence[str] = (),
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
        label: the plot label (luminosity and energy included).
        formats: extra formats written beside ``path`` (e.g. ``("pdf",)``).

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
    top.set_ylabel(events_ylabel(label, "Events / GeV"))
    top.legend(fontsize=13)
    bottom.bar(centres, bkg.pulls, width=width, color="tab:blue", alpha=0.7)
    bottom.axhline(0.0, color="grey", lw=1)
    # "Pull" fits the short panel ("(Data - Fit)/sqrt(Fit)" ran off its bottom); symmetric
    # limits of at least +-3.5 so that a 3 sigma run reads at a glance
    pulls = np.asarray(bkg.pulls, dtype=np.float64)
    reach = float(np.nanmax(np.abs(pulls), initial=0.0))
    bottom.set_ylim(-max(3.5, 1.2 * reach), max(3.5, 1.2 * reach))
    bottom.set_ylabel("Pull")
    bottom.set_xlabel(mass_label)
    if label is None:
        label = PlotLabel(com_tev=bkg.sqrt_s / 1000.0)
    return _finish(fig, path, label, formats=formats)
