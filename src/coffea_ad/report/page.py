"""One markdown page with the statistics and plots of a run's histograms.

Input is the processors' event histogram (axes ``dataset`` x ``systematic`` x ``category`` x
``score`` x mass, the contract of :mod:`coffea_ad.histos`), with the datasets split into
backgrounds (summed) and signals. The page holds, with the plots next to the numbers:

- weighted yields per dataset and category;
- per signal, the score performance against the summed background: AUC, max SIC (where the
  background keeps >= 25 effective MC events) and, only when the histograms hold events at a
  luminosity (``lumi_fb``), sigma = |(B + S) - B| / sqrt(B) at the best score cut with the
  "sensitive if >= 3" call (on sums of generator weights sigma means nothing: it scales with
  the number of generated events, so the page says "n/a (unnormalised)" instead);
- an ABCD closure per mass bin in the background, when a second variable is named
  (``abcd_y_axis``): the histogram must then carry that axis;
- for an m_jj histogram, a bump hunt per category: the dijet-function fit of the background,
  and for each signal an S+B fit of background + signal with the signal histogram as the
  template, whose mu should come back as 1.

Histogram bins stand in for events: a bin passes a score cut at its lower edge, and its
weight is the bin's sum of weights (flow bins included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from coffea_ad.atomic import atomic_write_text
from coffea_ad.errors import InvalidArgumentError, UnknownNameError
from coffea_ad.stats.abcd import abcd_closure
from coffea_ad.stats.bumphunt import fit_dijet_background, fit_signal_plus_background
from coffea_ad.stats.roc import histogram_score_bins, roc_curve
from coffea_ad.stats.significance import significance_scan

__all__ = ["ReportNumbers", "write_report"]


@dataclass
class ReportNumbers:
    """The numbers written on the page, for callers that want them as data.

    Attributes:
        yields: ``{dataset: {category: (sum w, sqrt(sum w^2))}}``.
        performance: ``{signal: {"auc", "max_sic", "max_sic_tpr", "max_sic_fpr",
            "sigma_max", "best_cut", "sensitive"}}``.
        abcd: ``{"chi2", "ndf", "p_value", "pulls", "integrated_ratio"}`` or empty.
        bumphunt: ``{category: {"chi2", "ndf", "p_value", signal: {"mu", "mu_err", "z"}}}``.
    """

    yields: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    performance: dict[str, dict[str, float]] = field(default_factory=dict)
    abcd: dict[str, Any] = field(default_factory=dict)
    bumphunt: dict[str, dict[str, Any]] = field(default_factory=dict)


def _binned_max_sic(bkg: tuple, sig: tuple, *, min_events: float = 25.0) -> dict[str, float]:
    """Max SIC over cuts at bin edges, keeping >= ``min_events`` effective background events
    (from the histogram's sum of w^2, which per-event :func:`max_sic` cannot see here)."""
    lower, vb, wb2 = bkg
    _, vs, _ = sig
    order = np.argsort(-lower)
    b = np.cumsum(vb[order])
    b2 = np.cumsum(wb2[order])
    s = np.cumsum(vs[order])
    with np.errstate(divide="ignore", invalid="ignore"):
        fpr, tpr = b / b[-1], s / s[-1]
        n_eff = np.where(b2 > 0, b * b / b2, 0.0)
        sic = np.where((fpr > 0) & (n_eff >= min_events), tpr / np.sqrt(fpr), -np.inf)
    i = int(np.argmax(sic))
    if not np.isfinite(sic[i]):
        return {"max_sic": float("nan"), "max_sic_tpr": float("nan"), "max_sic_fpr": float("nan")}
    return {"max_sic": float(sic[i]), "max_sic_tpr": float(tpr[i]), "max_sic_fpr": float(fpr[i])}


def _fmt(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}g}"


@dataclass
class _Page:
    """What every section of the page reads (the histogram at the chosen systematic, the
    summed background, the categories) and what they write (lines, figures, numbers)."""

    h: Any
    h_in: Any
    names: list[str]
    mass_axis: str
    backgrounds: Sequence[str]
    signals: Sequence[str]
    systematic: str
    bkg: Any
    cats: list[Any]
    has_categories: bool
    out: Path
    plots: bool
    lines: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)
    numbers: ReportNumbers = field(default_factory=ReportNumbers)
    curves: dict[str, tuple[NDArray, NDArray]] = field(default_factory=dict)
    lumi_fb: float | None = None
    label: Any = None
    styles: Any = None
    formats: Sequence[str] = ()


def _score_1d(x: Any) -> Any:
    return x[{n: sum for n in x.axes.name if n != "score"}]


def _yields_section(p: _Page) -> None:
    import hist

    header = " | ".join(f"category {c}" for c in p.cats) if p.has_categories else "all events"
    unit = (f"events at {p.lumi_fb:g} fb⁻¹" if p.lumi_fb is not None
            else "unnormalised: sums of generator weights")
    p.lines += [f"## Yields ({unit})", "", f"| dataset | {header} |",
                "|---" * (len(p.cats) + 1) + "|"]
    for d in [*p.backgrounds, *p.signals]:
        hd = p.h[{"dataset": hist.loc(d)}]
        row = {}
        for c in p.cats:
            v = (hd[{"category": hist.loc(c)}] if p.has_categories else hd).sum(flow=True)
            row[str(c)] = (float(v.value), float(np.sqrt(v.variance)))
        p.numbers.yields[d] = row
        cells = " | ".join(f"{v:.4g} ± {e:.2g}" for v, e in row.values())
        p.lines.append(f"| {d} | {cells} |")
    p.lines.append("")


def _performance_section(p: _Page) -> None:
    """AUC, max SIC and σ at the best cut per signal, from the binned score distributions
    (one convention with :func:`coffea_ad.stats.binned_roc`)."""
    import hist

    if not p.signals:
        return
    b_bins = histogram_score_bins(_score_1d(p.bkg))
    p.lines += ["## Score performance (signal vs summed background)", "",
                ("| signal | AUC | max SIC | TPR, FPR at max SIC | σ_max | best cut "
                 "| sensitive |"),
                "|---|---|---|---|---|---|---|"]
    for sname in p.signals:
        hs = p.h[{"dataset": hist.loc(sname)}]
        s_bins = histogram_score_bins(_score_1d(hs))
        fpr, tpr, _ = roc_curve(b_bins[0], s_bins[0], weights_bkg=b_bins[1],
                                weights_sig=s_bins[1])
        p.curves[sname] = (fpr, tpr)
        perf: dict[str, float] = {"auc": float(np.trapezoid(tpr, fpr))}
        perf.update(_binned_max_sic(b_bins, s_bins))
        scan = significance_scan(
            b_bins[0], np.concatenate([b_bins[0], s_bins[0]]),
            weights_sm=b_bins[1], weights_bsm=np.concatenate([b_bins[1], s_bins[1]]),
            cuts=np.unique(b_bins[0]), min_sm_events=0.0,
        )
        if p.lumi_fb is not None:
            perf.update(sigma_max=scan.best_sigma, best_cut=scan.best_cut,
                        sensitive=float(scan.sensitive))
            sigma_cells = (f"{perf['sigma_max']:.3g} | {perf['best_cut']:.3g} | "
                           f"{'yes' if scan.sensitive else 'no'}")
        else:
            perf.update(sigma_max=float("nan"), best_cut=float("nan"), sensitive=float("nan"))
            sigma_cells = "n/a (unnormalised) | n/a | —"
        p.numbers.performance[sname] = perf
        p.lines.append(
            f"| {sname} | {perf['auc']:.3f} | {_fmt(perf['max_sic'])} | "
            f"{_fmt(perf['max_sic_tpr'])}, {_fmt(perf['max_sic_fpr'])} | {sigma_cells} |"
        )
    sigma_note = (f"σ = |(B + S) − B| / √B at score ≥ cut on the yields at {p.lumi_fb:g} fb⁻¹, "
                  "all categories and masses; " if p.lumi_fb is not None else
                  "σ needs yields at a luminosity: these histograms hold sums of generator "
                  "weights, on which σ grows with the number of generated events (run with "
                  "`--set lumi_fb=...`); ")
    p.lines += ["", sigma_note + "max SIC where the background keeps ≥ 25 effective MC "
                "events.", ""]


def _distribution_plots(p: _Page) -> None:
    if not p.plots:
        return
    from coffea_ad.plotting.stats import plot_roc_sic

    if p.curves:
        plot_roc_sic({(p.styles[k].label if p.styles and k in p.styles else k): v
                      for k, v in p.curves.items()}, p.out / "roc_sic.png", label=p.label,
                     formats=p.formats)
        p.figures.append(("ROC and SIC", "roc_sic.png"))
    try:
        from coffea_ad.plotting.distributions import (
            plot_mass_by_category,
            plot_score_distributions,
        )

        hs_all = p.h[{n: sum for n in p.h.axes.name if n not in ("dataset", "score")}]
        plot_score_distributions(hs_all, p.out / "scores.png", label=p.label, styles=p.styles,
                                 formats=p.formats)
        p.figures.append(("Score distributions", "scores.png"))
        if p.has_categories and "systematic" in p.names and p.systematic == "nominal":
            # this plot takes the full histogram and selects "nominal" itself
            keep = ("dataset", "systematic", "category", "score", p.mass_axis)
            h_plot = p.h_in[{n: sum for n in p.h_in.axes.name if n not in keep}]
            plot_mass_by_category(h_plot, p.out / "mass.png", mass=p.mass_axis, label=p.label,
                                  styles=p.styles, formats=p.formats)
            p.figures.append((f"{p.mass_axis} per category", "mass.png"))
    except ImportError:  # pragma: no cover - plotting extras are optional
        pass


def _abcd_section(p: _Page, *, x_cut: float | None, y_axis: str, y_cut: float | None,
                  y_pass: Literal["above", "below"]) -> None:
    if x_cut is None or y_cut is None:
        msg = "write_report: an ABCD section needs abcd_x_cut= and abcd_y_cut= as well"
        raise InvalidArgumentError(msg)
    hb = p.bkg[{n: sum for n in p.bkg.axes.name if n not in ("score", y_axis, p.mass_axis)}]
    cl = abcd_closure(hb, x_cut=x_cut, y_cut=y_cut, x_axis="score",
                      y_axis=y_axis, mass_axis=p.mass_axis, y_pass=y_pass)
    integ = cl.integrated
    ratio_err = float(
        np.sqrt(integ.observed_err**2 + integ.predicted_err**2) / integ.predicted
    )
    p.numbers.abcd = {"chi2": cl.chi2, "ndf": cl.ndf, "p_value": cl.p_value,
                      "pulls": np.atleast_1d(cl.pull).tolist(),
                      "integrated_ratio": float(integ.ratio),
                      "integrated_ratio_err": ratio_err}
    p.lines += ["## ABCD closure (background)", "",
                (f"A: score ≥ {x_cut:g} and {y_axis} "
                 f"{'≥' if y_pass == 'above' else '<'} {y_cut:g}: "
                 f"χ²/ndf = {cl.chi2:.2f}/{cl.ndf} (p = {cl.p_value:.3g}); integrated "
                 f"observed/predicted = {float(integ.ratio):.3f} ± {ratio_err:.3f}"),
                ""]
    if p.plots:
        from coffea_ad.plotting.stats import plot_abcd_closure

        plot_abcd_closure(cl, p.out / "abcd_closure.png", label=p.label, formats=p.formats,
                          mass_label=p.h.axes[p.mass_axis].label)
        p.figures.append(("ABCD closure", "abcd_closure.png"))


def _bumphunt_section(p: _Page, *, sqrt_s: float) -> None:
    """Per category: dijet-function fit of the background, S+B fit per signal."""
    import hist

    p.lines += ["## Bump hunt per category", "",
                "| category | bkg fit χ²/ndf | signal | μ (injected 1) | Z_local |",
                "|---|---|---|---|---|"]
    for c in p.cats:
        hb = p.bkg[{"category": hist.loc(c), "score": sum}]
        hb = hb[{n: sum for n in hb.axes.name if n != p.mass_axis}]
        n_b = np.asarray(hb.values(), dtype=np.float64)
        edges = np.asarray(hb.axes[0].edges, dtype=np.float64)
        used = n_b > 0
        if np.count_nonzero(used) < 8:
            p.lines.append(f"| {c} | too few filled bins ({np.count_nonzero(used)}) | | | |")
            continue
        lo, hi = np.flatnonzero(used)[[0, -1]]
        sl = slice(lo, hi + 1)
        try:
            bfit = fit_dijet_background(n_b[sl], edges[lo:hi + 2], sqrt_s=sqrt_s)
        except ValueError as err:
            p.lines.append(f"| {c} | fit refused: {err} | | | |")
            continue
        entry: dict[str, Any] = {
            "chi2": bfit.deviance, "ndf": bfit.ndf, "p_value": bfit.p_value
        }
        row0 = f"| {c} | {bfit.deviance:.1f}/{bfit.ndf} |"
        if not p.signals:
            p.lines.append(row0 + " | | |")
        for sname in p.signals:
            hs = p.h[{"dataset": hist.loc(sname), "category": hist.loc(c), "score": sum}]
            hs = hs[{n: sum for n in hs.axes.name if n != p.mass_axis}]
            s_vals = np.asarray(hs.values(), dtype=np.float64)[sl]
            if not s_vals.sum() > 0:
                p.lines.append(row0 + f" {sname} | no signal in range | |")
                continue
            res = fit_signal_plus_background(n_b[sl] + s_vals, edges[lo:hi + 2],
                                             signal=s_vals, sqrt_s=sqrt_s)
            entry[sname] = {"mu": res.mu, "mu_err": res.mu_err, "z": res.significance}
            p.lines.append(row0 + f" {sname} | {res.mu:.3g} ± {res.mu_err:.2g} | "
                           f"{res.significance:.2f} |")
            if p.plots:
                from coffea_ad.plotting.stats import plot_bumphunt

                png = f"bumphunt_cat{c}_{sname}.png"
                plot_bumphunt(res, p.out / png, label=p.label, formats=p.formats,
                              mass_label=p.h.axes[p.mass_axis].label)
                p.figures.append((f"Bump hunt, category {c}, {sname} injected", png))
        p.numbers.bumphunt[str(c)] = entry
    p.lines += ["", ("Background + signal histograms fitted with the signal histogram as the "
                     "template; μ = 1 is the injected strength. Weighted MC is fitted as if "
                     "Poisson."), ""]


def _figures_section(p: _Page) -> None:
    if p.figures:
        p.lines += ["## Plots", ""]
        for caption, png in p.figures:
            p.lines += [f"### {caption}", "", f"![{caption}]({png})", ""]


def write_report(
    h: Any,
    out_dir: str | Path,
    *,
    backgrounds: Sequence[str],
    signals: Sequence[str] = (),
    mass_axis: str | None = None,
    systematic: str = "nominal",
    abcd_x_cut: float | None = None,
    abcd_y_axis: str | None = None,
    abcd_y_cut: float | None = None,
    abcd_y_pass: Literal["above", "below"] = "above",
    sqrt_s: float = 13000.0,
    title: str = "coffea-ad report",
    plots: bool = True,
    lumi_fb: float | None = None,
    label: Any = None,
    styles: Any = None,
    formats: Sequence[str] = ("pdf",),
) -> tuple[Path, ReportNumbers]:
    """Write ``out_dir/report.md`` (and its plots, PNG plus ``formats``) from an event
    histogram.

    Args:
        h: ``hist.Hist`` with axes ``dataset``, ``score``, the mass, and optionally
            ``category``, ``systematic`` and ``abcd_y_axis`` (e.g. the ``svj`` processor's
            ``hists["abcd"]``, which has no category axis: the yields are then per dataset).
        out_dir: folder for the page and the plots (created).
        backgrounds: datasets summed into the background.
        signals: signal datasets, each compared with the background.
        mass_axis: ``"mt"`` or ``"mjj"``; found among the axes if not given.
        systematic: which systematic variation to use when the axis exists.
        abcd_x_cut: score cut of the ABCD regions (a bin edge of the score axis).
        abcd_y_axis: the second ABCD variable's axis; no ABCD section without it.
        abcd_y_cut: cut on the second variable (a bin edge).
        abcd_y_pass: which side of ``abcd_y_cut`` is the signal-like side of region A
            (``"below"`` for the SVJ |Δη_jj| < 1.5).
        sqrt_s: centre-of-mass energy for the dijet function (GeV).
        title: page title.
        plots: also draw the plots (needs matplotlib and mplhep).
        lumi_fb: the luminosity (fb⁻¹) the histogram's weights are normalised to (the
            processors' ``lumi_fb``); ``None``: sums of generator weights, no sigma.
        label: :class:`~coffea_ad.plotting.labels.PlotLabel` of the plots (default: a
            generated-sample label with ``lumi_fb`` and ``sqrt_s``).
        styles: display name and colour per dataset
            (:func:`~coffea_ad.plotting.labels.dataset_styles`).
        formats: extra formats of every figure beside its PNG (vector PDF by default).

    Returns:
        ``(path of report.md, ReportNumbers)``.
    """
    import hist

    names = [ax.name for ax in h.axes]
    for needed in ("dataset", "score"):
        if needed not in names:
            raise UnknownNameError("histogram axis", needed, names)
    if mass_axis is None:
        found = [n for n in ("mt", "mjj") if n in names]
        if not found:
            msg = f"write_report: expected a mass axis 'mt' or 'mjj', found axes {names}"
            raise InvalidArgumentError(msg)
        mass_axis = found[0]
    datasets = list(h.axes["dataset"])
    for d in [*backgrounds, *signals]:
        if d not in datasets:
            raise UnknownNameError("dataset", d, datasets)
    if label is None and plots:
        from coffea_ad.plotting.labels import PlotLabel

        label = PlotLabel(lumi_fb=lumi_fb, com_tev=sqrt_s / 1000.0)
    h_in = h
    if "systematic" in names:
        h = h[{"systematic": hist.loc(systematic)}]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if not backgrounds:
        msg = "write_report: expected at least one background dataset, found none"
        raise InvalidArgumentError(msg)
    bkg = h[{"dataset": hist.loc(backgrounds[0])}]
    for d in backgrounds[1:]:
        bkg = bkg + h[{"dataset": hist.loc(d)}]
    has_categories = "category" in names
    other = [n for n in bkg.axes.name if n not in ("score", mass_axis, "category")]
    if abcd_y_axis is None and other:
        bkg = bkg[dict.fromkeys(other, sum)]
    page = _Page(h=h, h_in=h_in, names=names, mass_axis=mass_axis, backgrounds=backgrounds,
                 signals=signals, systematic=systematic, bkg=bkg,
                 cats=list(h.axes["category"]) if has_categories else ["all"],
                 has_categories=has_categories, out=out, plots=plots, lines=[f"# {title}", ""],
                 lumi_fb=lumi_fb, label=label, styles=styles, formats=formats)
    _yields_section(page)
    _performance_section(page)
    _distribution_plots(page)
    if abcd_y_axis is not None:
        _abcd_section(page, x_cut=abcd_x_cut, y_axis=abcd_y_axis, y_cut=abcd_y_cut,
                      y_pass=abcd_y_pass)
    if mass_axis == "mjj" and has_categories:  # a histogram without categories gets none
        _bumphunt_section(page, sqrt_s=sqrt_s)
    _figures_section(page)
    path = atomic_write_text(out / "report.md", "\n".join(page.lines))
    return path, page.numbers
