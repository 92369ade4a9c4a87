"""ABCD prediction and closure: closes for independent variables, fails for correlated ones."""

from __future__ import annotations

import hist
import numpy as np
import pytest

from coffea_ad.errors import UnknownNameError
from coffea_ad.stats import ABCDCounts, abcd_closure, abcd_predict, abcd_regions

MT_EDGES = np.array([1500.0, 2000.0, 2500.0, 3000.0, 4000.0])


def _background(seed: int, n: int, *, rho: float):
    """Score x, second variable y (correlation rho by construction) and a falling m_T."""
    rng = np.random.default_rng(seed)
    z1, z2 = rng.normal(size=(2, n))
    x = z1
    y = rho * z1 + np.sqrt(1 - rho**2) * z2
    mt = 1500.0 + rng.exponential(600.0, n)  # independent of x and y
    w = rng.uniform(0.5, 1.5, n)
    return x, y, mt, w


def test_counts_and_prediction_by_hand() -> None:
    x = np.array([2.0, 2.0, 2.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0])
    y = np.array([2.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    w = np.array([1.0, 2.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 2.0, 1.0])
    c = abcd_regions(x, y, x_cut=1.0, y_cut=1.0, weights=w)
    # A: x, y pass -> w 1; B: x pass y fail -> 2 + 1 + 1; C: 1 + 3; D: 1 + 1 + 2 + 1
    assert (c.a, c.b, c.c, c.d) == (1.0, 4.0, 4.0, 5.0)
    assert (c.var_a, c.var_b, c.var_c, c.var_d) == (1.0, 6.0, 10.0, 7.0)
    p = abcd_predict(c)
    assert p.predicted == pytest.approx(4 * 4 / 5)
    rel = np.sqrt(6 / 16 + 10 / 16 + 7 / 25)
    assert p.predicted_err == pytest.approx(16 / 5 * rel)
    assert p.pull == pytest.approx((1 - 3.2) / np.sqrt(1 + (3.2 * rel) ** 2))
    # "below" flips which side passes: A becomes x < 1 and y < 1, i.e. the old D
    flipped = abcd_regions(x, y, x_cut=1.0, y_cut=1.0, weights=w, x_pass="below",
                           y_pass="below")
    assert (flipped.a, flipped.b, flipped.c, flipped.d) == (5.0, 4.0, 4.0, 1.0)


def test_closure_holds_for_independent_variables_per_mt_bin() -> None:
    x, y, mt, w = _background(11, 400_000, rho=0.0)
    cl = abcd_closure(x, y, x_cut=1.0, y_cut=1.0, weights=w, mass=mt, mass_edges=MT_EDGES)
    assert cl.prediction.predicted.shape == (4,)
    # every m_T bin: prediction equals observation within its statistical uncertainty
    assert np.all(np.abs(cl.pull) < 3), cl.pull
    assert cl.ndf == 4
    assert cl.p_value > 0.01
    assert abs(cl.integrated.pull) < 3
    assert abcd_closure(cl.prediction.counts, alpha=0.01).closes
    # and the uncertainty is the right size: A holds ~ 400k * 0.159^2 * frac(bin) events
    assert np.all(cl.prediction.observed_err / cl.prediction.observed < 0.05)


def test_closure_pulls_are_standard_normal_over_toys() -> None:
    # the quoted uncertainty is right: pulls of independent toys have mean 0 and width 1
    pulls = []
    for seed in range(20):
        x, y, mt, w = _background(100 + seed, 100_000, rho=0.0)
        cl = abcd_closure(x, y, x_cut=1.0, y_cut=1.0, weights=w, mass=mt, mass_edges=MT_EDGES)
        pulls.extend(cl.pull)
    pulls = np.array(pulls)  # 80 pulls: standard error 0.11 on the mean, 0.08 on the width
    assert abs(pulls.mean()) < 0.35, pulls.mean()
    assert 0.75 < pulls.std() < 1.25, pulls.std()


def test_closure_fails_for_correlated_variables() -> None:
    x, y, mt, w = _background(12, 400_000, rho=0.3)
    cl = abcd_closure(x, y, x_cut=1.0, y_cut=1.0, weights=w, mass=mt, mass_edges=MT_EDGES)
    # positive correlation puts more events in A than B*C/D says
    assert np.all(cl.prediction.ratio > 1.5)
    assert cl.max_abs_pull > 10
    assert cl.p_value < 1e-10
    assert not cl.closes
    assert cl.integrated.pull > 10


def _hist_from(x, y, mt, w) -> hist.Hist:
    h = hist.Hist(
        hist.axis.Regular(20, -2.0, 2.0, name="score"),
        hist.axis.Regular(20, -2.0, 2.0, name="y"),
        hist.axis.Variable(MT_EDGES, name="mt"),
        storage=hist.storage.Weight(),
    )
    h.fill(score=x, y=y, mt=mt, weight=w)
    return h


def test_hist_input_gives_the_same_counts_as_arrays_including_flow() -> None:
    x, y, mt, w = _background(13, 20_000, rho=0.2)
    h = _hist_from(x, y, mt, w)
    from_hist = abcd_regions(h, x_cut=0.8, y_cut=-0.4, x_axis="score", y_axis="y",
                             mass_axis="mt")
    from_arrays = abcd_regions(x, y, x_cut=0.8, y_cut=-0.4, weights=w, mass=mt,
                               mass_edges=MT_EDGES)
    # scores beyond +-2 sit in the flow bins and still count on their side of the cut
    assert np.any(np.abs(x) > 2)
    for field in ("a", "b", "c", "d", "var_a", "var_b", "var_c", "var_d"):
        np.testing.assert_allclose(getattr(from_hist, field), getattr(from_arrays, field),
                                   rtol=1e-10)
    np.testing.assert_array_equal(from_hist.mass_edges, MT_EDGES)
    pred_h = abcd_predict(h, x_cut=0.8, y_cut=-0.4, y_axis="y", mass_axis="mt")
    np.testing.assert_allclose(pred_h.predicted, abcd_predict(from_arrays).predicted)


def test_hist_without_mass_axis_and_with_double_storage() -> None:
    x, y, _, _ = _background(14, 5000, rho=0.0)
    h = hist.Hist(hist.axis.Regular(10, -2, 2, name="score"),
                  hist.axis.Regular(10, -2, 2, name="disc"))
    h.fill(score=x, disc=y)
    c = abcd_regions(h, x_cut=0.4, y_cut=0.0, y_axis="disc")
    assert c.a == np.sum((x >= 0.4) & (y >= 0.0))
    assert c.var_a == c.a  # unweighted: Poisson variance
    assert c.mass_edges is None


def test_hist_errors_name_what_is_wrong() -> None:
    x, y, mt, w = _background(15, 1000, rho=0.0)
    h = _hist_from(x, y, mt, w)
    with pytest.raises(ValueError, match=r"bin edge.*nearest edges: \[0.8, 1.0\]"):
        abcd_regions(h, x_cut=0.9, y_cut=0.0, y_axis="y", mass_axis="mt")
    with pytest.raises(UnknownNameError, match="unknown histogram axis 'mT'"):
        abcd_regions(h, x_cut=0.8, y_cut=0.0, y_axis="y", mass_axis="mT")
    with pytest.raises(ValueError, match=r"extra axes \['mt'\]"):
        abcd_regions(h, x_cut=0.8, y_cut=0.0, y_axis="y")


def test_empty_d_region_gives_nan_not_an_exception() -> None:
    c = ABCDCounts(*(np.array([3.0, 1.0]),) * 3, np.array([0.0, 2.0]),
                   *(np.array([3.0, 1.0]),) * 3, np.array([0.0, 2.0]))
    p = abcd_predict(c)
    assert np.isnan(p.predicted[0])
    assert p.predicted[1] == pytest.approx(0.5)
    cl = abcd_closure(c)
    assert cl.ndf == 1  # the undefined bin is left out of the chi2
    with pytest.raises(ValueError, match="expected x_cut= and y_cut="):
        abcd_predict(np.zeros(3), np.zeros(3), x_cut=1.0)


def test_pull_of_an_empty_signal_region_uses_the_expected_variance() -> None:
    # unweighted: B = 8, C = 2, D = 4 -> predicted 4 with relative error sqrt(1/8 + 1/2 + 1/4);
    # A is empty: its measured sqrt(sum w^2) is 0, the variance expected under the prediction
    # is 4 (Poisson), so the pull is -4 / sqrt(4 + sigma_pred^2), not -4 / sigma_pred
    c = ABCDCounts(0.0, 8.0, 2.0, 4.0, 0.0, 8.0, 2.0, 4.0, mass_edges=None)
    p = abcd_predict(c)
    sigma_pred = 4 * np.sqrt(1 / 8 + 1 / 2 + 1 / 4)
    assert p.predicted_err == pytest.approx(sigma_pred)
    assert p.pull == pytest.approx(-4 / np.sqrt(4 + sigma_pred**2))
    # weighted events of weight 0.5 (sum w^2 / sum w = 0.5): the expected variance halves
    cw = ABCDCounts(0.0, 4.0, 1.0, 2.0, 0.0, 2.0, 0.5, 1.0, mass_edges=None)
    pw = abcd_predict(cw)
    sigma_w = 2 * np.sqrt(2 / 16 + 0.5 / 1 + 1 / 4)
    assert pw.pull == pytest.approx(-2 / np.sqrt(2 * 0.5 + sigma_w**2))
    # a non-empty A keeps its measured variance
    c1 = ABCDCounts(1.0, 8.0, 2.0, 4.0, 1.0, 8.0, 2.0, 4.0, mass_edges=None)
    assert abcd_predict(c1).pull == pytest.approx(-3 / np.sqrt(1 + sigma_pred**2))
