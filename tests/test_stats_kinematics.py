"""AUC beyond kinematics: histogram-ratio reweighting and binned AUC against hand calculations
and a direct Mann-Whitney double loop."""

import numpy as np
import pytest

from coffea_ad.stats.kinematics import binned_auc, reweight_to, reweighted_auc


def _mann_whitney(sb, ss, wb, ws):
    """P(signal > background) + 1/2 P(tie), weighted, by the obvious double loop."""
    num = 0.0
    for b, w1 in zip(sb, wb, strict=True):
        for s, w2 in zip(ss, ws, strict=True):
            num += w1 * w2 * (1.0 if s > b else 0.5 if s == b else 0.0)
    return num / (np.sum(wb) * np.sum(ws))


def test_reweight_to_hand_calculation():
    # background bins [0,2): 3 events, [2,4): 1 event; signal 1 and 3
    w = reweight_to([1, 1, 1, 3, 7], [1, 3, 3, 3], [0, 2, 4])
    # (1/4)/(3/4) = 1/3 and (3/4)/(1/4) = 3; the event at 7 lies outside the edges
    np.testing.assert_allclose(w, [1 / 3, 1 / 3, 1 / 3, 3.0, 0.0])
    # reweighted background histogram = signal shape scaled to the background total
    hb = np.histogram([1, 1, 1, 3], [0, 2, 4], weights=w[:4])[0]
    np.testing.assert_allclose(hb / hb.sum(), [0.25, 0.75])


def test_reweight_to_keeps_input_weights():
    w = reweight_to([1, 1, 3], [1, 3], [0, 2, 4], weights_bkg=[2.0, 1.0, 1.0],
                    weights_sig=[1.0, 3.0])
    # B = [3, 1] of 4, S = [1, 3] of 4: ratios 1/3 and 3, times the input weights
    np.testing.assert_allclose(w, [2 / 3, 1 / 3, 3.0])


def test_reweight_to_rejects_bad_edges():
    with pytest.raises(ValueError, match="increasing"):
        reweight_to([1.0], [1.0], [2, 1])


def test_binned_auc_hand_calculation():
    sb, vb = [0.1, 0.4, 0.5], [1, 1, 3]
    ss, vs = [0.3, 0.6, 0.2, 0.5], [1, 3, 3, 3]
    r = binned_auc(sb, ss, vb, vs, [0, 2, 4], min_events=1)
    # bin 0: 0.3 beats 0.1, loses to 0.4 -> 1/2; bin 1: 0.6 wins, 0.2 loses, 0.5 ties -> 1.5/3
    np.testing.assert_allclose(r.auc, [0.5, 0.5])
    assert r.n_bkg.tolist() == [2, 1]
    assert r.n_sig.tolist() == [1, 3]
    r = binned_auc(sb, ss, vb, vs, [0, 2, 4], min_events=2)
    assert np.isnan(r.auc).tolist() == [True, True]


def test_reweighted_auc_matches_double_loop():
    rng = np.random.default_rng(3)
    vb, vs = rng.uniform(0, 4, 60), rng.uniform(1, 5, 40)
    sb, ss = rng.normal(0, 1, 60) + 0.2 * vb, rng.normal(0.5, 1, 40) + 0.2 * vs
    edges = [0, 1, 2, 3, 4]
    value, coverage = reweighted_auc(sb, ss, vb, vs, edges)
    w = reweight_to(vb, vs, edges)
    keep = (vs < 4)
    assert coverage == pytest.approx(keep.mean())
    assert value == pytest.approx(_mann_whitney(sb, ss[keep], w, np.ones(keep.sum())))


def test_reweighted_auc_removes_a_pure_kinematic_score():
    # the score is the binning variable itself: raw AUC is far from 1/2, reweighted exactly 1/2
    vb = np.array([1.0] * 30 + [3.0] * 10)
    vs = np.array([1.0] * 5 + [3.0] * 15)
    raw = _mann_whitney(vb, vs, np.ones(40), np.ones(20))
    assert raw > 0.7
    value, coverage = reweighted_auc(vb, vs, vb, vs, [0, 2, 4])
    assert value == pytest.approx(0.5)
    assert coverage == 1.0
