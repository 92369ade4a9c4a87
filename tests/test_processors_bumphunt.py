"""The dijet bump-hunt processor against references computed here.

References: jets and m_jj from the raw branches (uproot + numpy, the four-vector sum written
out), jet scores from ONNX Runtime called directly on the standardized features, the event
score combined with numpy, and the QR category counted against the thresholds' own numpy
polynomial (the processor evaluates the correctionlib JSON instead).
"""

from __future__ import annotations

import awkward as ak
import hist
import numpy as np
import pytest
import uproot

from coffea_ad.errors import MissingBranchError, UnknownNameError
from coffea_ad.execution import run_processor
from coffea_ad.processors import get_processor
from coffea_ad.processors.bumphunt import BumpHuntProcessor

pytestmark = [
    pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning"),
]

MIN_PT = 200.0
MAX_ETA = 2.4


def _raw_scores(path, model_path):
    """Per-jet scores: features from NanoEvents, scaling from the sidecar, ONNX Runtime run
    directly (no OnnxScorer)."""
    import onnxruntime as ort
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from coffea_ad.features import jet_features
    from coffea_ad.inference.contract import ModelContract, sidecar_path

    contract = ModelContract.read(sidecar_path(model_path))
    spec = contract.inputs[0]
    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema,
                                         mode="eager").events()
    feats = jet_features(events, spec.features, jets="FatJet")
    counts = ak.to_numpy(ak.num(feats, axis=1))
    x = np.stack([ak.to_numpy(ak.flatten(feats[f])) for f in spec.features], axis=1)
    x = ((x - np.asarray(spec.centre)) / np.asarray(spec.scale)).astype(np.float32)
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    loss = sess.run([contract.score], {spec.name: x})[0]
    return ak.unflatten(loss, counts)


def _reference(path, model_path, *, combine="min"):
    with uproot.open(path) as f:
        a = f["Events"].arrays(["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass",
                                "genWeight"])
    scores = _raw_scores(path, model_path)
    good = (a.FatJet_pt > MIN_PT) & (abs(a.FatJet_eta) < MAX_ETA)
    sel = ak.to_numpy(ak.sum(good, axis=1) >= 2)
    cols = [ak.to_numpy(a[f"FatJet_{v}"][good][sel][:, :2]).astype(np.float64)
            for v in ("pt", "eta", "phi", "mass")]
    pt, eta, phi, m = cols
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + m**2)
    mjj = np.sqrt(np.maximum(e.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2
                             - pz.sum(1) ** 2, 0))
    s = ak.to_numpy(scores[good][sel][:, :2]).astype(np.float64)
    score = {"min": s.min(1), "max": s.max(1), "sum": s.sum(1)}[combine]
    deta = np.abs(eta[:, 0] - eta[:, 1])
    w = ak.to_numpy(a.genWeight[sel]).astype(np.float64)
    return {"sel": sel, "mjj": mjj, "score": score, "deta": deta, "w": w, "jets": s}


@pytest.fixture(scope="module")
def qcd_reference(small_fileset, tiny_ae_onnx):
    path = next(iter(small_fileset["qcd"]["files"]))
    return _reference(path, tiny_ae_onnx)


@pytest.fixture(scope="module")
def thresholds_json(qcd_reference, tmp_path_factory):
    """QR thresholds (median and 80% quantile, linear in m_jj) of the QCD sideband score,
    exported to correctionlib, and the thresholds object itself (the numpy reference)."""
    from coffea_ad.stats import quantile_thresholds, thresholds_to_correctionlib

    r = qcd_reference
    sb = r["deta"] > 1.4
    edges = np.quantile(r["mjj"][sb], [0, 0.25, 0.5, 0.75, 1.0])
    thr = quantile_thresholds(r["score"][sb], r["mjj"][sb], quantiles=(0.5, 0.8),
                              mass_edges=edges, degree=1)
    path = tmp_path_factory.mktemp("qr") / "thresholds.json"
    thresholds_to_correctionlib(thr, path=path, description="tiny AE min score")
    return path, thr


def test_registered():
    assert get_processor("bumphunt") is BumpHuntProcessor


def test_unknown_combination_is_refused(tiny_ae_onnx):
    with pytest.raises(UnknownNameError, match="max, min, sum"):
        BumpHuntProcessor(tiny_ae_onnx, combine="mean")


def test_categories_regions_and_mjj(small_fileset, tiny_ae_onnx, qcd_reference,
                                    thresholds_json):
    path_json, thr = thresholds_json
    proc = BumpHuntProcessor(tiny_ae_onnx, thresholds=path_json, min_pt=MIN_PT,
                             max_eta=MAX_ETA)
    assert proc.categories == [0, 1, 2]
    out = run_processor({"qcd": small_fileset["qcd"]}, proc, executor="iterative",
                        chunksize=150)
    r = qcd_reference
    # categories: thresholds from the numpy polynomial, counted by hand
    t = np.sort(thr.evaluate(r["mjj"]), axis=1)
    cat = (r["score"][:, None] >= t).sum(1)
    sb = r["deta"] > 1.4
    assert out["cutflow"]["qcd"]["all"] == len(r["sel"])
    assert list(out["cutflow"]["qcd"].values())[1] == r["sel"].sum()
    assert list(out["cutflow"]["qcd"].values())[2] == (~sb).sum()
    for name, region in (("events", ~sb), ("sideband", sb)):
        h = out["hists"][name][{"dataset": "qcd", "systematic": "nominal"}]
        for c in (0, 1, 2):
            want = region & (cat == c)
            got = h[{"category": hist.loc(c), "score": sum}]
            ref = hist.Hist(h.axes["mjj"], storage=hist.storage.Weight())
            ref.fill(mjj=r["mjj"][want], weight=r["w"][want])
            np.testing.assert_allclose(got.values(flow=True), ref.values(flow=True),
                                       rtol=1e-9, err_msg=f"{name} category {c}")
    # the sideband was split at the median and the 80% quantile: about 50/30/20 %
    n_sb = np.array([(sb & (cat == c)).sum() for c in (0, 1, 2)])
    assert n_sb.min() > 0
    # both leading jets' scores of every dijet event are in the jet histogram
    hj = out["hists"]["jets"][{"dataset": "qcd"}]
    ref = hist.Hist(hj.axes["score"], storage=hist.storage.Weight())
    ref.fill(score=r["jets"].ravel(), weight=np.repeat(r["w"], 2))
    np.testing.assert_allclose(hj.values(flow=True), ref.values(flow=True), rtol=1e-9)


@pytest.mark.parametrize("combine", ["max", "sum"])
def test_score_combination(small_fileset, tiny_ae_onnx, combine):
    path = next(iter(small_fileset["qcd"]["files"]))
    r = _reference(path, tiny_ae_onnx, combine=combine)
    proc = BumpHuntProcessor(tiny_ae_onnx, combine=combine, min_pt=MIN_PT, max_eta=MAX_ETA)
    out = run_processor({"qcd": small_fileset["qcd"]}, proc, executor="iterative")
    h = out["hists"]["events"][{"dataset": "qcd", "systematic": "nominal", "category": sum,
                                "mjj": sum}]
    ref = hist.Hist(h.axes["score"], storage=hist.storage.Weight())
    keep = r["deta"] <= 1.4
    ref.fill(score=r["score"][keep], weight=r["w"][keep])
    np.testing.assert_allclose(h.values(flow=True), ref.values(flow=True), rtol=1e-9)


def test_pickled_processor_rebuilds_the_evaluator(small_fileset, tiny_ae_onnx,
                                                  thresholds_json):
    """The correctionlib evaluator is dropped when pickled (for workers) and rebuilt there
    from the JSON text the processor carries, giving the same categories."""
    import pickle

    path_json, _ = thresholds_json
    proc = BumpHuntProcessor(tiny_ae_onnx, thresholds=path_json, min_pt=MIN_PT,
                             max_eta=MAX_ETA)
    proc._threshold_evaluator()
    copy = pickle.loads(pickle.dumps(proc))
    assert copy._evaluator is None
    a = run_processor({"qcd": small_fileset["qcd"]}, proc, executor="iterative")
    b = run_processor({"qcd": small_fileset["qcd"]}, copy, executor="iterative")
    for name in ("events", "sideband"):
        np.testing.assert_allclose(a["hists"][name].values(flow=True),
                                   b["hists"][name].values(flow=True), rtol=1e-12)


def test_real_pfnano(pfnano_file, tiny_ae_onnx):
    proc = BumpHuntProcessor(tiny_ae_onnx, min_pt=MIN_PT, max_eta=MAX_ETA)
    out = run_processor({"pfnano": {"files": {str(pfnano_file): "Events"}}}, proc,
                        executor="iterative")
    r = _reference(pfnano_file, tiny_ae_onnx)
    assert r["sel"].sum() > 0
    h = out["hists"]["events"][{"dataset": "pfnano", "systematic": "nominal", "category": sum,
                                "score": sum}]
    ref = hist.Hist(h.axes["mjj"], storage=hist.storage.Weight())
    keep = r["deta"] <= 1.4
    ref.fill(mjj=r["mjj"][keep], weight=r["w"][keep])
    np.testing.assert_allclose(h.values(flow=True), ref.values(flow=True), rtol=1e-6)


def _cause(err: BaseException, kind: type) -> BaseException | None:
    """The first exception of type ``kind`` in the chain (coffea wraps processor errors)."""
    seen = err
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def test_refuses_nanoaod_without_pf_candidates(cms_data, tiny_ae_onnx):
    proc = BumpHuntProcessor(tiny_ae_onnx)
    with pytest.raises(Exception, match="FatJetPFCands") as info:
        run_processor({"dy": {"files": {str(cms_data / "nano_dy.root"): "Events"}}}, proc,
                      executor="iterative")
    err = _cause(info.value, MissingBranchError)
    assert err is not None, f"expected a MissingBranchError, got {info.value!r}"
    assert "FatJetPFCands" in str(err)


def test_refuses_treemaker_layout(cms_data, tiny_ae_onnx):
    from coffea.nanoevents import TreeMakerSchema

    proc = BumpHuntProcessor(tiny_ae_onnx)
    with pytest.raises(Exception, match="JetsAK8") as info:
        run_processor({"tm": {"files": {str(cms_data / "treemaker.root"): "PreSelection"}}},
                      proc, executor="iterative", schema=TreeMakerSchema)
    err = _cause(info.value, MissingBranchError)
    assert err is not None, f"expected a MissingBranchError, got {info.value!r}"
    assert err.missing == "FatJet"
    assert "JetsAK8" in str(err)


def test_quantile_regression_model_as_thresholds(small_fileset, tiny_ae_onnx, qcd_reference,
                                                 tmp_path):
    """The ONNX quantile regression of training/qr.py (fitted here for two epochs) gives
    the categories that its network, run here with ONNX Runtime, gives."""
    pytest.importorskip("torch")
    import onnxruntime as ort

    from coffea_ad.training import qr

    res = qr.run({"model": str(tiny_ae_onnx), "combine": "min", "min_pt": MIN_PT,
                  "quantiles": [0.5, 0.8], "hidden": [8], "epochs": 2, "threads": 1},
                 {"qcd": small_fileset["qcd"]}, tmp_path / "qr")
    with pytest.raises(ValueError, match="'min' score, found combine='max'"):
        BumpHuntProcessor(tiny_ae_onnx, thresholds=res["onnx"], combine="max")
    proc = BumpHuntProcessor(tiny_ae_onnx, thresholds=res["onnx"], min_pt=MIN_PT,
                             max_eta=MAX_ETA)
    assert proc.categories == [0, 1, 2]
    out = run_processor({"qcd": small_fileset["qcd"]}, proc, executor="iterative")
    r = qcd_reference
    sess = ort.InferenceSession(res["onnx"], providers=["CPUExecutionProvider"])
    thr = sess.run(None, {"inputs": r["mjj"].astype(np.float32)[:, None]})[0]
    cat = (r["score"][:, None] >= np.sort(thr, axis=1)).sum(1)
    keep = r["deta"] <= 1.4
    assert len(set(cat[keep].tolist())) >= 2, "the thresholds should split the events"
    h = out["hists"]["events"][{"dataset": "qcd", "systematic": "nominal", "score": sum}]
    for c in (0, 1, 2):
        ref = hist.Hist(h.axes["mjj"], storage=hist.storage.Weight())
        ref.fill(mjj=r["mjj"][keep & (cat == c)], weight=r["w"][keep & (cat == c)])
        np.testing.assert_allclose(h[{"category": hist.loc(c)}].values(flow=True),
                                   ref.values(flow=True), rtol=1e-9, err_msg=f"category {c}")


def test_dask_awkward_path_equals_the_runner(small_fileset, tiny_ae_onnx, thresholds_json):
    """apply_to_fileset on a 2-worker LocalCluster, QR categories from the correctionlib JSON
    evaluated per partition: every histogram bin and the cutflow equal the Runner's."""
    pytest.importorskip("dask_awkward")
    path, _ = thresholds_json
    options = {"model": str(tiny_ae_onnx), "thresholds": str(path)}
    eager = run_processor(small_fileset, BumpHuntProcessor(**options), executor="iterative",
                          chunksize=150)
    lazy = run_processor(small_fileset, BumpHuntProcessor(**options), executor="dask-awkward",
                         chunksize=150, workers=2)
    for name in ("events", "sideband", "jets"):
        for ds in ("qcd", "svj"):
            va = eager["hists"][name][{"dataset": ds}].view(flow=True)
            vb = lazy["hists"][name][{"dataset": ds}].view(flow=True)
            np.testing.assert_allclose(vb["value"], va["value"], rtol=1e-9, atol=1e-12,
                                       err_msg=f"{name} {ds}")
            np.testing.assert_allclose(vb["variance"], va["variance"], rtol=1e-9, atol=1e-12)
    # all three QR categories are populated, so the categories were really compared
    per_cat = eager["hists"]["events"][{"dataset": "qcd", "score": sum, "mjj": sum,
                                        "systematic": sum}].values()
    assert len(per_cat) == 3
    assert np.all(per_cat > 0)
    assert lazy["cutflow"] == eager["cutflow"]
    assert lazy["entries"] == eager["entries"]
    assert lazy["sumw"] == pytest.approx(eager["sumw"], rel=1e-12)
