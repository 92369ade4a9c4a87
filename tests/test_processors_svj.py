"""The semivisible-jet processor's CMS preselection options against a reference written here.

The cuts |Δη_j1j2| < max_deta and MET/m_T > min_met_over_mt (CMS, arXiv:2112.11125) are
recomputed from the raw branches with uproot + numpy, as are the luminosity weights; the
defaults (cuts off) are covered by tests/test_processors_svj_reference.py.
"""

from __future__ import annotations

import awkward as ak
import hist
import numpy as np
import pytest
import uproot

from coffea_ad.execution import run_processor
from coffea_ad.processors.svj import SVJProcessor

pytestmark = [
    pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning"),
]


def _reference(path, *, min_pt=200.0, max_eta=2.4):
    """Per selected (>= 2 good jets) event: Δη_j1j2, m_T, MET and generator weight."""
    with uproot.open(path) as f:
        a = f["Events"].arrays(["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass",
                                "MET_pt", "MET_phi", "genWeight"])
    good = (a.FatJet_pt > min_pt) & (abs(a.FatJet_eta) < max_eta)
    sel = ak.to_numpy(ak.sum(good, axis=1) >= 2)
    n = int(sel.sum())  # reshape: an empty selection converts to shape (0, 0)
    pt, eta, phi, m = (ak.to_numpy(a[f"FatJet_{v}"][good][sel][:, :2]).astype(np.float64)
                       .reshape(n, 2) for v in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + m**2)
    E, PX, PY, PZ = e.sum(1), px.sum(1), py.sum(1), pz.sum(1)
    mjj2 = np.maximum(E**2 - PX**2 - PY**2 - PZ**2, 0)
    met = ak.to_numpy(a.MET_pt[sel]).astype(np.float64)
    mphi = ak.to_numpy(a.MET_phi[sel]).astype(np.float64)
    mt = np.sqrt(np.maximum(mjj2 + 2 * (np.sqrt(mjj2 + PX**2 + PY**2) * met
                                        - (PX * met * np.cos(mphi) + PY * met * np.sin(mphi))),
                            0))
    return {"sel": sel, "deta": np.abs(eta[:, 0] - eta[:, 1]), "mt": mt, "met": met,
            "w": ak.to_numpy(a.genWeight[sel]).astype(np.float64)}


@pytest.mark.parametrize(("max_deta", "min_mt", "min_ratio"),
                         [(1.5, 0.0, None), (None, 1500.0, 0.15), (1.5, 1000.0, 0.25)])
def test_cms_preselection(small_fileset, tiny_ae_onnx, max_deta, min_mt, min_ratio):
    proc = SVJProcessor(tiny_ae_onnx, tag_threshold=0.3, max_deta=max_deta, min_mt=min_mt,
                        min_met_over_mt=min_ratio, lumi_fb=10.0, systematic="test")
    out = run_processor(small_fileset, proc, executor="iterative", chunksize=200)
    for name, entry in small_fileset.items():
        r = _reference(next(iter(entry["files"])))
        meta = entry["metadata"]
        lumi_w = r["w"] * meta["xsec"] * 1000 * 10.0 / meta["sumw"]
        keep = np.ones(len(r["mt"]), bool)
        want = [len(r["sel"]), int(r["sel"].sum())]
        if max_deta is not None:
            keep &= r["deta"] < max_deta
            want.append(int(keep.sum()))
        keep &= r["mt"] >= min_mt
        want.append(int(keep.sum()))
        if min_ratio is not None:
            keep &= r["met"] / r["mt"] > min_ratio
            want.append(int(keep.sum()))
        assert list(out["cutflow"][name].values()) == want, name
        if name == "svj":  # the cuts bite, and leave something to histogram
            assert 0 < want[-1] < want[1]
        h = out["hists"]["events"][{"dataset": name, "systematic": "test", "category": sum,
                                    "score": sum}]
        ref = hist.Hist(h.axes["mt"], storage=hist.storage.Weight())
        ref.fill(mt=r["mt"][keep], weight=lumi_w[keep])
        np.testing.assert_allclose(h.values(flow=True), ref.values(flow=True), rtol=1e-6)
        # sumw stays the raw generator-weight sum whatever the luminosity
        assert out["sumw"][name] == pytest.approx(meta["sumw"], rel=1e-6)


def test_nanoaod_v15_pfmet(cms_data, tiny_ae_onnx):
    """NanoAOD v15 names MET PFMET and PF candidates PFCand: the processor reads it (MET
    falls back to PFMET) and selects the events a count of the raw branches selects."""
    with uproot.open(cms_data / "nano_tt_v15.root") as f:
        a = f["Events"].arrays(["FatJet_pt", "FatJet_eta", "PFMET_pt", "genWeight"])
    good = (a.FatJet_pt > 170.0) & (abs(a.FatJet_eta) < 2.4)
    pairs = ak.to_numpy(ak.sum(good, axis=1) >= 2)
    n_pairs = int(pairs.sum())
    proc = SVJProcessor(tiny_ae_onnx, tag_threshold=0.3, min_pt=170.0)
    out = run_processor({"tt": {"files": {str(cms_data / "nano_tt_v15.root"): "Events"}}},
                        proc, executor="iterative")
    assert list(out["cutflow"]["tt"].values())[:2] == [200, n_pairs]
    assert out["hists"]["events"][{"dataset": "tt"}].sum(flow=True).value == pytest.approx(
        float(ak.sum(a.genWeight[pairs])), rel=1e-6)


def test_empty_file_gives_empty_histograms(cms_data, tmp_path):
    """nano_dy_empty has no PF candidates, but with no events nothing is computed: a
    jet-branch-only model runs and the dataset appears with zero content."""
    torch = pytest.importorskip("torch")
    from coffea_ad.inference.contract import InputSpec, ModelContract, OutputSpec

    class Loss(torch.nn.Module):
        def forward(self, x):
            return (x * x).mean(dim=1)

    path = tmp_path / "branch_ae.onnx"
    torch.onnx.export(Loss(), (torch.zeros(3, 2),), str(path), dynamo=False, opset_version=17,
                      input_names=["features"], output_names=["loss"],
                      dynamic_axes={"features": {0: "n"}, "loss": {0: "n"}})
    ModelContract(name="branch_ae", kind="autoencoder", level="jet", jets="FatJet", opset=17,
                  inputs=[InputSpec(name="features", features=["eta", "mass"], shape=[2],
                                    scaling="external", centre=[0.0, 100.0],
                                    scale=[1.0, 50.0])],
                  outputs=[OutputSpec("loss", "score")], score="loss").write(path)
    out = run_processor({"empty": {"files": {str(cms_data / "nano_dy_empty.root"): "Events"}},
                         "dy": {"files": {str(cms_data / "nano_dy.root"): "Events"}}},
                        SVJProcessor(path, tag_threshold=1.0, min_pt=30.0),
                        executor="iterative")
    assert list(out["cutflow"]["empty"].values()) == [0, 0, 0]
    assert "empty" in list(out["hists"]["events"].axes["dataset"])
    assert out["hists"]["events"][{"dataset": "empty"}].sum(flow=True).value == 0
    r = _reference(cms_data / "nano_dy.root", min_pt=30.0)
    assert out["cutflow"]["dy"][list(out["cutflow"]["dy"])[1]] == r["sel"].sum()


def test_only_the_jets_the_histograms_use_are_scored(small_fileset, tiny_ae_onnx):
    """The selection runs before the model: the two leading jets of each selected event are
    scored, no other jet (their scores would be dropped)."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    path = next(iter(small_fileset["svj"]["files"]))
    events = NanoEventsFactory.from_root({path: "Events"}, schemaclass=PFNanoAODSchema,
                                         mode="eager").events()
    r = _reference(path)
    n_selected = int((r["deta"] < 1.5).sum())
    assert 0 < 2 * n_selected < int(ak.sum(ak.num(events.FatJet)))
    proc = SVJProcessor(tiny_ae_onnx, tag_threshold=0.3, max_deta=1.5)
    cols = proc.columns(events, scale=None)
    assert proc.scorer.stats.rows == 2 * n_selected
    assert int(ak.sum(ak.num(cols["jets"]))) == 2 * n_selected
