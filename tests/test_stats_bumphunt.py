"""Bump hunt: dijet-function fit, injected signal recovered, pulls ~ N(0, 1), significance."""

from __future__ import annotations

import itertools

import hist
import numpy as np
import pytest

from coffea_ad.stats import (
    dijet_function,
    fit_dijet_background,
    fit_signal_plus_background,
    gaussian_signal,
    scan_signal_mass,
)

pytest.importorskip("iminuit")

SQRT_S = 13000.0
EDGES = np.linspace(1500.0, 5000.0, 36)  # 100 GeV bins
TRUTH = (10.0, 5.0, 0.2)  # p1, p2, p3
N_BKG = 2.0e5
MASS, WIDTH = 3000.0, 150.0


def _truth_bins() -> np.ndarray:
    """Expected background per bin: the dijet function integrated by a fine trapezoid rule
    (independent of the Gauss-Legendre integration inside the fit), scaled to N_BKG."""
    fine = [np.linspace(lo, hi, 201) for lo, hi in itertools.pairwise(EDGES)]
    integ = np.array([np.trapezoid(dijet_function(m / SQRT_S, 1.0, *TRUTH), m) for m in fine])
    return N_BKG * integ / integ.sum()


def test_dijet_function_by_hand() -> None:
    x = np.array([0.1, 0.25])
    p = (3.0, 8.0, 4.5, 0.3, 0.05)
    lx = np.log(x)
    expected = 3.0 * (1 - x) ** 8.0 / x ** (4.5 + 0.3 * lx + 0.05 * lx**2)
    np.testing.assert_allclose(dijet_function(x, *p), expected, rtol=1e-13)


def test_gaussian_signal_is_the_bin_integral_of_the_pdf() -> None:
    s = gaussian_signal(EDGES, mass=MASS, width=WIDTH, norm=250.0)
    fine = [np.linspace(lo, hi, 401) for lo, hi in itertools.pairwise(EDGES)]
    pdf = [np.exp(-0.5 * ((m - MASS) / WIDTH) ** 2) / (WIDTH * np.sqrt(2 * np.pi)) for m in fine]
    ref = 250.0 * np.array([np.trapezoid(p, m) for p, m in zip(pdf, fine, strict=True)])
    np.testing.assert_allclose(s, ref, rtol=1e-5, atol=1e-9)


def test_background_fit_on_its_own_expectation_recovers_the_truth() -> None:
    bkg = _truth_bins()
    fit = fit_dijet_background(bkg, EDGES, sqrt_s=SQRT_S, n_params=4)
    assert fit.valid
    np.testing.assert_allclose(fit.expected, bkg, rtol=1e-4)
    np.testing.assert_allclose(fit.params[1:], TRUTH, atol=1e-3)
    assert fit.deviance < 1e-4
    assert fit.ndf == EDGES.size - 1 - 4
    # the fitted density integrates back to the counts of a bin
    m = np.linspace(EDGES[10], EDGES[11], 401)
    assert np.trapezoid(fit.density(m), m) == pytest.approx(bkg[10], rel=1e-4)


def test_background_fit_quality_on_a_poisson_toy_from_a_hist() -> None:
    rng = np.random.default_rng(7)
    h = hist.Hist(hist.axis.Variable(EDGES, name="mjj"))
    h[...] = rng.poisson(_truth_bins())
    fit = fit_dijet_background(h, sqrt_s=SQRT_S)
    assert fit.valid
    # the deviance is chi2-distributed with ndf: a correct model gives a sensible p-value
    assert 0.001 < fit.p_value < 0.999
    assert abs(np.mean(fit.pulls)) < 0.5
    assert 0.6 < np.std(fit.pulls) < 1.4
    # the 3-parameter form (p3 = 0) also describes this mild curvature
    assert fit_dijet_background(h, sqrt_s=SQRT_S, n_params=3).params.size == 3


def test_injected_signal_is_recovered_and_pulls_are_standard_normal() -> None:
    bkg = _truth_bins()
    sig = gaussian_signal(EDGES, mass=MASS, width=WIDTH)
    mu_true = 300.0
    rng = np.random.default_rng(2024)
    pulls, z = [], []
    for _ in range(100):
        n = rng.poisson(bkg + mu_true * sig)
        res = fit_signal_plus_background(n, EDGES, mass=MASS, width=WIDTH, sqrt_s=SQRT_S)
        assert res.valid
        assert res.background_only.valid
        pulls.append((res.mu - mu_true) / res.mu_err)
        z.append(res.significance)
    pulls = np.array(pulls)
    # 100 toys: the mean has a standard error of 0.1, the width of 0.07
    assert abs(pulls.mean()) < 0.3, pulls.mean()
    assert 0.8 < pulls.std() < 1.2, pulls.std()
    assert 0.55 < np.mean(np.abs(pulls) < 1) < 0.81  # 68% coverage of mu +- err
    assert 2.5 < np.median(z) < 4.5  # ~ mu_true / err = 300 / 87


def test_asimov_significance_matches_mu_over_its_error() -> None:
    # on the Asimov data set the profile likelihood ratio and the Hesse curvature agree:
    # sqrt(q0) = mu_hat / sigma_mu (Cowan et al. arXiv:1007.1727, sec. 3.2)
    bkg = _truth_bins()
    sig = gaussian_signal(EDGES, mass=MASS, width=WIDTH)
    res = fit_signal_plus_background(bkg + 300.0 * sig, EDGES, mass=MASS, width=WIDTH)
    assert res.mu == pytest.approx(300.0, rel=1e-3)
    assert res.significance == pytest.approx(res.mu / res.mu_err, rel=0.03)
    np.testing.assert_allclose(res.expected, bkg + 300.0 * sig, rtol=1e-4)
    np.testing.assert_allclose(res.pulls, 0.0, atol=1e-2)  # trapezoid truth vs Gauss-Legendre


def test_null_toys_give_the_asymptotic_significance_distribution() -> None:
    # no signal: mu_hat < 0 (Z = 0) half of the time, and P(Z > 1) = Phi(-1) = 0.159
    bkg = _truth_bins()
    rng = np.random.default_rng(99)
    z, mu = [], []
    for _ in range(100):
        res = fit_signal_plus_background(rng.poisson(bkg), EDGES, mass=MASS, width=WIDTH)
        z.append(res.significance)
        mu.append(res.mu)
    z, mu = np.array(z), np.array(mu)
    assert np.all(z[mu < 0] == 0.0)
    assert 0.35 < np.mean(mu < 0) < 0.65
    assert 0.07 < np.mean(z > 1.0) < 0.25


def test_user_template_callable_and_array_agree_with_gaussian() -> None:
    rng = np.random.default_rng(3)
    sig = gaussian_signal(EDGES, mass=MASS, width=WIDTH)
    n = rng.poisson(_truth_bins() + 400 * sig)
    bkg_fit = fit_dijet_background(n, EDGES)
    a = fit_signal_plus_background(n, EDGES, mass=MASS, width=WIDTH, background=bkg_fit)
    b = fit_signal_plus_background(n, EDGES, signal=2.0 * sig, background=bkg_fit)
    c = fit_signal_plus_background(
        n, EDGES, signal=lambda e: gaussian_signal(e, mass=MASS, width=WIDTH)
    )
    assert b.mu == pytest.approx(a.mu / 2, rel=1e-3)  # mu scales with the template
    assert b.significance == pytest.approx(a.significance, rel=1e-3)
    assert c.mu == pytest.approx(a.mu, rel=1e-3)


def test_mass_scan_peaks_at_the_injected_mass() -> None:
    rng = np.random.default_rng(11)
    width = 0.07 * MASS
    n = rng.poisson(_truth_bins() + 500 * gaussian_signal(EDGES, mass=MASS, width=width))
    scan = scan_signal_mass(n, EDGES, masses=np.arange(2000.0, 4001.0, 250.0))
    assert scan.masses[scan.best] == MASS
    assert scan.significance[scan.best] > 3
    assert abs(scan.mu[scan.best] - 500) < 3 * scan.mu_err[scan.best]
    # the same number as a single S+B fit at that mass
    single = fit_signal_plus_background(n, EDGES, mass=MASS, width=width)
    assert scan.significance[scan.best] == pytest.approx(single.significance, rel=1e-6)
    np.testing.assert_allclose(scan.widths, 0.07 * scan.masses)


def test_bad_inputs_are_refused_with_what_was_found() -> None:
    n = np.ones(EDGES.size - 1) * 100
    with pytest.raises(ValueError, match="len\\(edges\\) = len\\(counts\\) \\+ 1, found 36 and 34"):
        fit_dijet_background(n[:-1], EDGES)
    with pytest.raises(ValueError, match="no events inside the fit range"):
        fit_signal_plus_background(n, EDGES, mass=9000.0, width=10.0)
    with pytest.raises(ValueError, match="below sqrt_s=1000"):
        fit_dijet_background(n, EDGES, sqrt_s=1000.0)
    with pytest.raises(ValueError, match="n_params in \\(3, 4, 5\\), found 6"):
        fit_dijet_background(n, EDGES, n_params=6)  # type: ignore[arg-type]
