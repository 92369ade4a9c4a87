"""Quantile thresholds vs m_jj: empirical quantiles, decorrelated categories, correctionlib."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coffea_ad.errors import UnknownNameError
from coffea_ad.stats import (
    category_shape_test,
    quantile_categories,
    quantile_thresholds,
    thresholds_from_correctionlib,
    thresholds_to_correctionlib,
    weighted_binned_quantiles,
)

EDGES = np.array([1500.0, 1700.0, 1900.0, 2100.0, 2400.0, 2700.0, 3100.0, 3600.0, 4500.0])


def _background(seed: int, n: int):
    """A falling m_jj spectrum and a score whose mean and spread grow with m_jj, as a jet
    autoencoder loss does (heavier jets are harder to reconstruct)."""
    rng = np.random.default_rng(seed)
    mjj = 1500.0 * (1.0 + rng.pareto(3.0, n))
    t = mjj / 1000.0
    score = rng.gamma(2.0 + 0.5 * t, 0.5 + 0.1 * t)
    return score, mjj


def test_weighted_binned_quantiles_match_numpy_hazen_and_repeated_events() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=5000)
    b = rng.integers(-1, 6, size=5000)  # -1 and 5 are outside the 5 bins and ignored
    q = np.array([0.01, 0.3, 0.5, 0.9, 0.999])
    got = weighted_binned_quantiles(v, b, q, n_bins=5)
    for i in range(5):
        np.testing.assert_allclose(got[i], np.quantile(v[b == i], q, method="hazen"),
                                   rtol=1e-12)
    # weighted: the weight fraction below each quantile is q, to within one event's weight
    w = rng.uniform(0.1, 3.0, size=5000)
    weighted = weighted_binned_quantiles(v, b, q, n_bins=5, weights=w)
    for i in range(5):
        vi, wi = v[b == i], w[b == i]
        below = np.array([wi[vi < t].sum() for t in weighted[i]]) / wi.sum()
        assert np.all(np.abs(below - q) <= wi.max() / wi.sum()), (below, q)
    # integer weights behave like repeated events, up to where inside its k copies the
    # weighted event sits (at most a few spacings between neighbouring values)
    k = rng.integers(1, 4, size=5000)
    rep = np.repeat(np.arange(5000), k)
    np.testing.assert_allclose(
        weighted_binned_quantiles(v, b, q[1:4], n_bins=5, weights=k),
        weighted_binned_quantiles(v[rep], b[rep], q[1:4], n_bins=5),
        atol=5e-3,
    )
    # an empty bin gives NaN
    assert np.all(np.isnan(weighted_binned_quantiles(v, np.zeros(5000), q, n_bins=2)[1]))


def test_thresholds_keep_the_target_efficiency_in_every_mjj_bin() -> None:
    score, mjj = _background(1, 200_000)
    qt = quantile_thresholds(score, mjj, quantiles=(0.5, 0.9), mass_edges=EDGES, degree=3)
    # the score is strongly mjj dependent: thresholds rise across the range
    assert np.all(np.diff(qt.binned[:, 1]) > 0)
    score2, mjj2 = _background(2, 200_000)  # independent sample
    inside = (mjj2 >= EDGES[0]) & (mjj2 < EDGES[-1])
    cat = quantile_categories(score2[inside], mjj2[inside], qt)
    b = np.searchsorted(EDGES, mjj2[inside], side="right") - 1
    frac_top = np.bincount(b, weights=cat == 2) / np.bincount(b)
    # 10% pass the 0.9 threshold in every bin, within binomial fluctuations of each bin
    n = np.bincount(b)
    assert np.all(np.abs(frac_top - 0.1) < 4 * np.sqrt(0.09 / n) + 0.004), frac_top


def test_categories_keep_the_background_mjj_shape_and_a_fixed_cut_does_not() -> None:
    score, mjj = _background(3, 200_000)
    qt = quantile_thresholds(score, mjj, quantiles=(0.5, 0.9, 0.97), mass_edges=EDGES)
    s_test, m_test = _background(4, 200_000)
    inside = (m_test >= EDGES[0]) & (m_test < EDGES[-1])
    s_test, m_test = s_test[inside], m_test[inside]
    total, _ = np.histogram(m_test, EDGES)
    cat = qt.categories(s_test, m_test)
    for k in range(4):
        selected, _ = np.histogram(m_test[cat == k], EDGES)
        chi2, ndf, p = category_shape_test(selected, total)
        assert ndf == EDGES.size - 2
        assert p > 1e-3, (k, chi2, ndf)  # ratio category / inclusive is flat
    # a fixed cut with the same overall efficiency as the top category sculpts the spectrum
    fixed = np.quantile(s_test, 0.97)
    selected, _ = np.histogram(m_test[s_test >= fixed], EDGES)
    _, _, p_fixed = category_shape_test(selected, total)
    assert p_fixed < 1e-20


def test_category_shape_test_by_hand() -> None:
    k = np.array([10.0, 30.0])
    n = np.array([100.0, 100.0])
    # e = 0.2; chi2 = (10-20)^2/(100*.2*.8) + (30-20)^2/16 = 12.5
    chi2, ndf, p = category_shape_test(k, n)
    assert chi2 == pytest.approx(12.5)
    assert ndf == 1
    assert p == pytest.approx(4.07e-4, rel=1e-2)


@pytest.mark.parametrize("fit", ["poly", "binned"])
def test_correctionlib_round_trip_evaluates_the_same_thresholds(tmp_path, fit) -> None:
    score, mjj = _background(5, 50_000)
    qt = quantile_thresholds(score, mjj, quantiles=(0.5, 0.9, 0.99), mass_edges=EDGES, fit=fit,
                             degree=2)
    path = tmp_path / "qr.json"
    thresholds_to_correctionlib(qt, path=path, description="toy AE loss")
    # plain JSON readable by any analysis through correctionlib itself
    import correctionlib

    cset = correctionlib.CorrectionSet.from_file(str(path))
    probe = np.array([1000.0, 1500.0, 1650.0, 2222.0, 3000.0, 4499.0, 6000.0])
    direct = cset["qr_threshold"].evaluate(probe, np.full(probe.size, 1))
    np.testing.assert_allclose(direct, qt.evaluate(probe)[:, 1], rtol=1e-12)
    back = thresholds_from_correctionlib(path)
    np.testing.assert_array_equal(back.quantiles, [0.5, 0.9, 0.99])
    np.testing.assert_allclose(back.evaluate(probe), qt.evaluate(probe), rtol=1e-12)
    s_test, m_test = _background(6, 2000)
    np.testing.assert_array_equal(back.categories(s_test, m_test),
                                  qt.categories(s_test, m_test))
    # clamped outside the range: the edge values hold
    np.testing.assert_allclose(qt.evaluate([1000.0]), qt.evaluate([EDGES[0]]))
    np.testing.assert_allclose(qt.evaluate([6000.0]), qt.evaluate([EDGES[-1]]))
    if fit == "binned":
        np.testing.assert_allclose(qt.evaluate([2222.0])[0], qt.binned[3])
    assert "toy AE loss" in json.loads(path.read_text())["corrections"][0]["description"]


def test_smooth_fit_follows_the_binned_thresholds_within_errors() -> None:
    score, mjj = _background(7, 200_000)
    qt = quantile_thresholds(score, mjj, quantiles=(0.5, 0.9), mass_edges=EDGES, degree=3)
    centres = 0.5 * (EDGES[1:] + EDGES[:-1])
    resid = (qt.evaluate(centres) - qt.binned) / qt.binned_err
    # a cubic in m_jj through 8 points with 4 parameters: chi2 ~ 4 per quantile
    chi2 = np.sum(resid**2, axis=0)
    assert np.all(chi2 < 20), chi2
    # the error estimate is the binomial one: compare with the spread over bootstrap-free
    # independent samples for the median of the most populated bin
    meds = [quantile_thresholds(*_background(s, 20_000), quantiles=(0.5,), mass_edges=EDGES,
                                fit="binned").binned[0, 0] for s in range(20, 40)]
    one = quantile_thresholds(*_background(20, 20_000), quantiles=(0.5,), mass_edges=EDGES,
                              fit="binned")
    assert np.std(meds, ddof=1) == pytest.approx(one.binned_err[0, 0], rel=0.5)


def test_errors_say_what_was_expected() -> None:
    score, mjj = _background(8, 100)
    with pytest.raises(ValueError, match=r"increasing quantiles in \(0, 1\), found \[0.9 0.5\]"):
        quantile_thresholds(score, mjj, quantiles=(0.9, 0.5), mass_edges=EDGES)
    with pytest.raises(ValueError, match="needs 4 m_jj bins with a measurable threshold"):
        quantile_thresholds(score, mjj, quantiles=(0.5,),
                            mass_edges=np.array([1500.0, 1600.0, 9000.0, 9500.0, 9900.0]))
    qt = quantile_thresholds(score, mjj, quantiles=(0.5,), mass_edges=EDGES[:3], degree=1)
    with pytest.raises(UnknownNameError, match="unknown correction 'other'"):
        thresholds_from_correctionlib(thresholds_to_correctionlib(qt), name="other")
