"""Bump hunt: dijet-function fit, injected signal recovered, pulls ~ N(0, 1), significance."""

from __future__ import annotations

import itertools

import hist
import numpy as np
import pytest
from scipy import special

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


# A narrow range (x = 0.22 ... 0.32) where p1, p2, p3 are nearly degenerate: the minimiser and
# the linear start visit parameters like these, where x^-p2 alone is ~1e500 and the plain
# product overflows (the fits of a 4k-event anomaly category failed this way).
NARROW = np.arange(3000.0, 4401.0, 50.0)
NARROW_SQRT_S = 13600.0
LARGE = (-700.0, 740.0, 180.0)


def _narrow_truth(total: float) -> np.ndarray:
    """Expected counts for LARGE by a fine trapezoid rule in log space (independent of the
    fit's Gauss-Legendre integration), scaled to ``total``."""
    fine = [np.linspace(lo, hi, 201) / NARROW_SQRT_S for lo, hi in itertools.pairwise(NARROW)]
    log_f = [LARGE[0] * np.log1p(-x) - (LARGE[1] + LARGE[2] * np.log(x)) * np.log(x)
             for x in fine]
    top = max(lf.max() for lf in log_f)
    integ = np.array([np.trapezoid(np.exp(lf - top), x) for lf, x in zip(log_f, fine,
                                                                          strict=True)])
    return total * integ / integ.sum()


def test_large_shape_parameters_do_not_overflow_and_are_recovered() -> None:
    bkg = _narrow_truth(4000.0)
    with np.errstate(over="ignore"):  # the plain function overflows here: the reason for this
        assert not np.isfinite(dijet_function(np.array([0.25]), 1.0, *LARGE)).all()
    fit = fit_dijet_background(bkg, NARROW, sqrt_s=NARROW_SQRT_S)
    assert fit.valid
    np.testing.assert_allclose(fit.expected, bkg, rtol=1e-4)
    np.testing.assert_allclose(fit.params[1:], LARGE, rtol=1e-3)
    m = np.linspace(NARROW[5], NARROW[6], 401)
    assert np.trapezoid(fit.density(m), m) == pytest.approx(bkg[5], rel=1e-4)


def test_category_spectrum_that_used_to_overflow_fits() -> None:
    # a Poisson toy of a 10 % anomaly category with 600 injected W' -> XY events of which 183
    # pass (the first toy whose background fit returned p0 = 0, NaN expectation, invalid)
    counts = np.array([210, 181, 184, 169, 187, 180, 185, 176, 144, 171, 175, 110, 92, 75, 65,
                       69, 59, 65, 61, 48, 51, 46, 40, 34, 51, 57, 39, 46], dtype=float)
    template = np.array([2.877, 3.925, 4.02, 5.316, 7.526, 7.679, 10.041, 12.995, 19.873,
                         46.567, 40.26, 10.689, 3.868, 1.753, 1.391, 0.876, 0.8, 0.686, 0.4,
                         0.191, 0.191, 0.171, 0.229, 0.114, 0.152, 0.152, 0.114, 0.076])
    res = fit_signal_plus_background(counts, NARROW, signal=template, sqrt_s=NARROW_SQRT_S)
    bkg = res.background_only
    assert bkg.valid
    assert res.valid
    assert np.all(np.isfinite(bkg.expected))
    assert np.all(np.isfinite(res.expected))
    # extended maximum likelihood with a free normalisation: fitted total = observed total
    assert bkg.expected.sum() == pytest.approx(counts.sum(), rel=1e-5)
    assert res.expected.sum() == pytest.approx(counts.sum(), rel=2e-4)  # Migrad tolerance
    # 183 signal events: background only is rejected, S + B describes the toy
    assert bkg.p_value < 0.01
    assert 0.01 < special.chdtrc(bkg.ndf - 1, res.deviance) < 0.99
    assert res.mu_err > 0
    assert abs(res.mu - 1.0) < 3 * res.mu_err
    # q0 is the deviance difference and Z its square root
    assert res.significance == pytest.approx(np.sqrt(bkg.deviance - res.deviance), rel=1e-9)


@pytest.mark.parametrize(("n_sig", "rel"), [(10.0, 0.01), (30.0, 0.02)])
def test_significance_of_a_one_bin_signal_by_hand(n_sig: float, rel: float) -> None:
    # Asimov data, signal in one bin. References computed here by hand:
    # (1) the known-background counting formula Z = sqrt(2((s + b) ln(1 + s/b) - s))
    #     (Cowan et al. arXiv:1007.1727 eq. 97): an upper bound, profiling can only lose;
    # (2) with the background profiled, Z = s / sigma_mu, sigma_mu^2 = (I^-1)_mumu, I the
    #     Fisher information sum_k d_i nu_k d_j nu_k / nu_k of (mu, N, p1, p2, p3) from finite
    #     differences of the trapezoid bin model: exact for s << sqrt(b).
    fine = [np.linspace(lo, hi, 201) for lo, hi in itertools.pairwise(EDGES)]
    sig = np.zeros(EDGES.size - 1)
    sig[15] = 1.0

    def bins(theta: np.ndarray) -> np.ndarray:
        mu, total, *shape = theta
        integ = np.array([np.trapezoid(dijet_function(m / SQRT_S, 1.0, *shape), m)
                          for m in fine])
        return total * integ / integ.sum() + mu * sig

    theta = np.array([n_sig, N_BKG, *TRUTH])
    nu = bins(theta)
    jac = []
    for i in range(theta.size):
        step = np.zeros(theta.size)
        step[i] = 1e-4 * max(abs(theta[i]), 1.0)
        jac.append((bins(theta + step) - bins(theta - step)) / (2 * step[i]))
    fisher = (np.array(jac) / nu) @ np.array(jac).T
    z_profiled = n_sig / np.sqrt(np.linalg.inv(fisher)[0, 0])
    b = _truth_bins()[15]
    z_known = np.sqrt(2 * ((n_sig + b) * np.log1p(n_sig / b) - n_sig))

    res = fit_signal_plus_background(_truth_bins() + n_sig * sig, EDGES, signal=sig)
    # trapezoid truth vs the fit's Gauss-Legendre bins: a bias far below the error
    assert abs(res.mu - n_sig) < 0.01 * res.mu_err
    assert res.significance == pytest.approx(z_profiled, rel=rel)
    assert res.significance < z_known


def test_sparse_category_with_empty_bins() -> None:
    # a 1 %-like category: ~150 events over 28 bins, the high-mass bins often empty
    truth = _narrow_truth(150.0)
    counts = np.random.default_rng(5).poisson(truth).astype(float)
    assert np.count_nonzero(counts == 0) >= 3
    fit = fit_dijet_background(counts, NARROW, sqrt_s=NARROW_SQRT_S)
    assert fit.valid
    assert np.all(fit.expected > 0)
    assert fit.expected.sum() == pytest.approx(counts.sum(), rel=1e-5)
    # Poisson deviance by hand, an empty bin contributing 2 nu (n ln(n / nu) -> 0)
    nu, n = fit.expected, counts
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(n > 0, n * np.log(n / nu), 0.0)
    assert fit.deviance == pytest.approx(2 * np.sum(nu - n + log_term), rel=1e-6)
    res = fit_signal_plus_background(counts, NARROW, mass=3500.0, width=150.0,
                                     sqrt_s=NARROW_SQRT_S)
    assert res.valid
    assert res.mu_err > 0


@pytest.mark.parametrize("total", [4.0e3, 1.6e5])
def test_five_parameter_fit_in_a_narrow_range(total: float) -> None:
    # the start covariance has a condition number ~3e10 here and was not always
    # Cholesky-factorisable (this toy raised LinAlgError before the fit started)
    counts = np.random.default_rng(1).poisson(_narrow_truth(total)).astype(float)
    five = fit_dijet_background(counts, NARROW, sqrt_s=NARROW_SQRT_S, n_params=5)
    four = fit_dijet_background(counts, NARROW, sqrt_s=NARROW_SQRT_S, n_params=4)
    assert five.valid
    assert five.expected.sum() == pytest.approx(counts.sum(), rel=1e-5)
    assert five.ndf == NARROW.size - 1 - 5
    # nested models: the 5-parameter minimum cannot be above the 4-parameter one
    assert five.deviance <= four.deviance + 1e-3
    assert 0.01 < five.p_value < 0.999
