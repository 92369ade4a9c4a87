"""The semivisible-jet processor's ABCD histogram, and ABCD closure read from it.

``hists["abcd"]`` (dataset × systematic × score × second variable × m_T) is checked against the
second variable and m_T recomputed here from the raw branches with uproot + numpy (Δη in a
per-event loop), its projection against ``hists["events"]``, and the closure of
:func:`coffea_ad.stats.abcd_closure` on a histogram of the same layout filled with a second
variable that is independent of the score by construction (and, as a control, with one that
is not). The helpers of ``studies/validate_abcd.py`` are checked on hand-made inputs.
"""

from __future__ import annotations

import math

import awkward as ak
import hist
import numpy as np
import pytest
import uproot

from coffea_ad.errors import UnknownNameError
from coffea_ad.execution import run_processor
from coffea_ad.processors.svj import ABCD_VARIABLES, SVJProcessor, abcd_histogram
from coffea_ad.stats import abcd_closure

pytestmark = [
    pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning"),
]


def _reference(path, *, min_pt=200.0, max_eta=2.4):
    """Per event with >= 2 good FatJets: |Δη_j1j2|, m_T, MET/m_T, genWeight (uproot + numpy)."""
    with uproot.open(path) as f:
        a = f["Events"].arrays(["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass",
                                "MET_pt", "MET_phi", "genWeight"], library="np")
    rows = {"sel": [], "deta": [], "mt": [], "ratio": [], "w": []}
    # slow on purpose: one event at a time, plain float64 arithmetic
    for i in range(len(a["genWeight"])):
        pt, eta, phi, m = (a[f"FatJet_{v}"][i].astype(np.float64)
                           for v in ("pt", "eta", "phi", "mass"))
        good = np.flatnonzero((pt > min_pt) & (np.abs(eta) < max_eta))
        rows["sel"].append(len(good) >= 2)
        if len(good) < 2:
            continue
        j = good[:2]  # NanoAOD jets are p_T-ordered: the first two good ones lead
        px, py, pz = pt[j] * np.cos(phi[j]), pt[j] * np.sin(phi[j]), pt[j] * np.sinh(eta[j])
        e = np.sqrt(px**2 + py**2 + pz**2 + m[j] ** 2)
        mjj2 = max(e.sum() ** 2 - px.sum() ** 2 - py.sum() ** 2 - pz.sum() ** 2, 0.0)
        met, mphi = float(a["MET_pt"][i]), float(a["MET_phi"][i])
        # m_T of the dijet system and MET (CMS, arXiv:2112.11125, eq. 1)
        et_jj = math.sqrt(mjj2 + px.sum() ** 2 + py.sum() ** 2)
        mt2 = mjj2 + 2 * (et_jj * met - px.sum() * met * math.cos(mphi)
                          - py.sum() * met * math.sin(mphi))
        mt = math.sqrt(max(mt2, 0.0))
        rows["deta"].append(abs(eta[j[0]] - eta[j[1]]))
        rows["mt"].append(mt)
        rows["ratio"].append(met / mt if mt > 0 else 0.0)
        rows["w"].append(float(a["genWeight"][i]))
    return {k: np.asarray(v) for k, v in rows.items()}


def _max_scores(proc, path, sel):
    """The larger of the two leading good jets' losses, per selected event (the scorer's
    per-jet losses; the score itself is tested in test_inference*)."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema,
                                         mode="eager").events()
    scores = proc.scorer.score_events(events)
    good = (events.FatJet.pt > proc.min_pt) & (abs(events.FatJet.eta) < proc.max_eta)
    lead = scores[good][sel][:, :2]
    return ak.to_numpy(ak.max(lead, axis=1)).astype(np.float64)


@pytest.mark.parametrize("variable", ["deta_jj", "met_over_mt"])
def test_abcd_histogram_equals_reference(small_fileset, tiny_ae_onnx, variable):
    # the fine histogram bin by bin (the default coarse one is sums of it:
    # test_processors_svj_binning)
    proc = SVJProcessor(tiny_ae_onnx, tag_threshold=0.3, abcd_variable=variable,
                        abcd_binning="fine")
    out = run_processor(small_fileset, proc, executor="iterative", chunksize=200)
    h_all = out["hists"]["abcd"]
    assert h_all.axes.name == ("dataset", "systematic", "score", variable, "mt")
    for name, entry in small_fileset.items():
        path = next(iter(entry["files"]))
        r = _reference(path)
        y = r["deta"] if variable == "deta_jj" else r["ratio"]
        assert len(y) > 50, "the small samples should select events"
        assert y.std() > 0
        ref = abcd_histogram(variable, binning="fine")
        ref.fill(dataset=name, systematic="nominal", score=_max_scores(proc, path, r["sel"]),
                 **{variable: y}, mt=r["mt"], weight=r["w"])
        h = h_all[{"dataset": name, "systematic": "nominal"}]
        want = ref[{"dataset": name, "systematic": "nominal"}]
        np.testing.assert_allclose(h.values(flow=True), want.values(flow=True), rtol=1e-9,
                                   atol=1e-9)
        np.testing.assert_allclose(h.variances(flow=True), want.variances(flow=True),
                                   rtol=1e-9, atol=1e-9)
        # the second-variable marginal bin by bin (the part the score cannot hide)
        np.testing.assert_allclose(h[{"score": sum, "mt": sum}].values(flow=True),
                                   np.histogram(y, bins=[-np.inf, *ABCD_VARIABLES[variable][1],
                                                         np.inf], weights=r["w"])[0])


def test_abcd_projection_equals_events(small_fileset, tiny_ae_onnx):
    """With every CMS cut on, summing the second variable gives hists['events'] summed over
    tag categories: same events, same score, same m_T, same weights."""
    proc = SVJProcessor(tiny_ae_onnx, tag_threshold=0.3, max_deta=1.5, min_mt=1000.0,
                        min_met_over_mt=0.05, lumi_fb=3.0, systematic="up")
    out = run_processor(small_fileset, proc, executor="iterative", chunksize=150)
    for name in small_fileset:
        sel = {"dataset": name, "systematic": "up"}
        a = out["hists"]["abcd"][sel][{"deta_jj": sum}]
        # the default (coarse) ABCD histogram has 200 GeV m_T bins: pairs of the events ones
        e = out["hists"]["events"][sel][{"category": sum, "mt": hist.rebin(2)}]
        assert a.axes.name == e.axes.name == ("score", "mt")
        assert e.sum(flow=True).value > 0
        np.testing.assert_allclose(a.values(flow=True), e.values(flow=True), rtol=1e-12)
        np.testing.assert_allclose(a.variances(flow=True), e.variances(flow=True), rtol=1e-12)
        # the Δη cut is applied to what fills the ABCD axis as well
        d = out["hists"]["abcd"][sel][{"score": sum, "mt": sum}]
        edges = np.asarray(d.axes[0].edges)
        v = d.values(flow=True)  # underflow, bins, overflow
        assert v[0] == v[-1] == 0
        assert v[1:-1][edges[:-1] >= 1.5].sum() == 0
        assert v[1:-1][edges[:-1] < 1.5].sum() == pytest.approx(e.sum(flow=True).value)


def test_real_nanoaod_v15_met_over_mt(cms_data, tiny_ae_onnx):
    """NanoAOD v15 (PFMET): R_T = PFMET/m_T lies in [0, 1] and fills the ABCD histogram with
    every selected event."""
    path = cms_data / "nano_tt_v15.root"
    proc = SVJProcessor(tiny_ae_onnx, tag_threshold=0.3, min_pt=170.0,
                        abcd_variable="met_over_mt")
    out = run_processor({"tt": {"files": {str(path): "Events"}}}, proc, executor="iterative")
    h = out["hists"]["abcd"][{"dataset": "tt", "systematic": "nominal"}]
    r_t = h[{"score": sum, "mt": sum}].values(flow=True)
    total = out["hists"]["events"][{"dataset": "tt"}].sum(flow=True).value
    assert total > 0
    assert r_t.sum() == pytest.approx(total, rel=1e-9)
    assert r_t[-1] == 0  # overflow: MET/m_T above 1 would mean a wrong m_T


def test_cms_cut_values_are_bin_edges():
    """ABCD cuts on a histogram must be bin edges: the CMS values must be edges exactly."""
    edges = {name: abcd_histogram(name).axes[name].edges for name in ABCD_VARIABLES}
    for cut in (1.1, 1.3, 1.5, 2.0):
        assert cut in edges["deta_jj"]
    for cut in (0.15, 0.2, 0.25):
        assert cut in edges["met_over_mt"]
    assert edges["deta_jj"][-1] >= 4.8  # |Δη| of two jets within |η| < 2.4
    assert edges["met_over_mt"][-1] == 1.0


def test_unknown_abcd_variable(tiny_ae_onnx):
    with pytest.raises(UnknownNameError, match="deta_jj"):
        SVJProcessor(tiny_ae_onnx, tag_threshold=0.3, abcd_variable="htt")


def _toy(rng, n, *, correlated):
    """Background toy: m_T falling; score rising with m_T; |Δη| independent of the score at
    fixed m_T (or, with ``correlated``, shifted down for high scores)."""
    mt = 1000 + rng.exponential(500, n)
    score = rng.lognormal(np.log(0.05) + 0.3 * (mt - 1000) / 1000, 0.8, n)
    deta = np.abs(rng.normal(0, 1.3, n)) + 0.2 * (mt - 1000) / 1000
    if correlated:
        deta = np.where(score > np.quantile(score, 0.8), deta * 0.7, deta)
    w = rng.uniform(0.5, 1.5, n)
    h = abcd_histogram("deta_jj", binning="fine")
    h.fill(dataset="bkg", systematic="nominal", score=score, deta_jj=deta, mt=mt, weight=w)
    return h[{"dataset": "bkg", "systematic": "nominal"}], (score, deta, mt, w)


def test_closure_from_histogram_independent_vs_correlated():
    rng = np.random.default_rng(11)
    h, (score, deta, mt, w) = _toy(rng, 200_000, correlated=False)
    coarse = h[{"mt": hist.rebin(5)}]  # 500 GeV m_T bins
    x_cut = float(h.axes["score"].edges[48])  # an edge: 10^(-3 + 48/24) = 0.1
    cl = abcd_closure(coarse, x_cut=x_cut, y_cut=1.5, y_axis="deta_jj", mass_axis="mt",
                      y_pass="below")
    # the regions the histogram gives equal the ones counted from the toy arrays
    sel = (mt >= 1000) & (mt < 1500)
    a = w[sel & (score >= x_cut) & (deta < 1.5)].sum()
    b = w[sel & (score >= x_cut) & (deta >= 1.5)].sum()
    c = w[sel & (score < x_cut) & (deta < 1.5)].sum()
    d = w[sel & (score < x_cut) & (deta >= 1.5)].sum()
    k = int(np.searchsorted(coarse.axes["mt"].edges, 1000.0))
    assert cl.prediction.observed[k] == pytest.approx(a, rel=1e-9)
    assert cl.prediction.predicted[k] == pytest.approx(b * c / d, rel=1e-9)
    assert cl.ndf >= 5
    assert cl.closes, (cl.chi2, cl.ndf, cl.pull)
    # summed over m_T first, the two variables are correlated through m_T (both grow with
    # it): the integrated ABCD fails, which is why the estimate is made per m_T bin
    assert abs(float(cl.integrated.pull)) > 3
    pred = np.nansum(cl.prediction.predicted)
    err = np.sqrt(np.nansum(cl.prediction.predicted_err**2) + np.sum(cl.prediction.observed_err**2))
    assert abs(np.sum(cl.prediction.observed) - pred) < 3 * err

    hc, _ = _toy(np.random.default_rng(11), 200_000, correlated=True)
    bad = abcd_closure(hc[{"mt": hist.rebin(5)}], x_cut=x_cut, y_cut=1.5, y_axis="deta_jj",
                       mass_axis="mt", y_pass="below")
    assert not bad.closes
    assert float(bad.integrated.ratio) > 1.1  # high scores pushed into the central region


def test_validation_helpers():
    from coffea_ad.stats.abcd import merged_mass_edges, score_cut

    edges = np.arange(0.0, 701.0, 100.0)
    counts = np.array([0, 0, 10, 30, 25, 3, 0])
    # 68 events, 3 bins of >= 22.7: [200, 400) has 40, [400, 500) 25, and the 3-event
    # remainder [500, 600) joins the bin before it; empty bins at both ends are left out
    np.testing.assert_array_equal(merged_mass_edges(counts, edges, n_bins=3),
                                  [200.0, 400.0, 600.0])
    h = hist.Hist(hist.axis.Regular(10, 0.0, 1.0, name="score"), storage=hist.storage.Weight())
    h.fill(score=np.linspace(0.005, 0.995, 100))  # 10 per bin
    assert score_cut(h, efficiency=0.1) == pytest.approx(0.9)
    assert score_cut(h, efficiency=0.33) == pytest.approx(0.7)
