"""The statistics plots draw the numbers of the results they are given, and save files."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("mplhep")

from coffea_ad.plotting.stats import (
    plot_abcd_closure,
    plot_bumphunt,
    plot_qr_thresholds,
    plot_roc_sic,
)
from coffea_ad.stats import (
    abcd_closure,
    fit_signal_plus_background,
    gaussian_signal,
    quantile_thresholds,
    roc_curve,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_roc_sic_plot_draws_rejection_and_sic(tmp_path) -> None:
    rng = np.random.default_rng(0)
    fpr, tpr, _ = roc_curve(rng.normal(size=500), rng.normal(1, 1, 200))
    fig = plot_roc_sic({"AE": (fpr, tpr)}, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").read_bytes()[:8] == PNG_MAGIC
    ax_roc, ax_sic = fig.axes[:2]
    x, y = ax_roc.lines[0].get_data()
    ok = fpr > 0
    np.testing.assert_allclose(x, tpr[ok])
    np.testing.assert_allclose(y, 1 / fpr[ok])
    np.testing.assert_allclose(ax_sic.lines[0].get_ydata(), tpr[ok] / np.sqrt(fpr[ok]))


def test_abcd_closure_plot_shows_ratio_per_mass_bin(tmp_path) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 50_000))
    mt = 1500 + rng.exponential(500, 50_000)
    edges = np.array([1500.0, 2000.0, 2500.0, 3500.0])
    cl = abcd_closure(x, y, x_cut=0.5, y_cut=0.5, mass=mt, mass_edges=edges)
    fig = plot_abcd_closure(cl, tmp_path / "abcd.pdf")
    assert (tmp_path / "abcd.pdf").read_bytes()[:4] == b"%PDF"
    ratio_points = fig.axes[1].containers[0].lines[0].get_ydata()
    np.testing.assert_allclose(ratio_points, cl.prediction.observed / cl.prediction.predicted)
    nomass = abcd_closure(x, y, x_cut=0.5, y_cut=0.5)
    with pytest.raises(ValueError, match="expected a closure with mass bins"):
        plot_abcd_closure(nomass)


def test_qr_plot_draws_binned_points_and_the_fit(tmp_path) -> None:
    rng = np.random.default_rng(2)
    mjj = 1500 * (1 + rng.pareto(3, 20_000))
    score = rng.normal(mjj / 2000, 1)
    qt = quantile_thresholds(score, mjj, quantiles=(0.5, 0.9),
                             mass_edges=np.linspace(1500, 4000, 9), degree=2)
    fig = plot_qr_thresholds(qt, tmp_path / "qr.png", score=score, mjj=mjj)
    assert (tmp_path / "qr.png").stat().st_size > 1000
    ax = fig.axes[0]
    fit_lines = [ln for ln in ax.lines if len(ln.get_xdata()) == 300]
    assert len(fit_lines) == 2
    np.testing.assert_allclose(fit_lines[1].get_ydata(),
                               qt.evaluate(fit_lines[1].get_xdata())[:, 1])
    np.testing.assert_allclose(ax.containers[0].lines[0].get_ydata(), qt.binned[:, 0])


def test_bumphunt_plot_pulls_are_the_background_fit_pulls(tmp_path) -> None:
    edges = np.linspace(1500, 4500, 31)
    x = 0.5 * (edges[1:] + edges[:-1]) / 13000
    bkg = 1e5 * (1 - x) ** 10 / x**5
    bkg *= 1e5 / bkg.sum()
    rng = np.random.default_rng(3)
    n = rng.poisson(bkg + 500 * gaussian_signal(edges, mass=2500, width=120))
    res = fit_signal_plus_background(n, edges, mass=2500, width=120)
    fig = plot_bumphunt(res, tmp_path / "bump.png")
    assert (tmp_path / "bump.png").read_bytes()[:8] == PNG_MAGIC
    heights = [p.get_height() for p in fig.axes[1].patches]
    np.testing.assert_allclose(heights, res.background_only.pulls)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(f"{res.mu:.3g}" in t for t in legend)


def test_closure_ratio_panel_is_centred_on_one_with_the_band(tmp_path) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 200_000))
    mt = 1500 + rng.exponential(400, 200_000)
    # the last bin holds a handful of events: its ratio may be far from 1 and must not
    # stretch the panel (it used to autoscale to 60)
    edges = np.array([1500.0, 1800.0, 2200.0, 2700.0, 6000.0])
    cl = abcd_closure(x, y, x_cut=0.8, y_cut=0.8, mass=mt, mass_edges=edges)
    fig = plot_abcd_closure(cl, tmp_path / "abcd.png")
    lo, hi = fig.axes[1].get_ylim()
    assert lo == pytest.approx(2.0 - hi)  # symmetric around 1
    assert 0.0 <= lo < 1.0 < hi <= 2.0
    pred = cl.prediction
    ratio = pred.observed / pred.predicted
    err = np.hypot(pred.observed_err, pred.predicted_err) / pred.predicted
    # a good closure: every bin within its error of 1, so every point and its error is inside
    assert np.all(np.abs(ratio - 1) < 3 * err)
    assert np.all((ratio - err > lo) & (ratio + err < hi))
    # the band is the prediction's relative uncertainty around 1
    band = fig.axes[1].patches[0]
    verts = band.get_path().vertices
    np.testing.assert_allclose(verts[:, 1].max(), 1 + np.max(pred.predicted_err / pred.predicted))


def test_closure_ratio_limits_keep_an_outlier_from_flattening_the_panel() -> None:
    from coffea_ad.plotting.stats import closure_ratio_limits

    lo, hi = closure_ratio_limits([1.02, 0.97, 1.05, 60.0], [0.03, 0.04, 0.05, 30.0])
    assert (lo, hi) == pytest.approx((0.75, 1.25))  # the minimum half-width
    lo, hi = closure_ratio_limits([1.3, 0.8, 1.1], [0.1, 0.1, 0.1])
    assert hi == pytest.approx(1 + 1.2 * 0.4)
