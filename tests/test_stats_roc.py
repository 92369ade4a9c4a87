"""ROC/AUC against sklearn.metrics, SIC and working points by hand, sigma on a small table."""

from __future__ import annotations

import numpy as np
import pytest

from coffea_ad.stats import (
    auc,
    max_sic,
    roc_curve,
    sic_curve,
    significance,
    significance_scan,
    working_point,
)

metrics = pytest.importorskip("sklearn.metrics")


def _toy(seed: int, n_bkg: int = 3000, n_sig: int = 1000, *, ties: bool = False):
    rng = np.random.default_rng(seed)
    b = rng.normal(0.0, 1.0, n_bkg)
    s = rng.normal(1.2, 1.0, n_sig)
    if ties:  # a discretised score has many tied values: ties must pass together
        b, s = np.round(b, 1), np.round(s, 1)
    return b, s, rng.uniform(0.2, 3.0, n_bkg), rng.uniform(0.5, 1.5, n_sig)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_roc_and_auc_match_sklearn(ties: bool, weighted: bool) -> None:
    b, s, wb, ws = _toy(1, ties=ties)
    if not weighted:
        wb = ws = None
    fpr, tpr, thr = roc_curve(b, s, weights_bkg=wb, weights_sig=ws)
    y = np.r_[np.zeros(b.size), np.ones(s.size)]
    w = None if wb is None else np.r_[wb, ws]
    f_ref, t_ref, thr_ref = metrics.roc_curve(
        y, np.r_[b, s], sample_weight=w, drop_intermediate=False
    )
    np.testing.assert_allclose(fpr, f_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tpr, t_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(thr[1:], thr_ref[1:])
    assert thr[0] == np.inf
    ref_auc = metrics.roc_auc_score(y, np.r_[b, s], sample_weight=w)
    assert auc(b, s, weights_bkg=wb, weights_sig=ws) == pytest.approx(ref_auc, rel=1e-12)


def test_auc_is_the_mann_whitney_probability_with_ties_counting_half() -> None:
    b = np.array([0.1, 0.4, 0.4, 0.8])
    s = np.array([0.4, 0.9])
    # pairs (s > b) + 0.5 (s == b): s=0.4 beats 0.1, ties two 0.4s; s=0.9 beats all four
    expected = (1 + 0.5 * 2 + 4) / (len(b) * len(s))
    assert auc(b, s) == pytest.approx(expected)
    assert auc(s, b) == pytest.approx(1 - expected)  # swapping the samples mirrors the curve


def test_sic_by_hand_on_a_small_sample() -> None:
    b = np.array([0.0, 1.0, 2.0, 3.0])
    s = np.array([1.5, 2.5, 3.5, 4.0])
    tpr, sic, thr = sic_curve(b, s)
    # thresholds 4.0, 3.5 have FPR = 0 and are dropped; then 3.0: FPR 1/4, TPR 2/4 -> 1.0
    # 2.5: FPR 1/4, TPR 3/4 -> 1.5; 2.0: FPR 2/4, TPR 3/4; 1.5: 2/4, 4/4; 1.0: 3/4, 1; 0: 1, 1
    np.testing.assert_array_equal(thr, [3.0, 2.5, 2.0, 1.5, 1.0, 0.0])
    np.testing.assert_allclose(tpr, [0.5, 0.75, 0.75, 1.0, 1.0, 1.0])
    expected = np.array([0.5 / 0.5, 0.75 / 0.5, 0.75 / np.sqrt(0.5), 1 / np.sqrt(0.5),
                         1 / np.sqrt(0.75), 1.0])
    np.testing.assert_allclose(sic, expected)
    best = max_sic(b, s, max_rel_bkg_uncertainty=None)
    assert (best.threshold, best.tpr, best.fpr) == (2.5, 0.75, 0.25)
    assert best.sic == pytest.approx(1.5)


def test_max_sic_requires_enough_background_when_asked() -> None:
    b, s, wb, _ = _toy(3)
    best = max_sic(b, s, weights_bkg=wb, max_rel_bkg_uncertainty=0.2)
    passing = b >= best.threshold
    n_eff = wb[passing].sum() ** 2 / (wb[passing] ** 2).sum()
    assert n_eff >= 25
    # brute force over every threshold meeting the same condition
    cands = np.unique(np.r_[b, s])
    sics = []
    for t in cands:
        pb = b >= t
        if not pb.any() or wb[pb].sum() ** 2 / (wb[pb] ** 2).sum() < 25:
            continue
        sics.append(np.mean(s >= t) / np.sqrt(wb[pb].sum() / wb.sum()))
    assert best.sic == pytest.approx(max(sics), rel=1e-12)
    with pytest.raises(ValueError, match="N_eff >= 1e\\+06"):
        max_sic(b, s, max_rel_bkg_uncertainty=1e-3)


def test_working_point_at_target_fpr_and_tpr() -> None:
    b, s, _, _ = _toy(4)
    wp = working_point(b, s, fpr=0.05)
    fpr_here = np.mean(b >= wp.threshold)
    assert fpr_here <= 0.05
    # the loosest such threshold: the next lower score would exceed the target
    lower = np.max(np.r_[b, s][np.r_[b, s] < wp.threshold])
    assert np.mean(b >= lower) > 0.05
    assert wp.tpr == pytest.approx(np.mean(s >= wp.threshold))
    wp2 = working_point(b, s, tpr=0.5)
    assert np.mean(s >= wp2.threshold) >= 0.5
    higher = np.min(np.r_[b, s][np.r_[b, s] > wp2.threshold])
    assert np.mean(s >= higher) < 0.5
    with pytest.raises(ValueError, match="exactly one of fpr= or tpr="):
        working_point(b, s)


def test_roc_rejects_bad_inputs_with_what_was_found() -> None:
    with pytest.raises(ValueError, match="found 1 NaN/inf of 3"):
        roc_curve([0.1, np.nan, 0.3], [0.5])
    with pytest.raises(ValueError, match=r"one weight per score \(2\), found 3 weights"):
        roc_curve([0.1, 0.2], [0.5], weights_bkg=[1, 1, 1])


def test_significance_on_a_small_table_by_hand() -> None:
    # SM and BSM yields (weights = xs * lumi / N) passing cuts on a VAE score, by hand
    sm_scores = np.array([0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    sm_w = np.array([40.0, 30.0, 20.0, 6.0, 3.0, 1.0])
    bsm_scores = np.array([0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.8, 0.95])
    bsm_w = np.array([40.0, 30.0, 20.0, 6.0, 3.0, 1.0, 5.0, 4.0])  # SM + two BSM entries
    cuts = np.array([0.0, 0.4, 0.6, 0.85])
    scan = significance_scan(
        sm_scores, bsm_scores, weights_sm=sm_w, weights_bsm=bsm_w, cuts=cuts
    )
    # cut 0.0: SM 100, BSM 109 -> 9/10;  cut 0.4: SM 10, BSM 19 -> 9/sqrt(10)
    # cut 0.6: SM 4, BSM 13 -> 9/2;       cut 0.85: SM 1, BSM 5 -> 4/1
    np.testing.assert_allclose(scan.n_sm, [100, 10, 4, 1])
    np.testing.assert_allclose(scan.n_bsm, [109, 19, 13, 5])
    np.testing.assert_allclose(scan.sigma, [0.9, 9 / np.sqrt(10), 4.5, 4.0])
    assert scan.best_cut == 0.6
    assert scan.best_sigma == pytest.approx(4.5)
    assert scan.sensitive
    # a minimum SM yield removes the low-statistics cuts from the choice
    scan5 = significance_scan(
        sm_scores, bsm_scores, weights_sm=sm_w, weights_bsm=bsm_w, cuts=cuts, min_sm=5.0
    )
    assert scan5.best_cut == 0.4
    assert scan5.best_sigma == pytest.approx(9 / np.sqrt(10))
    assert not scan5.sensitive  # 9/sqrt(10) = 2.85 < 3
    # effective MC events: cut 0.6 keeps weights (3, 1) -> 16/10 = 1.6 events, cut 0.4 keeps
    # (6, 3, 1) -> 100/46 = 2.17: requiring 2 effective events leaves cuts 0.0 and 0.4
    scan_eff = significance_scan(
        sm_scores, bsm_scores, weights_sm=sm_w, weights_bsm=bsm_w, cuts=cuts, min_sm_events=2.0
    )
    assert np.isnan(scan_eff.sigma[2:]).all()
    assert scan_eff.best_cut == 0.4


def test_sensitive_call_uses_three_sigma() -> None:
    scan = significance_scan([1.0] * 100, [1.0] * 129, cuts=[0.5])
    assert scan.best_sigma == pytest.approx(2.9)
    assert not scan.sensitive
    scan = significance_scan([1.0] * 100, [1.0] * 130, cuts=[0.5])
    assert scan.best_sigma == pytest.approx(3.0)
    assert scan.sensitive
    assert np.isnan(significance(5.0, 0.0))  # no SM: undefined, never the best cut


def test_default_cuts_are_quantiles_of_the_sm_scores() -> None:
    rng = np.random.default_rng(5)
    sm = rng.normal(size=1000)
    scan = significance_scan(sm, rng.normal(0.3, 1, 1000), cuts=10)
    np.testing.assert_allclose(scan.cuts, np.quantile(sm, np.arange(10) / 10))
    np.testing.assert_allclose(scan.n_sm, [np.sum(sm >= c) for c in scan.cuts])


def test_binned_roc_counts_same_bin_as_half_flow_included():
    """One binned-ROC convention (demo and report): AUC = P(sig bin > bkg bin) + 1/2 P(same
    bin), flow bins included, by hand on a 2-bin axis starting at 0 (where geometric bin
    centres would put the underflow and the first bin on the same value)."""
    import hist

    from coffea_ad.stats import binned_roc

    def h(values):
        out = hist.Hist(hist.axis.Regular(2, 0.0, 1.0, name="score"),
                        storage=hist.storage.Weight())
        out.fill(score=np.asarray(values, dtype=float))
        return out

    # bins (underflow, [0, .5), [.5, 1), overflow): bkg (1, 2, 1, 0), sig (0, 1, 1, 2)
    hb, hs = h([-1.0, 0.1, 0.2, 0.7]), h([0.3, 0.6, 1.5, 2.0])
    b, s = np.array([1, 2, 1, 0.0]), np.array([0, 1, 1, 2.0])
    by_hand = sum(s[i] * (b[:i].sum() + 0.5 * b[i]) for i in range(4)) / (s.sum() * b.sum())
    fpr, tpr, value = binned_roc(hb, hs)
    assert by_hand == pytest.approx(13.5 / 16)  # (0 + 1*(1+1) + 1*(3+0.5) + 2*4) / (4*4)
    assert value == pytest.approx(by_hand, abs=1e-12)
    assert fpr[-1] == tpr[-1] == 1.0
