"""Histogram builders and the ROOT writer: what goes in comes back out through uproot."""

from __future__ import annotations

import hist
import numpy as np
import pytest
import uproot

from coffea_ad.demo import threshold_at_efficiency
from coffea_ad.histos import jet_score_histogram, score_mass_histogram, write_root


@pytest.fixture
def filled():
    rng = np.random.default_rng(3)
    h = score_mass_histogram()
    n = 5000
    cats = rng.integers(0, 3, n)
    score = rng.lognormal(-1, 1, n)
    mt = rng.uniform(0, 6500, n)  # some above the last edge: overflow
    w = rng.uniform(0.5, 1.5, n)
    h.fill(dataset="qcd", systematic="nominal", category=cats, score=score, mt=mt, weight=w)
    h.fill(dataset="svj", systematic="nominal", category=cats[:100], score=score[:100],
           mt=mt[:100], weight=2 * w[:100])
    return h, {"cats": cats, "score": score, "mt": mt, "w": w}


def test_score_mass_histogram_axes_and_weights(filled):
    h, d = filled
    assert [ax.name for ax in h.axes] == ["dataset", "systematic", "category", "score", "mt"]
    # total weight per dataset, flow included, equals the sum of the weights filled
    qcd = h[{"dataset": "qcd"}].sum(flow=True)
    assert qcd.value == pytest.approx(d["w"].sum())
    assert qcd.variance == pytest.approx((d["w"] ** 2).sum())
    # one category, counted by hand
    sel = (d["cats"] == 1) & (d["mt"] < 6000) & (d["score"] >= 1e-3) & (d["score"] < 1e2)
    in_range = h[{"dataset": "qcd", "systematic": "nominal", "category": hist.loc(1)}]
    assert in_range.sum().value == pytest.approx(d["w"][sel].sum())


def test_write_root_round_trip(filled, tmp_path):
    h, _ = filled
    path = write_root({"events": h}, tmp_path / "h.root")
    with uproot.open(path) as f:
        th2 = f["events/qcd/nominal/cat2"]
        expected = h[{"dataset": "qcd", "systematic": "nominal", "category": hist.loc(2)}]
        np.testing.assert_allclose(th2.values(), expected.values())
        np.testing.assert_allclose(th2.variances(), expected.variances())
        np.testing.assert_allclose(th2.axis(1).edges(), expected.axes["mt"].edges)
        assert "events/svj/nominal/cat0" in f


def test_threshold_at_efficiency_matches_unbinned_quantile():
    rng = np.random.default_rng(7)
    scores = rng.lognormal(-2, 1, 200_000)
    h = jet_score_histogram()
    h.fill(dataset="qcd", score=scores)
    thr = threshold_at_efficiency(h[{"dataset": "qcd"}], 0.10)
    frac = (scores > thr).mean()
    # binned: the threshold is a bin edge at or above the 90% quantile, within one bin of it
    assert frac <= 0.10
    edges = h.axes["score"].edges
    assert thr >= np.quantile(scores, 0.9)
    assert thr <= edges[np.searchsorted(edges, np.quantile(scores, 0.9)) + 1]
    with pytest.raises(ValueError, match="empty"):
        threshold_at_efficiency(jet_score_histogram()[{"dataset": sum}], 0.1)
